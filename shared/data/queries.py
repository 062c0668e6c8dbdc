"""Evaluation and training queries built from any catalog with titles and attributes.

Query sets over a list of products (the gallery):
- text->image, own image: the title is the query; the product itself is the single target.
- text->image, attribute relevance: the title is the query; every product with the same
  articleType, baseColour and gender is relevant.
- composed attribute manipulation: a reference product r plus the text "in <colour>"; relevant
  are the other products with r's articleType and gender and the new colour; r is left out of
  the gallery for its query.
- shopper words, attribute relevance: "men navy blue shirts", "navy blue shirts for men",
  "shirts, navy blue, men", written from the attributes of each (gender, articleType,
  baseColour) group of at least two products; the group is relevant (`attribute_written`).
- composed, reworded: the composed colour changes with modifiers in phrasings training never
  uses ("the black one", "same but black", "black instead"; `composed_reworded`).

Evaluation and training phrasings are disjoint template sets (`EVAL_*` and `TRAIN_*` below):
training draws its shopper-style texts from the TRAIN_ templates only, and drops any text an
EVAL_ template would also write (`training_words`), so no evaluation phrasing is ever trained on.
"""

from __future__ import annotations

import dataclasses
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
    value: str = ""  # the new value the modifier asks for: a colour, an article type, a gender


# Shopper-style query templates over a product's attributes. The EVAL_ ones are measured, the
# TRAIN_ ones trained on; the two sets never share a template.
EVAL_WORD_PHRASINGS = (
    "{gender} {colour} {article}",
    "{colour} {article} for {gender}",
    "{article}, {colour}, {gender}",
)
TRAIN_WORD_PHRASINGS = (
    "{gender}'s {article} in {colour}",
    "{colour} {gender} {article}",
    "{article} in {colour} for {gender}",
    "{article} {gender} {colour}",
)
EVAL_MODIFIER_PHRASINGS = ("the {value} one", "same but {value}", "{value} instead")
TRAIN_MODIFIER_PHRASINGS = (
    "in {value}",
    "{value} version",
    "make it {value}",
    "change the colour to {value}",
)


def phrase(template: str, **attributes: str) -> str:
    """`template` filled with the lower-cased attributes (gender, colour, article; or value,
    the new value of a composed query's modifier)."""
    return template.format(**{k: v.lower() for k, v in attributes.items()})


def modifier_text(colour: str, template: str = TRAIN_MODIFIER_PHRASINGS[0]) -> str:
    """The modifier of a colour change: "in navy blue" (the protocol's own phrasing)."""
    return phrase(template, value=colour)


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
    return composed_change(
        products,
        "colour",
        max_queries=max_queries,
        seed=seed,
        phrasings=(TRAIN_MODIFIER_PHRASINGS[0],),
    )


@dataclass(frozen=True)
class WordsQuery:
    """A query typed the way shoppers type, not a product's title; `relevant` are gallery
    indices."""

    text: str
    relevant: frozenset[int]


def shopper_text(gender: str, colour: str, article_type: str) -> str:
    """ "men navy blue shirts": gender, colour and article type, lower case, as typed."""
    return phrase(EVAL_WORD_PHRASINGS[0], gender=gender, colour=colour, article=article_type)


def attribute_written(
    products: Sequence[Product],
    *,
    min_group: int = 2,
    phrasings: Sequence[str] = EVAL_WORD_PHRASINGS,
) -> list[WordsQuery]:
    """One query per phrasing per (gender, articleType, baseColour) group of at least
    `min_group` products, written from the attributes ("men navy blue shirts", "navy blue
    shirts for men", ...); relevant = the group. Never a title, so a lexical index cannot match
    a query to its own product."""
    groups = _attribute_groups(products)
    return [
        WordsQuery(
            phrase(template, gender=gender, colour=colour, article=article), frozenset(members)
        )
        for (article, colour, gender), members in sorted(groups.items())
        if len(members) >= min_group
        for template in phrasings
    ]


def composed_reworded(
    queries: Sequence[ComposedQuery], phrasings: Sequence[str] = EVAL_MODIFIER_PHRASINGS
) -> list[ComposedQuery]:
    """The same composed queries with their modifiers in the held-out phrasings, query i in
    phrasing i mod len(phrasings) ("the black one", "same but black", "black instead")."""
    return [
        dataclasses.replace(q, text=modifier_text(q.value, phrasings[i % len(phrasings)]))
        for i, q in enumerate(queries)
    ]


@dataclass(frozen=True)
class Change:
    """A composed query kind: which attribute the modifier changes, which stay, and its
    training and evaluation phrasings (templates over `{value}`, the new value)."""

    name: str
    changes: str
    keeps: tuple[str, ...]
    train: tuple[str, ...]
    evaluate: tuple[str, ...]


CHANGES = {
    "colour": Change(
        "colour",
        "baseColour",
        ("articleType", "gender"),
        train=TRAIN_MODIFIER_PHRASINGS,
        evaluate=EVAL_MODIFIER_PHRASINGS,
    ),
    "type": Change(
        "type",
        "articleType",
        ("subCategory", "baseColour", "gender"),
        train=("as {value}", "but {value}", "{value} like this"),
        evaluate=("same look, {value}", "the {value} version"),
    ),
    "gender": Change(
        "gender",
        "gender",
        ("articleType", "baseColour"),
        train=("for {value}", "the {value}'s version"),
        evaluate=("same for {value}", "one for {value}"),
    ),
}


def _change_groups(products: Sequence[Product], change: Change) -> dict[tuple, dict[str, set[int]]]:
    """kept attribute values -> changed value -> product indices (products with all of them)."""
    groups: dict[tuple, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for i, p in enumerate(products):
        kept, value = _key(p, *change.keeps), p.attributes.get(change.changes, "")
        if kept and value:
            groups[kept][value].add(i)
    return groups


def composed_change(
    products: Sequence[Product],
    kind: str,
    *,
    max_queries: int = 1500,
    seed: int = 0,
    phrasings: Sequence[str] | None = None,
) -> list[ComposedQuery]:
    """Composed queries of one `CHANGES` kind, in `phrasings` (default: its evaluation
    phrasings; query i in phrasing i mod their number), deterministic by seed: a reference r, a
    new value v2 != r's such that another product keeps r's kept attributes with v2; relevant =
    those products."""
    change = CHANGES[kind]
    templates = change.evaluate if phrasings is None else phrasings
    groups = _change_groups(products, change)
    rng = random.Random(seed)
    order = list(range(len(products)))
    rng.shuffle(order)
    queries: list[ComposedQuery] = []
    for r in order:
        kept, value = _key(products[r], *change.keeps), products[r].attributes.get(change.changes)
        if not kept or not value:
            continue
        options = sorted(v for v in groups[kept] if v != value)
        if not options:
            continue
        v2 = rng.choice(options)
        template = templates[len(queries) % len(templates)]
        relevant = frozenset(groups[kept][v2] - {r})
        queries.append(ComposedQuery(r, phrase(template, value=v2), relevant, v2))
        if len(queries) == max_queries:
            break
    return queries


def _training_modifiers(change: Change, value: str, phrasings: Sequence[str]) -> list[str]:
    """`phrasings` filled with `value`, less any text an evaluation template of `change` writes."""
    held_out = {phrase(t, value=value) for t in change.evaluate}
    return [text for t in phrasings if (text := phrase(t, value=value)) not in held_out]


def change_options(
    products: Sequence[Product], kind: str, *, phrasings: Sequence[str] | None = None
) -> dict[int, list[tuple[str, list[int]]]]:
    """For training: reference index -> (modifier text, target indices) for every new value of
    the `CHANGES` kind, one entry per phrasing of `phrasings` (default: its training
    phrasings); no text an evaluation template writes."""
    change = CHANGES[kind]
    templates = change.train if phrasings is None else phrasings
    groups = _change_groups(products, change)
    options: dict[int, list[tuple[str, list[int]]]] = {}
    for r, p in enumerate(products):
        kept, value = _key(p, *change.keeps), p.attributes.get(change.changes)
        if not kept or not value:
            continue
        for v2, members in sorted(groups[kept].items()):
            if v2 == value:
                continue
            for text in _training_modifiers(change, v2, templates):
                options.setdefault(r, []).append((text, sorted(members)))
    return options


def _evaluated_texts(attributes: dict[str, str]) -> set[str]:
    words = {phrase(t, **attributes) for t in EVAL_WORD_PHRASINGS}
    return words | {phrase(t, value=attributes["colour"]) for t in EVAL_MODIFIER_PHRASINGS}


def training_words(product: Product) -> list[str]:
    """The shopper-style texts training may pair with `product`'s image (TRAIN_WORD_PHRASINGS
    over its attributes), none of them a text an evaluation template writes; [] when an
    attribute is missing."""
    key = _key(product, *ATTRIBUTE_KEYS)
    if not key:
        return []
    article, colour, gender = key
    attributes = {"gender": gender, "colour": colour, "article": article}
    held_out = _evaluated_texts(attributes)
    return [text for t in TRAIN_WORD_PHRASINGS if (text := phrase(t, **attributes)) not in held_out]


def training_modifiers(colour: str) -> list[str]:
    """The modifier texts training may use for a change to `colour` (TRAIN_MODIFIER_PHRASINGS),
    none of them a text an evaluation template writes."""
    return _training_modifiers(CHANGES["colour"], colour, TRAIN_MODIFIER_PHRASINGS)
