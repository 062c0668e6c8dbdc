"""The torch runtime: a bundle's own modules (shared.models.encoders)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from shared.models.bundle import Manifest, load_bundle
from shared.models.encoders import register


class TorchTextEncoder:
    runtime = "torch"

    def __init__(self, bundle: Path, manifest: Manifest, *, threads: int, device: str) -> None:
        self.model, _ = load_bundle(bundle, parts=frozenset({"text"}), device=device)
        self._tower = self.model.text_tower()
        self.model_version, self.dim, self._device = manifest.bundle_id, manifest.embed_dim, device

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> np.ndarray:
        tokens = self._tower.backbone.tokenize(texts)
        ids = tokens["input_ids"].to(self._device)  # [b, tokens]
        mask = tokens["attention_mask"].to(self._device)
        return self._tower(ids, mask).float().cpu().numpy()  # [b, dim]


class TorchImageEncoder:
    runtime = "torch"

    def __init__(self, bundle: Path, manifest: Manifest, *, threads: int, device: str) -> None:
        self.model, _ = load_bundle(bundle, parts=frozenset({"image"}), device=device)
        self._tower = self.model.image_tower()
        self.model_version, self.dim, self._device = manifest.bundle_id, manifest.embed_dim, device

    @torch.inference_mode()
    def encode(self, images: list[Image.Image]) -> np.ndarray:
        pixels = self._tower.preprocessor.batch(images).to(self._device)  # [b, 3, r, r]
        return self._tower(pixels).float().cpu().numpy()  # [b, dim]


class TorchFusion:
    runtime = "torch"

    def __init__(self, bundle: Path, manifest: Manifest, *, threads: int, device: str) -> None:
        self.model, _ = load_bundle(bundle, parts=frozenset({"fusion"}), device=device)
        self._fusion = self.model.fusion_module()
        self.model_version, self.dim, self._device = manifest.bundle_id, manifest.embed_dim, device

    @torch.inference_mode()
    def fuse(self, image: np.ndarray, text: np.ndarray) -> np.ndarray:
        image_t = torch.from_numpy(np.ascontiguousarray(image, np.float32)).to(self._device)
        text_t = torch.from_numpy(np.ascontiguousarray(text, np.float32)).to(self._device)
        fused = self._fusion(image_t, text_t)
        return fused.float().cpu().numpy()  # [b, dim]


register("torch", "text", TorchTextEncoder)
register("torch", "image", TorchImageEncoder)
register("torch", "fusion", TorchFusion)
