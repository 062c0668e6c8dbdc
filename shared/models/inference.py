"""Batched inference helpers: backbone features and tower embeddings for many inputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from shared.models.backbone import Backbone
from shared.models.model import RetrievalModel
from shared.models.transforms import ImagePreprocessor, to_rgb


def open_image(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return to_rgb(img.copy() if img.mode == "RGB" else img)


def _batched(n: int, batch_size: int, desc: str | None) -> tqdm:
    return tqdm(range(0, n, batch_size), desc=desc, disable=desc is None, unit="batch", leave=False)


@torch.inference_mode()
def image_features(
    backbone: Backbone,
    preprocessor: ImagePreprocessor,
    load: Callable[[int], Image.Image],
    n: int,
    *,
    batch_size: int = 32,
    flip: bool = False,
    desc: str | None = None,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> np.ndarray:
    """Backbone outputs of n images, float32: pooled features [n, feature_dim] by default.

    Args:
        load: returns image i.
        flip: mirror each image horizontally first (a second view for augmentation).
        desc: progress-bar label; None hides the bar.
        forward: what to run instead of `backbone` (e.g. its frozen prefix).
    """
    backbone.eval()
    forward = forward or backbone
    chunks = []
    for start in _batched(n, batch_size, desc):
        images = [load(i) for i in range(start, min(n, start + batch_size))]
        if flip:
            images = [img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for img in images]
        chunks.append(forward(preprocessor.batch(images)).numpy().astype(np.float32))
    if not chunks:
        return np.zeros((0, backbone.feature_dim), dtype=np.float32)
    return np.concatenate(chunks)


@torch.inference_mode()
def text_features(
    backbone: Backbone, texts: Sequence[str], *, batch_size: int = 64, desc: str | None = None
) -> np.ndarray:
    """Mean-pooled backbone features of texts, [n, feature_dim] float32."""
    backbone.eval()
    out = np.zeros((len(texts), backbone.feature_dim), dtype=np.float32)
    for start in _batched(len(texts), batch_size, desc):
        tokens = backbone.tokenize(list(texts[start : start + batch_size]))
        out[start : start + batch_size] = backbone(**tokens).numpy()
    return out


@torch.inference_mode()
def embed_images(
    model: RetrievalModel,
    images: Sequence[Image.Image],
    *,
    batch_size: int = 32,
    desc: str | None = None,
) -> np.ndarray:
    """L2-normalised image embeddings [n, embed_dim]."""
    model.eval()
    tower = model.image_tower()
    out = np.zeros((len(images), model.heads.embed_dim), dtype=np.float32)
    for start in _batched(len(images), batch_size, desc):
        chunk = images[start : start + batch_size]
        out[start : start + len(chunk)] = tower(tower.preprocessor.batch(list(chunk))).numpy()
    return out


@torch.inference_mode()
def embed_texts(
    model: RetrievalModel, texts: Sequence[str], *, batch_size: int = 64, desc: str | None = None
) -> np.ndarray:
    """L2-normalised text embeddings [n, embed_dim]."""
    model.eval()
    tower = model.text_tower()
    out = np.zeros((len(texts), model.heads.embed_dim), dtype=np.float32)
    for start in _batched(len(texts), batch_size, desc):
        out[start : start + batch_size] = tower.encode(
            list(texts[start : start + batch_size])
        ).numpy()
    return out


@torch.inference_mode()
def fuse(model: RetrievalModel, image: np.ndarray, text: np.ndarray) -> np.ndarray:
    """Fused query embeddings [n, embed_dim] from image and text embeddings [n, embed_dim]."""
    model.eval()
    return model.fusion_module()(torch.from_numpy(image), torch.from_numpy(text)).numpy()
