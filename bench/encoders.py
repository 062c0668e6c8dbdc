"""Image backbone throughput by backbone and resolution, against EfficientNet-Lite0 at 224 px.

Backbone forward only (no decode), batch 16, CPU, torch's default threads; median of 3 runs.
"""

from __future__ import annotations

import torch

from bench.harness import Row, Section, p50, time_calls
from shared.models.backbone import Backbone
from shared.models.factory import build_image_backbone
from shared.models.image_backbone_combined import CombinedImageBackbone

BATCH = 16
COMBINED = "combined"  # Lite0 at 224 px beside DINOv2 ViT-S/14 at 112 px (myntra-combined.yaml)
CASES = [
    ("EfficientNet-Lite0", "efficientnet_lite", "", 128),
    ("EfficientNet-Lite1", "efficientnet_lite", "efficientnet-lite1", 240),
    ("EfficientNet-Lite2", "efficientnet_lite", "efficientnet-lite2", 260),
    ("DINOv2 ViT-S/14", "hf_vision", "", 224),
    ("DINOv2 ViT-S/14", "hf_vision", "", 112),
    ("Lite0 224 + DINOv2-S 112, combined", COMBINED, "", 224),
]


def _backbone(kind: str, source: str, resolution: int) -> Backbone:
    if kind == COMBINED:
        first = build_image_backbone("efficientnet_lite", resolution=resolution)
        second = build_image_backbone("hf_vision", resolution=112)
        return CombinedImageBackbone.of(first, [second])
    return build_image_backbone(kind, source=source, resolution=resolution)[0]


def _images_per_second(kind: str, resolution: int, source: str = "") -> float:
    backbone = _backbone(kind, source, resolution)
    backbone.eval()
    x = torch.randn(BATCH, 3, resolution, resolution)

    @torch.inference_mode()
    def step() -> None:
        backbone(x)

    return BATCH / (p50(time_calls(step, repeat=3, warmup=1)) / 1000)


def run() -> Section:
    section = Section(
        title="Image backbones (models)",
        command=".venv/bin/python -m bench encoders",
        description=(
            "Images per second through each image backbone (forward only, batch 16) against "
            "EfficientNet-Lite0 at 224 px measured in the same run; quality at each setting is "
            "in docs/QUALITY.md."
        ),
    )
    baseline = _images_per_second("efficientnet_lite", 224)
    for name, kind, source, resolution in CASES:
        value = _images_per_second(kind, resolution, source)
        label = name if kind == COMBINED else f"{name} @ {resolution} px"
        section.rows.append(Row(label, "EfficientNet-Lite0 @ 224 px", baseline, value, "img/s"))
    return section
