"""The product catalog file format (`products.jsonl`) and a stable train/test split.

Each line of a `products.jsonl` is one JSON object describing one product::

    {"id": "10008", "image": "images/10008.jpg", "title": "Nike Men Town Navy Blue T-Shirts",
     "gender": "Men", "articleType": "Tshirts", "baseColour": "Navy Blue", ...}

`id`, `image` and `title` are required; every other key is a free-form attribute (Myntra uses
gender, masterCategory, subCategory, articleType, baseColour, season and usage). A relative
`image` is relative to the folder that holds the jsonl file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REQUIRED_KEYS = ("id", "image", "title")
_SCALARS = (str, int, float, bool)


class CatalogFormatError(ValueError):
    """A line of a products.jsonl is malformed; the message names the file and line number.

    Attributes:
        path: the file being read.
        line: 1-based number of the offending line.
    """

    def __init__(self, path: Path, line: int, problem: str) -> None:
        super().__init__(f"{path}:{line}: {problem}")
        self.path = path
        self.line = line


@dataclass(frozen=True)
class Product:
    """One catalog product.

    Attributes:
        id: unique product id.
        image: absolute path of the product image.
        title: human-readable product title.
        attributes: every other property of the product (e.g. articleType, baseColour, gender),
            values as strings. Never contains the keys id, image or title.
    """

    id: str
    image: Path
    title: str
    attributes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("product id must be a non-empty string")
        clashes = sorted(set(self.attributes) & set(REQUIRED_KEYS))
        if clashes:
            raise ValueError(f"product {self.id!r}: attributes may not use the keys {clashes}")
        object.__setattr__(self, "image", Path(self.image))
        # A private copy: the caller's dict can change without changing the product.
        object.__setattr__(self, "attributes", dict(self.attributes))

    def __hash__(self) -> int:
        return hash((self.id, self.image, self.title, tuple(sorted(self.attributes.items()))))


def load_products(path: Path) -> list[Product]:
    """Reads a products.jsonl file.

    Blank lines are skipped. Attribute values are converted to strings; null and empty values
    are dropped. Relative image paths are resolved against the folder holding `path`.

    Args:
        path: the jsonl file.

    Returns:
        The products, in file order.

    Raises:
        CatalogFormatError: (a ValueError) a line is not a JSON object, lacks a required key,
            has a value of the wrong type, or repeats an id; the message names the line.
    """
    path = Path(path)
    base = path.parent.resolve()
    products: list[Product] = []
    first_seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                product = _parse_line(line, base)
            except ValueError as exc:
                raise CatalogFormatError(path, number, str(exc)) from None
            if product.id in first_seen:
                problem = f"duplicate id {product.id!r} (first on line {first_seen[product.id]})"
                raise CatalogFormatError(path, number, problem)
            first_seen[product.id] = number
            products.append(product)
    return products


def _parse_line(line: str, base: Path) -> Product:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if missing:
        raise ValueError(f"missing required key(s) {', '.join(missing)}")
    product_id = _required_text(record, "id", allow_int=True)
    image = _required_text(record, "image")
    title = _required_text(record, "title")
    attributes = _attributes(record)
    return Product(
        id=product_id, image=(base / image).resolve(), title=title, attributes=attributes
    )


def _required_text(record: Mapping[str, Any], key: str, *, allow_int: bool = False) -> str:
    value = record[key]
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key!r} must be a non-empty string, got {value!r}")
    return value


def _attributes(record: Mapping[str, Any]) -> dict[str, str]:
    attributes: dict[str, str] = {}
    for key, value in record.items():
        if key in REQUIRED_KEYS or value is None or value == "":
            continue
        if not isinstance(value, _SCALARS):
            raise ValueError(f"attribute {key!r} must be a string or number, got {value!r}")
        attributes[key] = _attribute_text(value)
    return attributes


def _attribute_text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def write_products(path: Path, products: Iterable[Product]) -> None:
    """Writes products as a products.jsonl that `load_products` reads back unchanged.

    Image paths inside the jsonl's folder are written relative to it (with forward slashes);
    others stay absolute. A relative `Product.image` is taken as relative to the jsonl's folder.
    Parent folders are created.

    Args:
        path: the jsonl file to (over)write.
        products: the products, written in this order.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for product in products:
            f.write(json.dumps(_record(product, base), ensure_ascii=False) + "\n")


def _record(product: Product, base: Path) -> dict[str, str]:
    image = Path(product.image)
    if not image.is_absolute():
        image = (base / image).resolve()
    shown = image.relative_to(base).as_posix() if image.is_relative_to(base) else str(image)
    return {"id": product.id, "image": shown, "title": product.title, **product.attributes}


def split_products(
    products: Sequence[Product], *, test_fraction: float, seed: int = 0
) -> tuple[list[Product], list[Product]]:
    """Splits products into train and test by a stable hash of each product's id.

    A product goes to test when the first 8 bytes of SHA-256(f"{seed}:{id}"), read as a
    fraction of 2**64, fall below `test_fraction`. Its side therefore depends only on its id,
    the seed and the fraction, never on the other products: adding or removing products never
    moves an existing one, and raising `test_fraction` only moves products from train to test.
    The test share is `test_fraction` in expectation, not exactly.

    Args:
        products: the products to split.
        test_fraction: expected share of products in test, in [0, 1].
        seed: changes the assignment as a whole; the same seed always gives the same split.

    Returns:
        (train, test), each in the input order.

    Raises:
        ValueError: `test_fraction` is outside [0, 1].
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    train: list[Product] = []
    test: list[Product] = []
    for product in products:
        side = test if _unit_hash(product.id, seed) < test_fraction else train
        side.append(product)
    return train, test


def _unit_hash(product_id: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{product_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64
