"""Both towers of one CLIP-family checkpoint (CLIP, or any checkpoint transformers loads as
CLIPTextModelWithProjection / CLIPVisionModelWithProjection), by hub id or local path.

Features are the checkpoint's own projected embeddings (`text_embeds`, `image_embeds`), so the two
towers already share one space: with identity heads (`HeadConfig.identity`) a bundle searches
zero-shot, and with projection heads, or with their last blocks unfrozen, it fine-tunes with the
same losses as any other backbone. Here no CLIP weights can be downloaded (ENVIRONMENT.md); the
tests build a tiny random CLIP with `save_pretrained`. A team with hub access sets
`source: openai/clip-vit-base-patch32` in the training config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoTokenizer,
    CLIPTextModelWithProjection,
    CLIPVisionModelWithProjection,
    PreTrainedModel,
)

from shared.models.backbone import Backbone, child_modules
from shared.models.text_backbone_hf import HFTextBackbone


def _load(model_class: Any, name_or_path: str, part: str, safetensors_only: bool) -> Any:
    """One tower of a CLIP checkpoint (or a checkpoint of that tower alone). A full checkpoint's
    `projection_dim` is its own, not the tower config's default, so it is passed down."""
    kwargs: dict[str, Any] = {"use_safetensors": True} if safetensors_only else {}
    config = AutoConfig.from_pretrained(name_or_path)
    if config.model_type == "clip":
        tower = getattr(config, f"{part}_config")
        if hasattr(config, "projection_dim"):
            tower.projection_dim = config.projection_dim
        kwargs["config"] = tower
    return model_class.from_pretrained(name_or_path, **kwargs)


class CLIPTextBackbone(HFTextBackbone):
    """The text tower of a CLIP checkpoint: `text_embeds` [B, projection_dim]."""

    kind = "clip_text"

    def __init__(
        self, model: PreTrainedModel, tokenizer: Any, *, source: str, max_length: int = 64
    ) -> None:
        super().__init__(model, tokenizer, source=source, max_length=max_length)
        self.feature_dim = model.config.projection_dim

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, *, max_length: int = 64, safetensors_only: bool = False
    ) -> CLIPTextBackbone:
        model = _load(CLIPTextModelWithProjection, name_or_path, "text", safetensors_only)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        limit = model.config.max_position_embeddings
        return cls(model, tokenizer, source=str(name_or_path), max_length=min(max_length, limit))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kw) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).text_embeds

    def trainable_blocks(self) -> list[nn.Module]:
        layers = child_modules(self.model, "text_model.encoder.layers")
        last = [
            self.model.get_submodule(n) for n in ("text_model.final_layer_norm", "text_projection")
        ]
        return layers[:-1] + [nn.ModuleList([layers[-1], *last])]


class CLIPImageBackbone(Backbone):
    """The vision tower of a CLIP checkpoint: `image_embeds` [B, projection_dim]; position
    embeddings are interpolated for a resolution other than the checkpoint's."""

    kind = "clip_vision"

    def __init__(self, model: PreTrainedModel, *, source: str) -> None:
        super().__init__()
        self.model = model
        self.source = source
        self.feature_dim = model.config.projection_dim

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, *, safetensors_only: bool = False
    ) -> CLIPImageBackbone:
        model = _load(CLIPVisionModelWithProjection, name_or_path, "vision", safetensors_only)
        return cls(model, source=str(name_or_path))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] -> [B, P]
        return self.model(pixel_values=pixel_values, interpolate_pos_encoding=True).image_embeds

    def trainable_blocks(self) -> list[nn.Module]:
        layers = child_modules(self.model, "vision_model.encoder.layers")
        last = [
            self.model.get_submodule(n)
            for n in ("vision_model.post_layernorm", "visual_projection")
        ]
        return layers[:-1] + [nn.ModuleList([layers[-1], *last])]

    def spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "model_type": self.model.config.model_type,
            "feature_dim": self.feature_dim,
        }

    def save(self, directory: Path) -> None:
        self.model.save_pretrained(directory)  # transformers 5 writes safetensors only

    @classmethod
    def load(cls, directory: Path, spec: dict[str, Any]) -> CLIPImageBackbone:
        backbone = cls.from_pretrained(str(directory), safetensors_only=True)
        backbone.source = spec["source"]
        return backbone
