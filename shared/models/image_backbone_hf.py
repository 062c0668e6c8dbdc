"""Image backbone: any transformers vision checkpoint (ViT, DINOv2, CLIP vision) by hub id or path."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, CLIPVisionModel, PreTrainedModel

from shared.models.backbone import Backbone, child_modules

Pooling = Literal["cls", "mean", "cls_mean"]
# Models whose position embeddings interpolate only when asked (DINOv2 always does).
_INTERPOLATE_ON_REQUEST = ("vit", "clip_vision_model")


class HFImageBackbone(Backbone):
    """Pooled features of a transformers vision model.

    Args:
        model: a loaded transformers vision model returning `last_hidden_state`.
        source: the hub id or path it was loaded from (recorded in the manifest).
        pooling: "cls" (class token), "mean" (patch tokens) or "cls_mean" (both, concatenated,
            as in DINOv2's linear evaluation, https://arxiv.org/abs/2304.07193 section 7).
    """

    kind = "hf_vision"

    def __init__(
        self, model: PreTrainedModel, *, source: str, pooling: Pooling = "cls_mean"
    ) -> None:
        super().__init__()
        self.model = model
        self.source = source
        self.pooling = pooling
        hidden = model.config.hidden_size
        self.feature_dim = 2 * hidden if pooling == "cls_mean" else hidden

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, *, pooling: Pooling = "cls_mean", safetensors_only: bool = False
    ) -> HFImageBackbone:
        """Loads a checkpoint by hub id or local path (offline here: a path).

        With `safetensors_only`, a checkpoint without safetensors weights fails to load
        rather than being unpickled (bundles are always loaded this way).
        """
        model_type = AutoConfig.from_pretrained(name_or_path).model_type
        kwargs: dict[str, Any] = {"use_safetensors": True} if safetensors_only else {}
        if model_type == "clip":
            model = CLIPVisionModel.from_pretrained(name_or_path, **kwargs)
        elif model_type == "vit":
            model = AutoModel.from_pretrained(name_or_path, add_pooling_layer=False, **kwargs)
        else:
            model = AutoModel.from_pretrained(name_or_path, **kwargs)
        return cls(model, source=str(name_or_path), pooling=pooling)

    def _inner(self) -> nn.Module:
        return getattr(self.model, "vision_model", self.model)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] -> [B, F]
        kwargs = {}
        if self.model.config.model_type in _INTERPOLATE_ON_REQUEST:
            kwargs["interpolate_pos_encoding"] = True
        hidden = self.model(pixel_values=pixel_values, **kwargs).last_hidden_state  # [B, 1+N, H]
        cls_token = hidden[:, 0]
        post_norm = getattr(self._inner(), "post_layernorm", None)  # CLIP norms after the encoder
        if post_norm is not None:
            cls_token = post_norm(cls_token)
        if self.pooling == "cls":
            return cls_token
        patch_mean = hidden[:, 1:].mean(dim=1)
        return patch_mean if self.pooling == "mean" else torch.cat([cls_token, patch_mean], -1)

    def trainable_blocks(self) -> list[nn.Module]:
        inner = self._inner()
        encoder = inner.get_submodule("encoder")
        layers = child_modules(encoder, "layer" if hasattr(encoder, "layer") else "layers")
        norms = [getattr(inner, n, None) for n in ("layernorm", "post_layernorm")]
        return layers[:-1] + [nn.ModuleList([layers[-1], *[m for m in norms if m is not None]])]

    def spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "pooling": self.pooling,
            "model_type": self.model.config.model_type,
            "feature_dim": self.feature_dim,
        }

    def save(self, directory: Path) -> None:
        self.model.save_pretrained(directory)  # transformers 5 writes safetensors only

    @classmethod
    def load(cls, directory: Path, spec: dict[str, Any]) -> HFImageBackbone:
        backbone = cls.from_pretrained(
            str(directory), pooling=spec["pooling"], safetensors_only=True
        )
        backbone.source = spec["source"]
        return backbone
