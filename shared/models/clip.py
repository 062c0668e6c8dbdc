"""Both towers of one CLIP-family checkpoint (CLIP or SigLIP), by hub id or local path.

Features are the checkpoint's own embeddings (CLIP: the projected `text_embeds`/`image_embeds`;
SigLIP: the towers' pooled outputs, after their heads), so the two towers already share one space:
with identity heads (`HeadConfig.identity`) a bundle searches zero-shot, and with projection heads,
or with their last blocks unfrozen, it fine-tunes with the same losses as any other backbone.
SigLIP reads a text as it was trained to: padded to its full length, without an attention mask,
the last token pooled. Here no CLIP or SigLIP weights can be downloaded (ENVIRONMENT.md); the
tests build tiny random ones with `save_pretrained`. A team with hub access sets
`source: openai/clip-vit-base-patch32` (or `google/siglip-base-patch16-224`) in the training
config.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    SiglipTextModel,
    SiglipVisionModel,
)

from shared.models.backbone import Backbone, child_modules
from shared.models.text_backbone_hf import HFTextBackbone


@dataclass(frozen=True)
class _Tower:
    """How one tower of a family is loaded and read."""

    model_class: Any
    output: str  # the field of the model's output that holds the embeddings
    layers: str  # the encoder layers, input to output
    last: tuple[str, ...]  # what follows the last layer: norm and projection (trained with it)


@dataclass(frozen=True)
class _Family:
    text: _Tower
    vision: _Tower
    pad_to_full_length: bool  # SigLIP: texts padded to max_position_embeddings, no mask


FAMILIES = {
    "clip": _Family(
        text=_Tower(
            CLIPTextModelWithProjection,
            "text_embeds",
            "text_model.encoder.layers",
            ("text_model.final_layer_norm", "text_projection"),
        ),
        vision=_Tower(
            CLIPVisionModelWithProjection,
            "image_embeds",
            "vision_model.encoder.layers",
            ("vision_model.post_layernorm", "visual_projection"),
        ),
        pad_to_full_length=False,
    ),
    "siglip": _Family(
        text=_Tower(
            SiglipTextModel, "pooler_output", "encoder.layers", ("final_layer_norm", "head")
        ),
        vision=_Tower(
            SiglipVisionModel, "pooler_output", "encoder.layers", ("post_layernorm", "head")
        ),
        pad_to_full_length=True,
    ),
}


def _family(config: Any, name_or_path: str) -> str:
    """The family, "clip" or "siglip", of a checkpoint's config (a full checkpoint's, or one
    tower's)."""
    model_type = config.model_type
    family = model_type.split("_")[0]  # clip, clip_text_model, siglip_vision_model, ...
    if family not in FAMILIES:
        raise ValueError(
            f"{name_or_path} is a {model_type!r} checkpoint; the CLIP-family kinds take "
            f"{' or '.join(FAMILIES)} checkpoints"
        )
    return family


def _load(name_or_path: str, part: str, safetensors_only: bool) -> tuple[Any, str]:
    """One tower of a CLIP-family checkpoint (or a checkpoint of that tower alone), and the
    family. A full CLIP checkpoint's `projection_dim` is its own, not the tower config's
    default, so it is passed down."""
    kwargs: dict[str, Any] = {"use_safetensors": True} if safetensors_only else {}
    config = AutoConfig.from_pretrained(name_or_path)
    family = _family(config, name_or_path)
    if config.model_type in FAMILIES:  # a full checkpoint: this tower's part of it
        tower = getattr(config, f"{part}_config")
        if hasattr(config, "projection_dim"):
            tower.projection_dim = config.projection_dim
        kwargs["config"] = tower
    model_class = getattr(FAMILIES[family], "text" if part == "text" else "vision").model_class
    return model_class.from_pretrained(name_or_path, **kwargs), family


def _feature_dim(config: Any) -> int:
    """CLIP: projection_dim; SigLIP text: projection_size; SigLIP vision: hidden_size."""
    for name in ("projection_dim", "projection_size", "hidden_size"):
        if getattr(config, name, None):
            return int(getattr(config, name))
    raise ValueError(f"no embedding size in {type(config).__name__}")


def _blocks(model: nn.Module, tower: _Tower) -> list[nn.Module]:
    """The tower's layers, the last one together with the norm and projection after it."""
    layers = child_modules(model, tower.layers)
    last = [model.get_submodule(n) for n in tower.last]
    return layers[:-1] + [nn.ModuleList([layers[-1], *last])]


class CLIPTextBackbone(HFTextBackbone):
    """The text tower of a CLIP-family checkpoint: its embeddings [B, feature_dim]."""

    kind = "clip_text"

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: Any,
        *,
        source: str,
        max_length: int = 64,
        family: str = "clip",
    ) -> None:
        full = FAMILIES[family].pad_to_full_length
        super().__init__(
            model,
            tokenizer,
            source=source,
            max_length=model.config.max_position_embeddings if full else max_length,
            padding="max_length" if full else "longest",
        )
        self.family = family
        self.feature_dim = _feature_dim(model.config)

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, *, max_length: int = 64, safetensors_only: bool = False
    ) -> CLIPTextBackbone:
        model, family = _load(name_or_path, "text", safetensors_only)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        limit = model.config.max_position_embeddings
        return cls(
            model,
            tokenizer,
            source=str(name_or_path),
            max_length=min(max_length, limit),
            family=family,
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kw) -> torch.Tensor:
        tower = FAMILIES[self.family].text
        if FAMILIES[self.family].pad_to_full_length:  # read as trained: no mask
            return getattr(self.model(input_ids=input_ids), tower.output)
        return getattr(self.model(input_ids=input_ids, attention_mask=attention_mask), tower.output)

    def trainable_blocks(self) -> list[nn.Module]:
        return _blocks(self.model, FAMILIES[self.family].text)

    def spec(self) -> dict[str, Any]:
        return super().spec() | {"family": self.family}


class CLIPImageBackbone(Backbone):
    """The vision tower of a CLIP-family checkpoint: its embeddings [B, feature_dim]; position
    embeddings are interpolated for a resolution other than the checkpoint's."""

    kind = "clip_vision"

    def __init__(self, model: PreTrainedModel, *, source: str, family: str = "clip") -> None:
        super().__init__()
        self.model = model
        self.source = source
        self.family = family
        self.feature_dim = _feature_dim(model.config)

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, *, safetensors_only: bool = False
    ) -> CLIPImageBackbone:
        model, family = _load(name_or_path, "vision", safetensors_only)
        return cls(model, source=str(name_or_path), family=family)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] -> [B, P]
        out = self.model(pixel_values=pixel_values, interpolate_pos_encoding=True)
        return getattr(out, FAMILIES[self.family].vision.output)

    def trainable_blocks(self) -> list[nn.Module]:
        return _blocks(self.model, FAMILIES[self.family].vision)

    def spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "family": self.family,
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
