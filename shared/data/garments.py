"""The synthetic garments: their attributes, how they change, and the captions naming a change.

A garment (a dress, shirt or top) has exactly known visual attributes: colour, pattern, sleeve
length and, for dresses, length. `mutate` changes one or two of them and `relative_captions`
says what changed, the way FashionIQ's annotators do. `shared.data.garment_drawing` draws a
garment; `shared.data.synthetic` writes a dataset of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

RGB = tuple[int, int, int]

PALETTE: dict[str, RGB] = {
    "Black": (25, 25, 25),
    "White": (245, 245, 245),
    "Grey": (128, 128, 128),
    "Red": (200, 30, 40),
    "Blue": (35, 75, 200),
    "Green": (40, 150, 60),
    "Yellow": (240, 210, 40),
    "Pink": (240, 140, 180),
    "Purple": (120, 50, 150),
    "Orange": (240, 130, 30),
}
PATTERNS = ("solid", "stripes", "dots", "checks")
SLEEVES: dict[str, tuple[str, ...]] = {
    "dress": ("none", "short", "long"),
    "shirt": ("short", "long"),
    "toptee": ("none", "short"),
}
LENGTHS = ("short", "long")
ARTICLE_TYPES = {"dress": "Dresses", "shirt": "Shirts", "toptee": "Tops"}
GENDERS: dict[str, tuple[str, ...]] = {
    "dress": ("Women",),
    "shirt": ("Men", "Women"),
    "toptee": ("Women", "Men"),
}
# The attributes that show in the picture, in caption order, with how often each is changed.
VISUAL_ATTRIBUTES = ("colour", "pattern", "sleeve", "length")
_CHANGE_WEIGHTS = {"colour": 0.4, "pattern": 0.25, "sleeve": 0.25, "length": 0.1}


@dataclass(frozen=True)
class Garment:
    """The attributes of one synthetic garment.

    Attributes:
        category: one of CATEGORIES.
        colour: a PALETTE name.
        pattern: one of PATTERNS.
        sleeve: one of SLEEVES[category].
        length: one of LENGTHS for dresses, None otherwise.
        gender: catalog metadata only; it does not show in the picture.
    """

    category: str
    colour: str
    pattern: str
    sleeve: str
    length: str | None
    gender: str

    def attributes(self) -> dict[str, str]:
        """Catalog attributes, Myntra-style keys first."""
        attributes = {
            "gender": self.gender,
            "articleType": ARTICLE_TYPES[self.category],
            "baseColour": self.colour,
            "pattern": self.pattern,
            "sleeve": self.sleeve,
        }
        if self.length is not None:
            attributes["length"] = self.length
        return attributes

    def title(self) -> str:
        """A product title such as "Red striped long-sleeve shirt"."""
        pattern = {"solid": "", "stripes": "striped", "dots": "polka-dot", "checks": "checked"}
        sleeve = {"none": "sleeveless", "short": "short-sleeve", "long": "long-sleeve"}
        length = {None: "", "short": "mini", "long": "maxi"}
        noun = {"dress": "dress", "shirt": "shirt", "toptee": "top"}[self.category]
        words = [
            self.colour,
            pattern[self.pattern],
            sleeve[self.sleeve],
            length[self.length],
            noun,
        ]
        return " ".join(word for word in words if word).capitalize()


def attribute_options(category: str, attribute: str) -> tuple[str, ...]:
    """The values `attribute` can take for `category` (empty where it does not apply)."""
    options = {
        "colour": tuple(PALETTE),
        "pattern": PATTERNS,
        "sleeve": SLEEVES[category],
        "length": LENGTHS if category == "dress" else (),
    }
    return options[attribute]


def random_garment(category: str, rng: np.random.Generator) -> Garment:
    """A garment of `category` with uniformly drawn attributes."""
    length = _pick(LENGTHS, rng) if category == "dress" else None
    return Garment(
        category=category,
        colour=_pick(tuple(PALETTE), rng),
        pattern=_pick(PATTERNS, rng),
        sleeve=_pick(SLEEVES[category], rng),
        length=length,
        gender=_pick(GENDERS[category], rng),
    )


def mutate(garment: Garment, rng: np.random.Generator) -> Garment:
    """A copy of `garment` that differs in one or two visual attributes."""
    applicable = [a for a in VISUAL_ATTRIBUTES if len(attribute_options(garment.category, a)) > 1]
    weights = np.array([_CHANGE_WEIGHTS[a] for a in applicable])
    n_changes = 1 if rng.random() < 0.6 else 2
    chosen = rng.choice(len(applicable), size=n_changes, replace=False, p=weights / weights.sum())
    changes = {}
    for index in sorted(chosen):
        attribute = applicable[index]
        current = getattr(garment, attribute)
        others = tuple(v for v in attribute_options(garment.category, attribute) if v != current)
        changes[attribute] = _pick(others, rng)
    return replace(garment, **changes)


def changed_attributes(candidate: Garment, target: Garment) -> list[str]:
    """The visual attributes in which `target` differs from `candidate`, in caption order."""
    return [a for a in VISUAL_ATTRIBUTES if getattr(candidate, a) != getattr(target, a)]


def relative_captions(candidate: Garment, target: Garment) -> tuple[str, str]:
    """Two relative captions turning `candidate` into `target`.

    The first names each new value ("is red and has long sleeves"); the second phrases the same
    changes another way, relatively where natural ("has longer sleeves and is lighter").
    """
    changed = changed_attributes(candidate, target)
    if not changed:
        return "is the same", "looks identical"
    explicit = [_explicit_phrase(target, a) for a in changed]
    relative = [_relative_phrase(candidate, target, a) for a in reversed(changed)]
    return _join(explicit), _join(relative)


def _join(phrases: list[str]) -> str:
    """Joins verb phrases: "is red" + "has stripes" -> "is red with stripes"."""
    joined = phrases[0]
    for phrase in phrases[1:]:
        verb, rest = phrase.split(" ", 1)
        if joined.startswith("is ") and verb == "has":
            joined = f"{joined} with {rest}"
        elif joined.startswith(f"{verb} ") and " and " not in joined:
            joined = f"{joined} and {rest}"
        else:
            joined = f"{joined} and {phrase}"
    return joined


_PATTERN_PHRASES = {
    "solid": ("is solid", "has no pattern"),
    "stripes": ("has stripes", "is striped"),
    "dots": ("has polka dots", "is dotted"),
    "checks": ("has checks", "is checkered"),
}
_SLEEVE_PHRASES = {
    "none": "is sleeveless",
    "short": "has short sleeves",
    "long": "has long sleeves",
}
_SLEEVE_RANK = {"none": 0, "short": 1, "long": 2}


def _explicit_phrase(target: Garment, attribute: str) -> str:
    if attribute == "colour":
        return f"is {target.colour.lower()}"
    if attribute == "pattern":
        return _PATTERN_PHRASES[target.pattern][0]
    if attribute == "sleeve":
        return _SLEEVE_PHRASES[target.sleeve]
    return f"is {target.length}"


def _relative_phrase(candidate: Garment, target: Garment, attribute: str) -> str:
    if attribute == "colour":
        return _colour_change(candidate.colour, target.colour)
    if attribute == "pattern":
        return _PATTERN_PHRASES[target.pattern][1]
    if attribute == "sleeve":
        if target.sleeve == "none":
            return "has no sleeves"
        longer = _SLEEVE_RANK[target.sleeve] > _SLEEVE_RANK[candidate.sleeve]
        return "has longer sleeves" if longer else "has shorter sleeves"
    return "is longer" if target.length == "long" else "is shorter"


def _colour_change(old: str, new: str) -> str:
    difference = luma(PALETTE[new]) - luma(PALETTE[old])
    if difference < -60:
        return "is darker"
    if difference > 60:
        return "is lighter"
    return f"is {new.lower()} instead of {old.lower()}"


def _pick(options: Sequence[str], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def luma(rgb: RGB) -> float:
    """Perceived brightness (ITU-R BT.601 weights), 0 to 255."""
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
