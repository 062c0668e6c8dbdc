"""Two image backbones' features side by side: the pixel conversion for the second member, the
cached-apart features equal to the combined forward, the bundle round trip and the ONNX export,
and the training config."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from shared.data.catalog import Product
from shared.models import encoders
from shared.models.backbone import Backbone
from shared.models.bundle import load_bundle, save_bundle
from shared.models.encoders_onnx import export_bundle
from shared.models.factory import build_image_backbone
from shared.models.image_backbone_combined import AdaptedBackbone, CombinedImageBackbone
from shared.models.image_backbone_hf import HFImageBackbone
from shared.models.model import RetrievalModel
from shared.models.text_backbone_hf import HFTextBackbone
from shared.models.transforms import ImagePreprocessor
from tests.support.tiny import HEADS, write_tiny_checkpoints
from training.config import TrainConfig
from training.features import cached_image_features
from training.loop import configured_image_backbone

EFFICIENTNET_PX = 64


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    return write_tiny_checkpoints(tmp_path_factory.mktemp("hub"))


def _images(n: int, size: int = 48) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(n)
    ]


def _combined(hub, vit_px: int = 32) -> tuple[CombinedImageBackbone, ImagePreprocessor]:
    """EfficientNet-Lite0 (its own (p - 127) / 128) first, a tiny ViT (ImageNet mean/std)."""
    first = build_image_backbone("efficientnet_lite", resolution=EFFICIENTNET_PX)
    vit = HFImageBackbone.from_pretrained(str(hub / "vit"))
    combined = CombinedImageBackbone.of(first, [(vit, ImagePreprocessor(resolution=vit_px))])
    return combined.eval(), first[1]


class _Pixels(Backbone):
    """Returns its input: shows what a member is fed."""

    feature_dim = 0

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels


def test_pixels_are_converted_to_the_members_own_preprocessing():
    given = build_image_backbone("efficientnet_lite", resolution=EFFICIENTNET_PX)[1]
    # ImageNet mean/std over 0..1; resized as the bundle resizes (a member sees its resampling).
    own = ImagePreprocessor(resolution=EFFICIENTNET_PX, resize="bilinear")
    adapted = AdaptedBackbone(_Pixels(), given=given, own=own)
    images = _images(3)
    converted = adapted._convert(given.batch(images))
    torch.testing.assert_close(converted, own.batch(images), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(given.batch(images), own.batch(images), atol=0.1)
    smaller = AdaptedBackbone(
        _Pixels(), given=given, own=ImagePreprocessor(resolution=EFFICIENTNET_PX // 2)
    )
    assert smaller._convert(given.batch(images)).shape == (3, 3, 32, 32)


def test_features_cached_apart_equal_the_combined_forward(hub, tmp_path):
    combined, preprocessor = _combined(hub)
    assert combined.feature_dim == 1280 + 64
    products = []
    for i, image in enumerate(_images(5)):
        image.save(tmp_path / f"{i}.png")
        products.append(Product(id=f"p{i}", title=f"t{i}", image=tmp_path / f"{i}.png"))
    cached = cached_image_features(combined, preprocessor, products, cache_dir=tmp_path / "c")
    with torch.no_grad():
        direct = combined(preprocessor.batch([Image.open(p.image) for p in products])).numpy()
    np.testing.assert_allclose(cached, direct, atol=1e-4)
    # Each member standardised: neither drowns the other.
    assert np.allclose(cached[:, :1280].std(-1), 1, atol=0.01)
    assert np.allclose(cached[:, 1280:].std(-1), 1, atol=0.01)
    # The first member's cache is the one the same backbone uses alone.
    before = {p.name for p in (tmp_path / "c").iterdir()}
    alone = cached_image_features(
        combined.members[0], preprocessor, products, cache_dir=tmp_path / "c"
    )
    assert {p.name for p in (tmp_path / "c").iterdir()} == before and len(before) == 2
    assert alone.shape == (5, 1280)


def test_a_combined_bundle_round_trips_and_exports_to_onnx(hub, tmp_path):
    combined, preprocessor = _combined(hub, vit_px=32)
    text = HFTextBackbone.from_pretrained(str(hub / "bert"), max_length=8)
    model = RetrievalModel.build(
        heads=HEADS, image_backbone=combined, preprocessor=preprocessor, text_backbone=text
    ).eval()
    manifest = save_bundle(model, tmp_path / "bundle")
    spec = manifest.image["backbone"]
    assert spec["kind"] == "combined_image"
    assert [m["kind"] for m in spec["members"]] == ["efficientnet_lite", "adapted_image"]
    loaded, _ = load_bundle(tmp_path / "bundle")
    assert isinstance(loaded.image_tower().backbone, CombinedImageBackbone)
    images = _images(4)
    with torch.no_grad():
        pixels = preprocessor.batch(images)
        np.testing.assert_allclose(
            loaded.image_tower()(pixels).numpy(), model.image_tower()(pixels).numpy(), atol=1e-5
        )
    export_bundle(tmp_path / "bundle", sample_images=images)  # checks agreement itself
    served = [
        encoders.load(tmp_path / "bundle", "image", runtime=r).encode(images)
        for r in ("torch", "onnxruntime")
    ]
    np.testing.assert_allclose(served[0], served[1], atol=1e-3)


def test_the_training_config_combines_frozen_backbones_only(hub):
    raw = {
        "image": {
            "kind": "efficientnet_lite",
            "resolution": EFFICIENTNET_PX,
            "combine_with": [{"kind": "hf_vision", "source": str(hub / "vit"), "resolution": 32}],
        }
    }
    backbone, preprocessor = configured_image_backbone(TrainConfig.model_validate(raw))
    assert isinstance(backbone, CombinedImageBackbone)
    assert preprocessor.resolution == EFFICIENTNET_PX
    assert not any(p.requires_grad for p in backbone.parameters())
    raw["image"]["train_last_blocks"] = 1
    with pytest.raises(ValidationError, match="trains no blocks"):
        TrainConfig.model_validate(raw)
