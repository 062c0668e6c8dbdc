"""Training examples drawn from a catalog with titles and attributes.

Two tasks share one model:
- text->image: a product's title and its own image (group = the title, so products with the
  same title are never each other's negatives);
- composed colour change: reference image + "in <colour>" -> a product with the reference's
  articleType and gender in that colour (group = the target attribute triple).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shared.data.catalog import Product
from shared.data.queries import ATTRIBUTE_KEYS, modifier_text


@dataclass(frozen=True)
class ComposedPool:
    """For every usable reference: the colours it can change to, and the products per colour."""

    references: np.ndarray  # [R] product indices
    options: list[list[tuple[int, np.ndarray]]]  # per reference: (text index, target indices)
    texts: list[str]  # modifier texts, indexed by text index


@dataclass(frozen=True)
class Examples:
    titles: list[str]
    title_groups: np.ndarray  # [N] int: products with equal titles share a group
    attribute_groups: np.ndarray  # [N] int: products with equal ATTRIBUTE_KEYS values share one
    composed: ComposedPool


def _group_ids(keys: Sequence[object]) -> np.ndarray:
    ids: dict[object, int] = {}
    return np.array([ids.setdefault(k, len(ids)) for k in keys], dtype=np.int64)


def build_examples(products: Sequence[Product]) -> Examples:
    titles = [p.title for p in products]
    # A product missing an attribute is a group of its own.
    attribute_keys = [
        tuple(p.attributes.get(k, "") for k in ATTRIBUTE_KEYS)
        if all(p.attributes.get(k) for k in ATTRIBUTE_KEYS)
        else ("#", i)
        for i, p in enumerate(products)
    ]
    return Examples(
        titles, _group_ids(titles), _group_ids(attribute_keys), _composed_pool(products)
    )


def _composed_pool(products: Sequence[Product]) -> ComposedPool:
    by_group: dict[tuple[str, str], dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    keys = []
    for i, p in enumerate(products):
        key = tuple(p.attributes.get(k, "") for k in ATTRIBUTE_KEYS)
        keys.append(key if all(key) else None)
        if keys[-1]:
            article, colour, gender = key
            by_group[(article, gender)][colour].append(i)
    texts: list[str] = []
    text_index: dict[str, int] = {}
    references, options = [], []
    for r, ref_key in enumerate(keys):
        if not ref_key:
            continue
        article, colour, gender = ref_key
        opts = []
        for c2, members in sorted(by_group[(article, gender)].items()):
            if c2 != colour:
                text = modifier_text(c2)
                t = text_index.setdefault(text, len(texts))
                if t == len(texts):
                    texts.append(text)
                opts.append((t, np.array(members, dtype=np.int64)))
        if opts:
            references.append(r)
            options.append(opts)
    return ComposedPool(np.array(references, dtype=np.int64), options, texts)


def sample_composed(
    pool: ComposedPool, positions: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each position in `pool.references`: (reference index, text index, target index)."""
    texts = np.empty(len(positions), dtype=np.int64)
    targets = np.empty(len(positions), dtype=np.int64)
    for j, pos in enumerate(positions):
        text, members = pool.options[pos][rng.integers(len(pool.options[pos]))]
        texts[j] = text
        targets[j] = members[rng.integers(len(members))]
    return pool.references[positions], texts, targets
