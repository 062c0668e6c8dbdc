"""A disk cache of frozen-backbone features, so CPU training pays for the backbones once.

Key: SHA-256 of the backbone spec, the preprocessing, the view (plain or mirrored) and the
list of inputs (image paths with their sizes and mtimes, or texts). Stored as .npy
(loaded with allow_pickle=False).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from shared.data.catalog import Product
from shared.models.backbone import Backbone
from shared.models.inference import image_features, open_image, text_features
from shared.models.text_backbone_hf import HFTextBackbone
from shared.models.transforms import ImagePreprocessor

log = logging.getLogger(__name__)


def _key(parts: list) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _cached(path: Path, compute: Callable[[], np.ndarray]) -> np.ndarray:
    if path.is_file():
        return np.load(path, allow_pickle=False)
    array = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, array, allow_pickle=False)
    tmp.rename(path)
    return array


def cached_image_features(
    backbone: Backbone,
    preprocessor: ImagePreprocessor,
    products: Sequence[Product],
    *,
    cache_dir: Path,
    flip: bool = False,
    label: str = "",
) -> np.ndarray:
    """Features [len(products), feature_dim] of the products' images, computed once."""
    files = [(str(p.image), p.image.stat().st_size, int(p.image.stat().st_mtime)) for p in products]
    key = _key([backbone.spec(), preprocessor.to_dict(), flip, files])
    path = cache_dir / f"image-{key}.npy"
    view = "mirrored" if flip else "plain"
    return _cached(
        path,
        lambda: image_features(
            backbone,
            preprocessor,
            lambda i: open_image(products[i].image),
            len(products),
            flip=flip,
            desc=f"{label} image features ({view})",
        ),
    )


def cached_text_features(
    backbone: HFTextBackbone, texts: Sequence[str], *, cache_dir: Path, label: str = ""
) -> np.ndarray:
    """Features [len(texts), feature_dim], computed once."""
    key = _key([backbone.spec(), list(texts)])
    return _cached(
        cache_dir / f"text-{key}.npy",
        lambda: text_features(backbone, texts, desc=f"{label} text features"),
    )
