"""FashionIQ: composed-query triplets (candidate image + relative captions -> target image).

The official release (and `shared.data.synthetic`) uses this layout under a root folder::

    captions/cap.<category>.<split>.json      [{"target", "candidate", "captions": [c1, c2]}]
    image_splits/split.<category>.<split>.json  ["B008BHCT58", ...]
    images/<id>.<ext>                          (not shipped with the captions)

In the official test split the caption files omit "target" (the answers are withheld), so
`FashionIQTriplet.target` is None there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.data.catalog import Product

CATEGORIES = ("dress", "shirt", "toptee")
SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp")


@dataclass(frozen=True)
class FashionIQTriplet:
    """One composed query: "like `candidate`, but <captions>", answered by `target`.

    Attributes:
        category: one of CATEGORIES.
        candidate: id of the reference image.
        target: id of the wanted image; None where the file withholds it (official test split).
        captions: the relative captions (two in FashionIQ), stripped of surrounding whitespace;
            a few official captions are empty strings.
    """

    category: str
    candidate: str
    target: str | None
    captions: tuple[str, ...]

    @property
    def query_text(self) -> str:
        """The captions joined with " and ", the usual single-text form of the query."""
        return " and ".join(caption for caption in self.captions if caption)


def captions_path(root: Path, category: str, split: str) -> Path:
    """The caption file of one category and split under `root`."""
    return Path(root) / "captions" / f"cap.{_checked(category)}.{split}.json"


def split_path(root: Path, category: str, split: str) -> Path:
    """The image-split file of one category and split under `root`."""
    return Path(root) / "image_splits" / f"split.{_checked(category)}.{split}.json"


def load_fashioniq(root: Path, category: str, split: str) -> list[FashionIQTriplet]:
    """Reads the caption triplets of one category and split.

    Args:
        root: the FashionIQ folder (holding `captions/`).
        category: one of CATEGORIES.
        split: "train", "val" or "test" (or another split name the folder has).

    Returns:
        The triplets in file order.

    Raises:
        ValueError: unknown category, or a malformed entry (the message names file and index).
        FileNotFoundError: the caption file does not exist.
    """
    path = captions_path(root, category, split)
    entries = _read_json_list(path)
    return [_triplet(path, index, entry, category) for index, entry in enumerate(entries)]


def _triplet(path: Path, index: int, entry: Any, category: str) -> FashionIQTriplet:
    if not isinstance(entry, dict):
        raise ValueError(f"{path}[{index}]: expected an object, got {type(entry).__name__}")
    candidate = entry.get("candidate")
    target = entry.get("target")
    captions = entry.get("captions")
    if not isinstance(candidate, str) or not candidate:
        raise ValueError(f"{path}[{index}]: 'candidate' must be a non-empty string")
    if target is not None and (not isinstance(target, str) or not target):
        raise ValueError(f"{path}[{index}]: 'target' must be a non-empty string when present")
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
        raise ValueError(f"{path}[{index}]: 'captions' must be a list of strings")
    return FashionIQTriplet(
        category=category,
        candidate=candidate,
        target=target,
        captions=tuple(caption.strip() for caption in captions),
    )


def load_split_ids(root: Path, category: str, split: str) -> list[str]:
    """Reads the image ids of one category and split (the retrieval gallery of that split).

    Raises:
        ValueError: unknown category, or the file is not a list of strings.
        FileNotFoundError: the split file does not exist.
    """
    path = split_path(root, category, split)
    ids = _read_json_list(path)
    if not all(isinstance(image_id, str) and image_id for image_id in ids):
        raise ValueError(f"{path}: expected a list of non-empty id strings")
    return ids


def image_path(root: Path, image_id: str) -> Path:
    """Finds the image file of `image_id`: `root/images/<id>.<ext>` for ext in IMAGE_EXTENSIONS.

    Raises:
        FileNotFoundError: no such file, for any of the extensions; the message names the id.
    """
    images = Path(root) / "images"
    for ext in IMAGE_EXTENSIONS:
        candidate = images / f"{image_id}.{ext}"
        if candidate.is_file():
            return candidate
    tried = ", ".join(f".{ext}" for ext in IMAGE_EXTENSIONS)
    raise FileNotFoundError(f"no image for FashionIQ id {image_id!r} in {images} (tried {tried})")


def to_products(
    root: Path, category: str, split: str, *, skip_missing: bool = False
) -> list[Product]:
    """The images of one category and split as catalog products (e.g. to index a gallery).

    FashionIQ has no titles or attributes: the title is "<category> <id>" and the attributes
    are {"category": category, "split": split}.

    Args:
        root: the FashionIQ folder.
        category: one of CATEGORIES.
        split: the split whose image ids to use.
        skip_missing: leave out ids without an image file instead of raising.

    Raises:
        FileNotFoundError: an image is missing and `skip_missing` is False.
    """
    products = []
    for image_id in load_split_ids(root, category, split):
        try:
            path = image_path(root, image_id)
        except FileNotFoundError:
            if skip_missing:
                continue
            raise
        products.append(
            Product(
                id=image_id,
                image=path.resolve(),
                title=f"{category} {image_id}",
                attributes={"category": category, "split": split},
            )
        )
    return products


def _checked(category: str) -> str:
    if category not in CATEGORIES:
        raise ValueError(f"unknown FashionIQ category {category!r}; expected one of {CATEGORIES}")
    return category


def _read_json_list(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: invalid JSON: {exc}") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list, got {type(data).__name__}")
    return data
