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
    the other products. Synthetic data is rendered with a train and a test split of
    `test_fraction`, and its test split is the held-out set, so that the FashionIQ triplets of
    the test split (candidate and target) are never seen in training.
    """
    root: Path | None = None
    if cfg.kind == "synthetic":
        name = f"{cfg.synthetic_per_category}-{cfg.synthetic_image_size}-{cfg.split_seed}-{cfg.test_fraction}"
        root = workdir / f"synthetic-{name}"
        if not (root / "products.jsonl").is_file():
            generate_fashioniq(
                root,
                n_per_category=cfg.synthetic_per_category,
                seed=cfg.split_seed,
                image_size=cfg.synthetic_image_size,
                splits=(("train", 1 - cfg.test_fraction), ("test", cfg.test_fraction)),
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
    if cfg.kind == "synthetic" and root is not None:
        held_out = {
            i for cat in fashioniq.CATEGORIES for i in fashioniq.load_split_ids(root, cat, "test")
        }
        train = [p for p in products if p.id not in held_out]
        test = [p for p in products if p.id in held_out]
        rule = "the generator's test split"
    else:
        train, test = split_products(products, test_fraction=cfg.test_fraction, seed=cfg.split_seed)
        rule = f"sha256(f'{cfg.split_seed}:{{id}}') < {cfg.test_fraction}"
    description = {
        "kind": cfg.kind,
        "path": str((cfg.path or root or Path()).resolve()),
        "products": len(products),
        "train": len(train),
        "test": len(test),
        "split": rule,
    }
    return PreparedData(train, test, description, fashioniq_root=root)
