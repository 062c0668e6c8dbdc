"""Training examples drawn from a catalog with titles and attributes.

Three tasks share one model:
- text->image: a product's title and its own image (group = the title, so products with the
  same title are never each other's negatives);
- shopper words: a text written from a product's attributes in a training phrasing ("men's
  shirts in navy blue") and its image (group = the attribute triple);
- composed colour change: reference image + a modifier in a training phrasing ("in black",
  "make it black") -> a product with the reference's articleType and gender in that colour
  (group = the target attribute triple).
Training phrasings never include an evaluation phrasing (shared.data.queries).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shared.data.catalog import Product
from shared.data.queries import (
    ATTRIBUTE_KEYS,
    TRAIN_MODIFIER_PHRASINGS,
    change_options,
    training_words,
)


@dataclass(frozen=True)
class ComposedPool:
    """For every usable reference: the colours it can change to, and the products per colour."""

    references: np.ndarray  # [R] product indices
    options: list[list[tuple[int, np.ndarray]]]  # per reference: (text index, target indices)
    texts: list[str]  # modifier texts, indexed by text index


@dataclass(frozen=True)
class WordsPool:
    """Shopper-style texts per product: `products` [W] product indices that have any, and for
    each, its text indices into `texts`."""

    products: np.ndarray
    options: list[np.ndarray]
    texts: list[str]


GENDER_WORDS = frozenset({"men", "women", "boys", "girls", "unisex", "kids"})


def unbranded(title: str) -> str:
    """The title without the brand that catalog titles start with: everything before the first
    gender word ("Nike Men Town Navy Blue T-Shirts" -> "Men Town Navy Blue T-Shirts"); the title
    itself when it names no gender after its first word."""
    words = title.split()
    for i, word in enumerate(words[1:], start=1):
        if word.lower().strip(",'") in GENDER_WORDS:
            return " ".join(words[i:])
    return title


@dataclass(frozen=True)
class Examples:
    titles: list[str]
    title_groups: np.ndarray  # [N] int: products with equal titles share a group
    attribute_groups: np.ndarray  # [N] int: products with equal ATTRIBUTE_KEYS values share one
    composed: ComposedPool
    words: WordsPool
    unbranded_titles: list[str]  # [N] the titles without their brand (augmentation)
    type_groups: np.ndarray  # [N] int: products of one articleType share one (hard negatives)
    attribute_labels: np.ndarray  # [N, len(AUXILIARY_KEYS)] class ids, -1 where unknown
    attribute_classes: list[int]  # classes per auxiliary attribute


def _group_ids(keys: Sequence[object]) -> np.ndarray:
    ids: dict[object, int] = {}
    return np.array([ids.setdefault(k, len(ids)) for k in keys], dtype=np.int64)


def build_examples(
    products: Sequence[Product],
    *,
    all_modifier_phrasings: bool = True,
    composed_kinds: Sequence[str] = ("colour",),
) -> Examples:
    """The examples of `products`; composed modifiers in every training phrasing, or (when
    `all_modifier_phrasings` is false) in the protocol's "in <colour>" only; composed queries
    of each of `composed_kinds` ("colour", and the kinds of shared.data.queries.CHANGES)."""
    titles = [p.title for p in products]
    # A product missing an attribute is a group of its own.
    attribute_keys = [
        tuple(p.attributes.get(k, "") for k in ATTRIBUTE_KEYS)
        if all(p.attributes.get(k) for k in ATTRIBUTE_KEYS)
        else ("#", i)
        for i, p in enumerate(products)
    ]
    return Examples(
        titles,
        _group_ids(titles),
        _group_ids(attribute_keys),
        _composed_pool(products, all_modifier_phrasings, composed_kinds),
        _words_pool(products),
        [unbranded(t) for t in titles],
        _group_ids([p.attributes.get("articleType") or ("#", i) for i, p in enumerate(products)]),
        *_attribute_labels(products),
    )


# The attributes the auxiliary loss predicts from the shared space.
AUXILIARY_KEYS = ("articleType", "baseColour", "gender", "usage")


def _attribute_labels(products: Sequence[Product]) -> tuple[np.ndarray, list[int]]:
    """Class ids [N, len(AUXILIARY_KEYS)] (-1 where a product lacks the attribute) and the
    number of classes of each attribute (0 where no product has it)."""
    labels = np.full((len(products), len(AUXILIARY_KEYS)), -1, dtype=np.int64)
    classes = []
    for k, key in enumerate(AUXILIARY_KEYS):
        values = sorted({v for p in products if (v := p.attributes.get(key))})
        index = {v: i for i, v in enumerate(values)}
        for i, p in enumerate(products):
            labels[i, k] = index.get(p.attributes.get(key, ""), -1)
        classes.append(len(values))
    return labels, classes


def _words_pool(products: Sequence[Product]) -> WordsPool:
    index: dict[str, int] = {}
    members, options = [], []
    for i, p in enumerate(products):
        own = [index.setdefault(t, len(index)) for t in training_words(p)]
        if own:
            members.append(i)
            options.append(np.array(own, dtype=np.int64))
    return WordsPool(np.array(members, dtype=np.int64), options, list(index))


def sample_words(
    pool: WordsPool, positions: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """For each position in `pool.products`: (product index, text index)."""
    texts = np.array(
        [pool.options[p][rng.integers(len(pool.options[p]))] for p in positions], dtype=np.int64
    )
    return pool.products[positions], texts


def _composed_pool(
    products: Sequence[Product], all_phrasings: bool, kinds: Sequence[str] = ("colour",)
) -> ComposedPool:
    """Every reference's composed options (modifier text, targets), over `kinds` with colour
    first; colour modifiers in the protocol's phrasing only when not `all_phrasings`."""
    ordered = dict.fromkeys(k for k in ("colour", *kinds) if k in kinds)
    per_kind = [
        change_options(
            products,
            kind,
            phrasings=None if all_phrasings or kind != "colour" else TRAIN_MODIFIER_PHRASINGS[:1],
        )
        for kind in ordered
    ]
    texts: list[str] = []
    text_index: dict[str, int] = {}
    references, options = [], []
    for r in range(len(products)):
        opts = []
        for kind in per_kind:
            for text, members in kind.get(r, []):  # one option per phrasing
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
