"""Image-caption sets (Flickr30k, COCO Captions) as catalogs, so teams with those sets can train
and evaluate with the same commands as a product catalog.

Formats read:
- COCO Captions: `captions_*.json`, {"images": [{"id", "file_name"}], "annotations":
  [{"image_id", "caption"}]};
- Flickr30k (and Flickr8k) token files: one line per caption, `IMAGE#N<TAB>caption`
  (`results_20130124.token`), or the Kaggle CSV with a header `image_name| comment_number|
  comment` (`results.csv`).

Image names must stay inside the image folder ("../" or absolute names are refused). Each
image becomes one product: id = the file's stem, title = its first caption, and every
caption (first included) joined by CAPTION_SEPARATOR in the `captions` attribute, which the
evaluation turns into one text->image query per caption (the Flickr30k/COCO protocol). Images
missing from the folder are skipped and counted.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from shared.data.catalog import Product

CAPTION_SEPARATOR = " || "
CAPTIONS_ATTRIBUTE = "captions"


@dataclass(frozen=True)
class CaptionSet:
    products: list[Product]
    missing_images: int  # captioned images not found in the folder


class CaptionFormatError(ValueError):
    """A captions file that cannot be read, naming the file and the problem."""


def _products(captions: dict[str, list[str]], images: Path) -> CaptionSet:
    """Raises CaptionFormatError for an image name that leads outside the image folder."""
    products, missing = [], 0
    root = images.resolve()
    for name, texts in captions.items():
        path = images / name
        if not path.resolve().is_relative_to(root):
            raise CaptionFormatError(f"image {name!r} is outside the image folder {images}")
        texts = [" ".join(t.split()) for t in texts if t.strip()]
        if not texts:
            continue
        if not path.is_file():
            missing += 1
            continue
        products.append(
            Product(
                id=Path(name).stem,
                image=path.resolve(),
                title=texts[0],
                attributes={CAPTIONS_ATTRIBUTE: CAPTION_SEPARATOR.join(texts)},
            )
        )
    return CaptionSet(products, missing)


def load_coco(captions_file: Path, images: Path) -> CaptionSet:
    """A COCO Captions JSON file and its image folder."""
    try:
        data = json.loads(Path(captions_file).read_text(encoding="utf-8"))
        names = {image["id"]: image["file_name"] for image in data["images"]}
        captions: dict[str, list[str]] = defaultdict(list)
        for note in data["annotations"]:
            captions[names[note["image_id"]]].append(str(note["caption"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CaptionFormatError(f"{captions_file}: not a COCO captions file: {exc!r}") from None
    return _products(dict(sorted(captions.items())), Path(images))


def _flickr_rows(lines: Iterable[str], source: Path) -> Iterable[tuple[str, str]]:
    lines = list(lines)
    if lines and "|" in lines[0] and "image_name" in lines[0]:  # the Kaggle CSV
        for row in csv.reader(lines[1:], delimiter="|"):
            if len(row) >= 3:
                yield row[0].strip(), row[2].strip()
        return
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        key, sep, caption = line.partition("\t")
        if not sep or "#" not in key:
            raise CaptionFormatError(f"{source} line {number}: expected IMAGE#N<TAB>caption")
        yield key.rsplit("#", 1)[0], caption


def load_flickr(captions_file: Path, images: Path) -> CaptionSet:
    """A Flickr30k/8k token file (or the Kaggle results.csv) and its image folder."""
    try:
        lines = Path(captions_file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CaptionFormatError(f"{captions_file}: {exc}") from None
    captions: dict[str, list[str]] = defaultdict(list)
    for name, caption in _flickr_rows(lines, Path(captions_file)):
        captions[name].append(caption)
    return _products(dict(captions), Path(images))


LOADERS = {"coco": load_coco, "flickr": load_flickr}


def captions_of(product: Product) -> list[str]:
    """Every caption of a product imported by this module ([] for other products)."""
    joined = product.attributes.get(CAPTIONS_ATTRIBUTE, "")
    return [c for c in joined.split(CAPTION_SEPARATOR) if c] if joined else []
