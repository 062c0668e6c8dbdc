"""Evaluation and training queries built from any catalog with titles and attributes.

Query sets over a list of products (the gallery):
- text->image, own image: the title is the query; the product itself is the single target.
- text->image, attribute relevance: the title is the query; every product with the same
  articleType, baseColour and gender is relevant.
- composed attribute manipulation: a reference product r plus the text "in <colour>"; relevant
  are the other products with r's articleType and gender and the new colour; r is left out of
  the gallery for its query.
- shopper words, attribute relevance: "men navy blue shirts", written from the attributes of
  each (gender, articleType, baseColour) group; the group is relevant (`attribute_written`).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from shared.data.catalog import Product

ATTRIBUTE_KEYS = ("articleType", "baseColour", "gender")


@dataclass(frozen=True)
class TextQuery:
    """A title query; `product` is the index of the product whose title it is."""

    product: int
    text: str
    relevant: frozenset[int]


@dataclass(frozen=True)
class ComposedQuery:
    """Reference product index + modifier text; `relevant` never contains `reference`."""

    reference: int
    text: str
    relevant: frozenset[int]


def modifier_text(colour: str) -> str:
    """The modifier of a colour change, as shoppers type it: "in navy blue"."""
    return f"in {colour.lower()}"


def _key(p: Product, *keys: str) -> tuple[str, ...] | None:
    values = tuple(p.attributes.get(k, "") for k in keys)
    return values if all(values) else None


def text_to_image_own(products: Sequence[Product]) -> list[TextQuery]:
    return [TextQuery(i, p.title, frozenset({i})) for i, p in enumerate(products)]


def _attribute_groups(products: Sequence[Product]) -> dict[tuple[str, ...], set[int]]:
    """(articleType, baseColour, gender) -> indices of the products that have all three."""
    groups: dict[tuple[str, ...], set[int]] = defaultdict(set)
    for i, p in enumerate(products):
        key = _key(p, *ATTRIBUTE_KEYS)
        if key:
            groups[key].add(i)
    return groups


def text_to_image_attribute(products: Sequence[Product]) -> list[TextQuery]:
    """Products lacking any of ATTRIBUTE_KEYS are skipped as queries and never relevant."""
    groups = _attribute_groups(products)
    return [
        TextQuery(i, p.title, frozenset(groups[key]))
        for i, p in enumerate(products)
        if (key := _key(p, *ATTRIBUTE_KEYS))
    ]


def composed_colour_change(
    products: Sequence[Product], *, max_queries: int = 1500, seed: int = 0
) -> list[ComposedQuery]:
    """Composed colour-change queries (the protocol of docs/QUALITY.md), deterministic by seed.

    For each reference r (in a seeded random order): pick a colour c2 != r.baseColour such
    that another product has (r.articleType, c2, r.gender); text "in <c2 lowercased>";
    relevant = products with (r.articleType, c2, r.gender), r excluded. At most `max_queries`.
    """
    by_type_colour: dict[tuple[str, str], dict[str, set[int]]] = defaultdict(
        lambda: defaultdict(set)
    )
    for i, p in enumerate(products):
        key = _key(p, *ATTRIBUTE_KEYS)
        if key:
            article, colour, gender = key
            by_type_colour[(article, gender)][colour].add(i)
    rng = random.Random(seed)
    order = list(range(len(products)))
    rng.shuffle(order)
    queries: list[ComposedQuery] = []
    for r in order:
        key = _key(products[r], *ATTRIBUTE_KEYS)
        if not key:
            continue
        article, colour, gender = key
        options = sorted(c for c in by_type_colour[(article, gender)] if c != colour)
        if not options:
            continue
        c2 = rng.choice(options)
        relevant = frozenset(by_type_colour[(article, gender)][c2] - {r})
        queries.append(ComposedQuery(r, modifier_text(c2), relevant))
        if len(queries) == max_queries:
            break
    return queries


@dataclass(frozen=True)
class WordsQuery:
    """A query typed the way shoppers type, not a product's title; `relevant` are gallery
    indices."""

    text: str
    relevant: frozenset[int]


def shopper_text(gender: str, colour: str, article_type: str) -> str:
    """ "men navy blue shirts": gender, colour and article type, lower case, as typed."""
    return f"{gender} {colour} {article_type}".lower()


def attribute_written(products: Sequence[Product], *, min_group: int = 2) -> list[WordsQuery]:
    """One query per (gender, articleType, baseColour) group of at least `min_group` products,
    written from the attributes ("men navy blue shirts"); relevant = the group. Never a title,
    so a lexical index cannot match a query to its own product."""
    groups = _attribute_groups(products)
    return [
        WordsQuery(shopper_text(gender, colour, article), frozenset(members))
        for (article, colour, gender), members in sorted(groups.items())
        if len(members) >= min_group
    ]
