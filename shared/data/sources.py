"""What `vitrine publish` can publish, as catalog products.

A source is one of:
- a products.jsonl (or a folder holding one): id, image, title, attributes;
- a FashionIQ folder (`image_splits/` and `images/`): every image of every category and split,
  titled "<category> <id>";
- a folder of images (searched recursively): the id is the path below the folder without its
  extension, the title is the file name's words, the attribute `folder` its parent folder;
- `synthetic:N`: N rendered garments per category (cached under the cache folder, the same
  generator as the smoke training data).
"""

from __future__ import annotations

from pathlib import Path

from shared.data.catalog import Product, load_products
from shared.data.fashioniq import CATEGORIES, IMAGE_EXTENSIONS, to_products

SYNTHETIC = "synthetic:"


class SourceError(ValueError):
    """The source does not exist or is none of the kinds above (the message says which)."""


def describe(source: str) -> str:
    """The kind of source, as `load_source` reads it."""
    if source.startswith(SYNTHETIC):
        return "synthetic"
    path = Path(source)
    if path.is_file():
        return "products.jsonl"
    if (path / "products.jsonl").is_file():
        return "products.jsonl"
    if (path / "image_splits").is_dir():
        return "fashioniq"
    if path.is_dir():
        return "image folder"
    raise SourceError(
        f"{source!r}: not a products.jsonl, a FashionIQ folder, an image folder or synthetic:N"
    )


def load_source(source: str, *, cache_dir: Path) -> list[Product]:
    """The products of a source (see the module docstring).

    Raises:
        SourceError: the source is unusable or holds no product.
    """
    kind = describe(source)
    if kind == "synthetic":
        products = _synthetic(source, cache_dir)
    elif kind == "products.jsonl":
        path = Path(source)
        products = load_products(path if path.is_file() else path / "products.jsonl")
    elif kind == "fashioniq":
        products = _fashioniq(Path(source))
    else:
        products = _image_folder(Path(source))
    if not products:
        raise SourceError(f"{source!r} ({kind}) holds no product")
    return products


def _synthetic(source: str, cache_dir: Path) -> list[Product]:
    from shared.data.synthetic import generate_fashioniq

    try:
        n = int(source[len(SYNTHETIC) :])
    except ValueError:
        raise SourceError(f"{source!r}: expected synthetic:N with N images per category") from None
    if n < 1:
        raise SourceError(f"{source!r}: N must be at least 1")
    root = cache_dir / "data" / f"publish-synthetic-{n}"
    if not (root / "products.jsonl").is_file():
        generate_fashioniq(root, n_per_category=n, seed=1, overwrite=True)
    return load_products(root / "products.jsonl")


def _fashioniq(root: Path) -> list[Product]:
    seen: dict[str, Product] = {}
    for split_file in sorted((root / "image_splits").glob("split.*.*.json")):
        _, category, split, _ = split_file.name.split(".")
        if category not in CATEGORIES:
            continue
        for p in to_products(root, category, split, skip_missing=True):
            seen.setdefault(p.id, p)
    return list(seen.values())


def _image_folder(root: Path) -> list[Product]:
    suffixes = {f".{ext}" for ext in IMAGE_EXTENSIONS}
    products = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in suffixes or not path.is_file():
            continue
        relative = path.relative_to(root).with_suffix("")
        products.append(
            Product(
                id=relative.as_posix(),
                image=path.resolve(),
                title=path.stem.replace("_", " ").replace("-", " "),
                attributes={"folder": path.parent.name} if path.parent != root else {},
            )
        )
    return products
