"""Image backbone throughput by backbone and resolution, against EfficientNet-Lite0 at 224 px.

Backbone forward only (no decode), batch 16, CPU, torch's default threads; median of 3 runs.
"""

from __future__ import annotations

import torch

from bench.harness import Row, Section, p50, time_calls
from shared.models.factory import build_image_backbone

BATCH = 16
CASES = [
    ("EfficientNet-Lite0", "efficientnet_lite", 128),
    ("DINOv2 ViT-S/14", "hf_vision", 224),
    ("DINOv2 ViT-S/14", "hf_vision", 112),
]


def _images_per_second(kind: str, resolution: int) -> float:
    backbone, _ = build_image_backbone(kind, resolution=resolution)
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
    for name, kind, resolution in CASES:
        value = _images_per_second(kind, resolution)
        section.rows.append(
            Row(
                f"{name} @ {resolution} px", "EfficientNet-Lite0 @ 224 px", baseline, value, "img/s"
            )
        )
    return section
