"""Embedding batches <-> `repeated Embedding` fields, shared by every boundary that carries vectors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def vectors_to_field(vectors: np.ndarray, field: Any) -> None:
    """Appends each row of `vectors` ([batch, dim]) as one Embedding message to `field`."""
    for row in np.asarray(vectors, dtype=np.float32).tolist():
        field.add().values.extend(row)


def field_to_vectors(
    field: Sequence[Any], *, dim: int | None = None, name: str = "embeddings"
) -> np.ndarray:
    """Reads a `repeated Embedding` field into a float32 array [batch, dim].

    Args:
        field: the repeated field.
        dim: the expected dimension; when None, taken from the first embedding.
        name: the field's name, used in error messages.

    Raises:
        ValueError: the embeddings differ in length, or differ from `dim`.
    """
    if len(field) == 0:
        return np.zeros((0, dim or 0), dtype=np.float32)
    expected = dim if dim else len(field[0].values)
    for i, emb in enumerate(field):
        if len(emb.values) != expected:
            raise ValueError(f"{name}[{i}] has {len(emb.values)} values, expected {expected}")
    return np.array([emb.values for emb in field], dtype=np.float32).reshape(len(field), expected)
