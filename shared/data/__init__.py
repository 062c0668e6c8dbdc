"""Datasets: the product catalog format, FashionIQ triplets and a synthetic FashionIQ renderer.

Modules here depend on numpy and PIL only, so that any process (and any test) can read data
without pulling in Ray, gRPC, Kafka or torch.

- `shared.data.catalog`: `Product`, `products.jsonl` reading and writing, a stable train/test split.
- `shared.data.fashioniq`: FashionIQ caption triplets, image splits and image look-up.
- `shared.data.synthetic`: a deterministic renderer of a small FashionIQ-layout dataset
  (the garments in `shared.data.garments`, their pictures in `shared.data.garment_drawing`).
"""

from __future__ import annotations

import importlib

from shared.data.catalog import (
    CatalogFormatError,
    Product,
    load_products,
    split_products,
    write_products,
)
from shared.data.fashioniq import (
    CATEGORIES,
    FashionIQTriplet,
    image_path,
    load_fashioniq,
    load_split_ids,
    to_products,
)

# The renderer is imported on first use, so that reading data does not load it.
_LAZY = {"SyntheticSummary": "shared.data.synthetic", "generate_fashioniq": "shared.data.synthetic"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CATEGORIES",
    "CatalogFormatError",
    "FashionIQTriplet",
    "Product",
    "SyntheticSummary",
    "generate_fashioniq",
    "image_path",
    "load_fashioniq",
    "load_products",
    "load_split_ids",
    "split_products",
    "to_products",
    "write_products",
]
