"""A disk cache of frozen-backbone features, so CPU training and evaluation pay for a backbone once.

Features are stored per input, so any subset of a catalog (a train or test split, a grown
catalog) reuses what was computed before. Layout: one folder per (backbone spec,
preprocessing, view) holding chunks — `<n>.npy` (features, loaded with allow_pickle=False)
and `<n>.json` (the input keys of its rows). An image's key is its path, size and mtime; a
text's key is the text itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch

from shared.data.catalog import Product
from shared.models.backbone import Backbone
from shared.models.image_backbone_combined import CombinedImageBackbone
from shared.models.inference import image_features, open_image, text_features
from shared.models.transforms import ImagePreprocessor


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


class FeatureStore:
    """Features of one backbone configuration, keyed per input."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._rows: dict[str, tuple[Path, int]] = {}
        for index in sorted(directory.glob("*.json")):
            for row, key in enumerate(json.loads(index.read_text())):
                self._rows[key] = (index.with_suffix(".npy"), row)

    def get(self, keys: Sequence[str], compute: Callable[[list[int]], np.ndarray]) -> np.ndarray:
        """Rows for `keys`, computing the missing ones with `compute(positions)` and storing them."""
        missing = [i for i, k in enumerate(keys) if k not in self._rows]
        if missing:
            self._append([keys[i] for i in missing], compute(missing))
        arrays: dict[Path, np.ndarray] = {}
        rows = []
        for key in keys:
            path, row = self._rows[key]
            if path not in arrays:
                arrays[path] = np.load(path, allow_pickle=False, mmap_mode="r")
            rows.append(arrays[path][row])
        return np.stack(rows).astype(np.float32)

    def _append(self, keys: list[str], features: np.ndarray) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = _digest(keys)
        np.save(self.directory / f"{name}.npy", features, allow_pickle=False)
        tmp = self.directory / f"{name}.json.tmp"
        tmp.write_text(json.dumps(keys))
        tmp.rename(self.directory / f"{name}.json")  # the index appears only once rows exist
        for row, key in enumerate(keys):
            self._rows[key] = (self.directory / f"{name}.npy", row)


def weights_fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer: fine-tuned weights never reuse stale features."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(
            tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        )
    return digest.hexdigest()[:24]


def image_key(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{int(stat.st_mtime)}"


def cached_image_features(
    backbone: Backbone,
    preprocessor: ImagePreprocessor,
    products: Sequence[Product],
    *,
    cache_dir: Path,
    flip: bool = False,
    prefix_blocks: int = 0,
    label: str = "",
) -> np.ndarray:
    """Features [len(products), feature_dim] of the products' images, each computed once.

    With `prefix_blocks` > 0, the output of the backbone's frozen prefix (everything before
    its last `prefix_blocks` blocks) instead, e.g. [len(products), C, h, w].
    """
    if isinstance(backbone, CombinedImageBackbone) and not prefix_blocks:
        # Each member apart: the first shares its cache with the same backbone used alone.
        parts = [
            cached_image_features(
                member, preprocessor, products, cache_dir=cache_dir, flip=flip, label=label
            )
            for member in backbone.members
        ]
        return backbone.merge(parts)
    config = [backbone.spec(), weights_fingerprint(backbone), preprocessor.to_dict(), flip]
    if prefix_blocks:
        config.append({"prefix_of_last_blocks": prefix_blocks})
    store = FeatureStore(cache_dir / f"image-{_digest(config)}")
    view = ("mirrored" if flip else "plain") + (
        f", prefix of last {prefix_blocks}" if prefix_blocks else ""
    )
    forward = (
        partial(backbone.forward_prefix, train_last_blocks=prefix_blocks) if prefix_blocks else None
    )

    def compute(positions: list[int]) -> np.ndarray:
        return image_features(
            backbone,
            preprocessor,
            lambda i: open_image(products[positions[i]].image),
            len(positions),
            flip=flip,
            desc=f"{label} image features ({view})",
            forward=forward,
        )

    return store.get([image_key(p.image) for p in products], compute)


def cached_text_features(
    backbone: Backbone, texts: Sequence[str], *, cache_dir: Path, label: str = ""
) -> np.ndarray:
    """Features [len(texts), feature_dim], each computed once."""
    store = FeatureStore(
        cache_dir / f"text-{_digest([backbone.spec(), weights_fingerprint(backbone)])}"
    )
    return store.get(
        list(texts),
        lambda positions: text_features(
            backbone, [texts[i] for i in positions], desc=f"{label} text features"
        ),
    )
