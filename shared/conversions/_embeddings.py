"""Embedding batches <-> `EmbeddingBatch` messages, shared by every boundary that carries vectors.

The message holds the float32 matrix as raw little-endian bytes: decoding is a zero-copy
`np.frombuffer`, about 30x cheaper than a `repeated float` per row.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_F32_LE = np.dtype("<f4")


def vectors_to_batch(vectors: np.ndarray, batch: Any) -> None:
    """Fills an `EmbeddingBatch` message from a [count, dim] array."""
    if vectors.ndim != 2:
        raise ValueError(f"embeddings must be 2-D [count, dim], got shape {vectors.shape}")
    batch.count, batch.dim = vectors.shape
    batch.data = np.ascontiguousarray(vectors, dtype=_F32_LE).tobytes()


def batch_to_vectors(batch: Any, *, name: str = "embeddings") -> np.ndarray:
    """Reads an `EmbeddingBatch` message into a read-only float32 array [count, dim].

    Raises:
        ValueError: the byte length does not match count x dim float32 values.
    """
    expected = batch.count * batch.dim * _F32_LE.itemsize
    if len(batch.data) != expected:
        raise ValueError(
            f"{name}: {len(batch.data)} bytes of data, but count={batch.count} x dim={batch.dim} "
            f"float32 values need {expected}"
        )
    return np.frombuffer(batch.data, dtype=_F32_LE).reshape(batch.count, batch.dim)
