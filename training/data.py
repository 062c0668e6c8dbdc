"""Training data: resolve the configured source into train and held-out product lists."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.data import fashioniq
from shared.data.catalog import Product, load_products, split_products
from shared.data.synthetic import generate_fashioniq
from training.config import DataConfig


@dataclass
class PreparedData:
    """Products to train on and the held-out products (never seen in training)."""

    train: list[Product]
    test: list[Product]
    description: dict[str, Any] = field(default_factory=dict)
    fashioniq_root: Path | None = None


def prepare_data(cfg: DataConfig, *, workdir: Path) -> PreparedData:
    """Loads (or, for `synthetic`, renders into `workdir`) the data and splits it.

    Split rule: `shared.data.catalog.split_products` — a product is held out when a stable
    hash of its id and `split_seed` falls below `test_fraction`; the split never depends on
    the other products.
    """
    root: Path | None = None
    if cfg.kind == "synthetic":
        root = (
            workdir
            / f"synthetic-{cfg.synthetic_per_category}-{cfg.synthetic_image_size}-{cfg.split_seed}"
        )
        if not (root / "products.jsonl").is_file():
            generate_fashioniq(
                root,
                n_per_category=cfg.synthetic_per_category,
                seed=cfg.split_seed,
                image_size=cfg.synthetic_image_size,
                overwrite=True,  # a folder without products.jsonl is an interrupted run
            )
        products = load_products(root / "products.jsonl")
    elif cfg.kind == "catalog":
        if cfg.path is None:
            raise ValueError("data.kind=catalog needs data.path (a products.jsonl)")
        products = load_products(cfg.path)
    else:
        if cfg.path is None:
            raise ValueError("data.kind=fashioniq needs data.path (a FashionIQ folder)")
        root = cfg.path
        products = [
            p
            for cat in fashioniq.CATEGORIES
            for p in fashioniq.to_products(root, cat, "train", skip_missing=True)
        ]
    if cfg.limit:
        products = products[: cfg.limit]
    train, test = split_products(products, test_fraction=cfg.test_fraction, seed=cfg.split_seed)
    description = {
        "kind": cfg.kind,
        "path": str(cfg.path or root),
        "products": len(products),
        "train": len(train),
        "test": len(test),
        "split": f"sha256(f'{cfg.split_seed}:{{id}}') < {cfg.test_fraction}",
    }
    return PreparedData(train, test, description, fashioniq_root=root)
