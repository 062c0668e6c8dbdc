"""A deterministic renderer of a small FashionIQ-layout dataset, for tests and smoke runs.

`generate_fashioniq` draws flat garment pictures (dresses, shirts, tops) whose attributes are
known exactly: colour, pattern, sleeve length and, for dresses, length. It writes them in the
FashionIQ layout (see `shared.data.fashioniq`) with relative captions derived from the attribute
differences between candidate and target, plus a `products.jsonl` in the catalog format (see
`shared.data.catalog`), so the same set serves composed, text and image retrieval.

Unlike the official release, the synthetic test split keeps its targets, so recall can be
measured on it. The same arguments give byte-identical files (with the same numpy and PIL).

Run `python -m shared.data.synthetic --help` for the command-line form.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from shared.data.catalog import Product, write_products
from shared.data.fashioniq import CATEGORIES

RGB = tuple[int, int, int]
Point = tuple[float, float]

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
DEFAULT_SPLITS = (("train", 0.7), ("val", 0.15), ("test", 0.15))
_OUTPUTS = ("images", "captions", "image_splits", "products.jsonl")
_SUPERSAMPLE = 2
_NEW_ROOT_PROBABILITY = 0.25


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


@dataclass(frozen=True)
class SyntheticSummary:
    """What `generate_fashioniq` wrote.

    Attributes:
        root: the dataset folder.
        products_path: the catalog file, `root/products.jsonl`.
        n_images: images written, all categories and splits together.
        n_triplets: caption triplets written, all categories and splits together.
        split_sizes: images per category and split.
        triplet_counts: triplets per category and split.
    """

    root: Path
    products_path: Path
    n_images: int
    n_triplets: int
    split_sizes: dict[str, dict[str, int]]
    triplet_counts: dict[str, dict[str, int]]


@dataclass(frozen=True)
class _Nuisance:
    scale: float
    dx: float
    dy: float
    angle: float
    background: RGB
    phase: tuple[int, int]


@dataclass(frozen=True)
class _Shapes:
    polygons: list[list[Point]]
    cutouts: list[tuple[Point, Point]]  # ellipses as (top-left, bottom-right)
    collar: list[list[Point]]
    buttons: list[Point]  # centres of small round buttons


# ---------------------------------------------------------------------------------------------
# Attributes and captions
# ---------------------------------------------------------------------------------------------


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
    difference = _luma(PALETTE[new]) - _luma(PALETTE[old])
    if difference < -60:
        return "is darker"
    if difference > 60:
        return "is lighter"
    return f"is {new.lower()} instead of {old.lower()}"


def _pick(options: Sequence[str], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def _luma(rgb: RGB) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


# ---------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------


def render_garment(garment: Garment, rng: np.random.Generator, *, size: int = 96) -> Image.Image:
    """Draws `garment` as a `size` x `size` RGB picture.

    Nuisance variation (position, scale, rotation, background tint, pattern phase, pixel noise)
    comes from `rng`; the same rng state gives the same pixels. The garment always covers the
    central 12% x 12% of the picture, and pattern marks and buttons cover well under half
    of it, so from 64 px up the patch's median is nearest the garment's PALETTE colour.
    """
    nuisance = _draw_nuisance(rng, size)
    canvas = _draw_supersampled(garment, nuisance, size * _SUPERSAMPLE)
    # Nearest-neighbour rotation at twice the size, then a box reduction: antialiased edges
    # without blurring the pattern into the garment's colour.
    canvas = canvas.rotate(
        nuisance.angle, resample=Image.Resampling.NEAREST, fillcolor=nuisance.background
    )
    return _add_noise(canvas.reduce(_SUPERSAMPLE), rng, amplitude=6)


def _draw_nuisance(rng: np.random.Generator, size: int) -> _Nuisance:
    period = _pattern_period(size * _SUPERSAMPLE)
    background = tuple(int(v) for v in rng.integers(215, 256, size=3))
    return _Nuisance(
        scale=float(rng.uniform(0.85, 1.0)),
        dx=float(rng.uniform(-0.03, 0.03)),
        dy=float(rng.uniform(-0.03, 0.03)),
        angle=float(rng.uniform(-6.0, 6.0)),
        background=background,  # type: ignore[arg-type]
        phase=(int(rng.integers(period)), int(rng.integers(period))),
    )


def _draw_supersampled(garment: Garment, nuisance: _Nuisance, side: int) -> Image.Image:
    shapes = _shapes(garment)

    def px(point: Point) -> Point:
        x = ((point[0] - 0.5) * nuisance.scale + 0.5 + nuisance.dx) * side
        y = ((point[1] - 0.5) * nuisance.scale + 0.5 + nuisance.dy) * side
        return (x, y)

    polygons = [[px(p) for p in polygon] for polygon in shapes.polygons]
    cutouts = [(px(top_left), px(bottom_right)) for top_left, bottom_right in shapes.cutouts]
    colour = PALETTE[garment.colour]
    edge = _shade(colour, 0.55)
    box = (0, 0, side, side)
    canvas = Image.new("RGB", (side, side), nuisance.background)
    border = max(_SUPERSAMPLE, round(side / 48))  # 2 px at 96 px, 1 px at 48 px and below
    canvas.paste(edge, box, _silhouette(polygons, cutouts, side=side, border=border))
    mask = _silhouette(polygons, cutouts, side=side, border=0)
    canvas.paste(colour, box, mask)
    if garment.pattern != "solid":
        marks = _pattern_marks(garment.pattern, side, nuisance.phase)
        canvas.paste(_contrast(colour), box, ImageChops.multiply(mask, marks))

    details = ImageDraw.Draw(canvas)
    for polygon in shapes.collar:
        details.polygon([px(p) for p in polygon], fill=colour, outline=edge, width=_SUPERSAMPLE)
    radius = max(1.0, side * 0.012 * nuisance.scale)
    for x, y in (px(p) for p in shapes.buttons):
        details.ellipse([(x - radius, y - radius), (x + radius, y + radius)], fill=edge)
    return canvas


def _silhouette(
    polygons: list[list[Point]], cutouts: list[tuple[Point, Point]], *, side: int, border: int
) -> Image.Image:
    """The garment's mask ("L"), grown by `border` pixels all round when border > 0."""
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    for polygon in polygons:
        draw.polygon(polygon, fill=255)
        if border:
            draw.line([*polygon, polygon[0]], fill=255, width=2 * border, joint="curve")
    for (x0, y0), (x1, y1) in cutouts:
        inset = min(border, (x1 - x0) / 3, (y1 - y0) / 3)
        draw.ellipse([(x0 + inset, y0 + inset), (x1 - inset, y1 - inset)], fill=0)
    return mask


def _pattern_period(side: int) -> int:
    return max(16, round(side * 0.12))


def _pattern_marks(pattern: str, side: int, phase: tuple[int, int]) -> Image.Image:
    """Where the pattern's marks are (255) on a side x side canvas, shifted by `phase`.

    Marks cover at most a quarter of the area, so the garment's median colour is its colour.
    """
    tile = _pattern_tile(pattern, side)
    return tile.crop((phase[1], phase[0], phase[1] + side, phase[0] + side))


@functools.lru_cache(maxsize=16)
def _pattern_tile(pattern: str, side: int) -> Image.Image:
    period = _pattern_period(side)
    yy, xx = np.mgrid[0 : side + period, 0 : side + period] % period
    if pattern == "stripes":
        marks = yy < period / 4
    elif pattern == "dots":
        marks = (yy - period / 2) ** 2 + (xx - period / 2) ** 2 < (period / 5) ** 2
    elif pattern == "checks":
        marks = (yy < period / 8) | (xx < period / 8)
    else:
        raise ValueError(f"unknown pattern {pattern!r}")
    return Image.fromarray(marks.astype(np.uint8) * 255, "L")


def _contrast(colour: RGB) -> RGB:
    if _luma(colour) < 110:
        return tuple(int(c + (255 - c) * 0.45) for c in colour)  # type: ignore[return-value]
    return _shade(colour, 0.6)


def _shade(colour: RGB, factor: float) -> RGB:
    return tuple(int(c * factor) for c in colour)  # type: ignore[return-value]


def _add_noise(image: Image.Image, rng: np.random.Generator, *, amplitude: int) -> Image.Image:
    pixels = np.asarray(image, dtype=np.int16)
    noise = rng.integers(-amplitude, amplitude + 1, size=pixels.shape, dtype=np.int16)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8), "RGB")


def _mirror(polygon: list[Point]) -> list[Point]:
    return [(1.0 - x, y) for x, y in reversed(polygon)]


def _with_mirror(polygons: list[list[Point]]) -> list[list[Point]]:
    return polygons + [_mirror(p) for p in polygons]


def _shapes(garment: Garment) -> _Shapes:
    builders = {"dress": _dress, "shirt": _shirt, "toptee": _toptee}
    return builders[garment.category](garment)


def _dress(garment: Garment) -> _Shapes:
    bodice = [(0.39, 0.15), (0.61, 0.15), (0.59, 0.40), (0.41, 0.40)]
    hem_y, hem_x = (0.92, 0.22) if garment.length == "long" else (0.68, 0.28)
    skirt = [(0.41, 0.40), (0.59, 0.40), (1.0 - hem_x, hem_y), (hem_x, hem_y)]
    sleeves = {
        "none": [],
        "short": [[(0.40, 0.15), (0.33, 0.18), (0.31, 0.27), (0.405, 0.26)]],
        "long": [[(0.40, 0.15), (0.34, 0.17), (0.27, 0.52), (0.32, 0.53), (0.41, 0.26)]],
    }[garment.sleeve]
    neckline = ((0.44, 0.11), (0.56, 0.19))
    return _Shapes([bodice, skirt, *_with_mirror(sleeves)], [neckline], [], [])


def _shirt(garment: Garment) -> _Shapes:
    torso = [(0.34, 0.19), (0.44, 0.15), (0.56, 0.15), (0.66, 0.19), (0.66, 0.84), (0.34, 0.84)]
    sleeves = {
        "short": [[(0.34, 0.19), (0.25, 0.26), (0.23, 0.37), (0.34, 0.36)]],
        "long": [[(0.34, 0.19), (0.27, 0.23), (0.20, 0.72), (0.27, 0.73), (0.34, 0.38)]],
    }[garment.sleeve]
    collar = _with_mirror([[(0.44, 0.15), (0.50, 0.23), (0.42, 0.21)]])
    buttons = [(0.50, y) for y in (0.32, 0.47, 0.62, 0.77)]
    return _Shapes([torso, *_with_mirror(sleeves)], [], collar, buttons)


def _toptee(garment: Garment) -> _Shapes:
    if garment.sleeve == "none":
        tank = [(0.39, 0.15), (0.44, 0.15), (0.46, 0.22), (0.54, 0.22), (0.56, 0.15)]
        tank += [(0.61, 0.15), (0.63, 0.32), (0.65, 0.80), (0.35, 0.80), (0.37, 0.32)]
        return _Shapes([tank], [], [], [])
    torso = [(0.36, 0.20), (0.44, 0.17), (0.56, 0.17), (0.64, 0.20), (0.65, 0.80), (0.35, 0.80)]
    sleeves = [[(0.36, 0.20), (0.29, 0.25), (0.27, 0.33), (0.355, 0.32)]]
    neckline = ((0.435, 0.135), (0.565, 0.225))
    return _Shapes([torso, *_with_mirror(sleeves)], [neckline], [], [])


# ---------------------------------------------------------------------------------------------
# The dataset
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    id: str
    split: str
    garment: Garment
    parent: str | None  # the candidate this item is the target of


def generate_fashioniq(
    root: Path,
    *,
    n_per_category: int,
    seed: int = 0,
    image_size: int = 96,
    splits: Sequence[tuple[str, float]] = DEFAULT_SPLITS,
    overwrite: bool = False,
) -> SyntheticSummary:
    """Renders a FashionIQ-layout dataset of synthetic garments under `root`.

    For each category, `n_per_category` images are divided among `splits` (largest-remainder
    rounding). Within a split, each image either starts a new garment (first image, and one in
    four after it) or copies an earlier image of the split with one or two visual attributes
    changed; the latter gives a triplet (candidate = the earlier image, target = this one) with
    two relative captions naming the change. Ids look like "syn_dress_00012".

    Writes `images/<id>.png`, `image_splits/split.<category>.<split>.json`,
    `captions/cap.<category>.<split>.json` and `products.jsonl` (title and attributes
    gender, articleType, baseColour, pattern, sleeve and, for dresses, length).
    `products.jsonl` is written last: its presence marks a complete dataset.

    Args:
        root: output folder, created if needed.
        n_per_category: images per category (>= 1).
        seed: the same seed (and arguments) gives byte-identical files.
        image_size: side of the square images in pixels (>= 16).
        splits: (name, fraction) pairs; fractions must sum to 1.
        overwrite: replace an earlier output in `root` (only the files and folders listed
            above are removed; anything else in `root` is left alone).

    Returns:
        What was written.

    Raises:
        ValueError: a bad argument.
        FileExistsError: `root` already holds output and `overwrite` is False.
    """
    root = Path(root)
    _validate(n_per_category=n_per_category, image_size=image_size, splits=splits)
    _prepare(root, overwrite=overwrite)
    counts = _split_counts(n_per_category, splits)
    products: list[Product] = []
    split_sizes: dict[str, dict[str, int]] = {}
    triplet_counts: dict[str, dict[str, int]] = {}
    for category_index, category in enumerate(CATEGORIES):
        items = _plan_category(category, counts, rng=np.random.default_rng([seed, category_index]))
        for item_index, item in enumerate(items):
            rng = np.random.default_rng([seed, category_index, item_index])
            image = render_garment(item.garment, rng, size=image_size)
            image.save(root / "images" / f"{item.id}.png", format="PNG", compress_level=1)
            products.append(_product(root, item))
        split_sizes[category], triplet_counts[category] = _write_split_files(
            root, category, items, splits=list(counts)
        )
    products_path = root / "products.jsonl"
    write_products(products_path, products)
    return SyntheticSummary(
        root=root,
        products_path=products_path,
        n_images=len(products),
        n_triplets=sum(sum(c.values()) for c in triplet_counts.values()),
        split_sizes=split_sizes,
        triplet_counts=triplet_counts,
    )


def _validate(*, n_per_category: int, image_size: int, splits: Sequence[tuple[str, float]]) -> None:
    if n_per_category < 1:
        raise ValueError(f"n_per_category must be >= 1, got {n_per_category}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    names = [name for name, _ in splits]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"split names must be unique and at least one, got {names}")
    if not all(re.fullmatch(r"[A-Za-z0-9_-]+", name) for name in names):
        raise ValueError(f"split names may hold only letters, digits, '_' and '-', got {names}")
    fractions = [fraction for _, fraction in splits]
    if any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")


def _prepare(root: Path, *, overwrite: bool) -> None:
    existing = [root / name for name in _OUTPUTS if (root / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{root} already holds a dataset ({existing[0].name}); pass overwrite"
        )
    for path in existing:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    for folder in ("images", "captions", "image_splits"):
        (root / folder).mkdir(parents=True, exist_ok=True)


def _split_counts(n: int, splits: Sequence[tuple[str, float]]) -> dict[str, int]:
    """Divides n among the splits by their fractions, rounding by largest remainder."""
    raw = [n * fraction for _, fraction in splits]
    counts = [int(r) for r in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    return {name: count for (name, _), count in zip(splits, counts, strict=True)}


def _plan_category(
    category: str, counts: dict[str, int], *, rng: np.random.Generator
) -> list[_Item]:
    items: list[_Item] = []
    for split, count in counts.items():
        in_split: list[_Item] = []
        for _ in range(count):
            item_id = f"syn_{category}_{len(items) + len(in_split):05d}"
            if not in_split or rng.random() < _NEW_ROOT_PROBABILITY:
                in_split.append(_Item(item_id, split, random_garment(category, rng), None))
            else:
                parent = in_split[int(rng.integers(len(in_split)))]
                in_split.append(_Item(item_id, split, mutate(parent.garment, rng), parent.id))
        items.extend(in_split)
    return items


def _product(root: Path, item: _Item) -> Product:
    return Product(
        id=item.id,
        image=(root / "images" / f"{item.id}.png").resolve(),
        title=item.garment.title(),
        attributes=item.garment.attributes(),
    )


def _write_split_files(
    root: Path, category: str, items: list[_Item], *, splits: list[str]
) -> tuple[dict[str, int], dict[str, int]]:
    by_id = {item.id: item for item in items}
    sizes: dict[str, int] = {}
    triplet_counts: dict[str, int] = {}
    for split in splits:
        in_split = [item for item in items if item.split == split]
        triplets = [
            {
                "target": item.id,
                "candidate": item.parent,
                "captions": list(relative_captions(by_id[item.parent].garment, item.garment)),
            }
            for item in in_split
            if item.parent is not None
        ]
        _write_json(
            root / "image_splits" / f"split.{category}.{split}.json", [i.id for i in in_split]
        )
        _write_json(root / "captions" / f"cap.{category}.{split}.json", triplets)
        sizes[split] = len(in_split)
        triplet_counts[split] = len(triplets)
    return sizes, triplet_counts


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: `python -m shared.data.synthetic ROOT --n-per-category 100`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="output folder")
    parser.add_argument("--n-per-category", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier output")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    summary = generate_fashioniq(
        args.root,
        n_per_category=args.n_per_category,
        seed=args.seed,
        image_size=args.image_size,
        overwrite=args.overwrite,
    )
    seconds = time.perf_counter() - start
    print(
        f"wrote {summary.n_images} images and {summary.n_triplets} triplets "
        f"to {summary.root} in {seconds:.2f}s"
    )


if __name__ == "__main__":
    main()
