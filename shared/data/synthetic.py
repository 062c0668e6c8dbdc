"""A deterministic renderer of a small FashionIQ-layout dataset, for tests and smoke runs.

`generate_fashioniq` draws flat garment pictures (dresses, shirts, tops) whose attributes are
known exactly: colour, pattern, sleeve length and, for dresses, length. It writes them in the
FashionIQ layout (see `shared.data.fashioniq`) with relative captions derived from the attribute
differences between candidate and target, plus a `products.jsonl` in the catalog format (see
`shared.data.catalog`), so the same set serves composed, text and image retrieval.

Unlike the official release, the synthetic test split keeps its targets, so recall can be
measured on it. The same arguments give byte-identical files (with the same numpy and PIL).

The garments and their captions are `shared.data.garments`; their pictures
`shared.data.garment_drawing`.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.data.catalog import Product, write_products
from shared.data.fashioniq import CATEGORIES
from shared.data.garment_drawing import render_garment
from shared.data.garments import Garment, mutate, random_garment, relative_captions

DEFAULT_SPLITS = (("train", 0.7), ("val", 0.15), ("test", 0.15))
_OUTPUTS = ("images", "captions", "image_splits", "products.jsonl")
_NEW_ROOT_PROBABILITY = 0.25


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
    products, split_sizes, triplet_counts = _write_categories(
        root, counts, seed=seed, image_size=image_size
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


def _write_categories(
    root: Path, counts: dict[str, int], *, seed: int, image_size: int
) -> tuple[list[Product], dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Writes every category's images and split files; returns the products, and the images
    and triplets per category and split."""
    products: list[Product] = []
    split_sizes: dict[str, dict[str, int]] = {}
    triplet_counts: dict[str, dict[str, int]] = {}
    for category_index, category in enumerate(CATEGORIES):
        items = _plan_category(category, counts, rng=np.random.default_rng([seed, category_index]))
        products += _write_images(root, items, seed=[seed, category_index], size=image_size)
        split_sizes[category], triplet_counts[category] = _write_split_files(
            root, category, items, splits=list(counts)
        )
    return products, split_sizes, triplet_counts


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


def _write_images(root: Path, items: list[_Item], *, seed: list[int], size: int) -> list[Product]:
    """Renders each item's picture, each from its own rng, and returns the items' products."""
    products = []
    for item_index, item in enumerate(items):
        rng = np.random.default_rng([*seed, item_index])
        image = render_garment(item.garment, rng, size=size)
        image.save(root / "images" / f"{item.id}.png", format="PNG", compress_level=1)
        products.append(_product(root, item))
    return products


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
