"""Inference runtimes: the torch modules and the ONNX Runtime graphs of one bundle agree, the
manifest records what was exported, and loading the graphs never unpickles."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from PIL import Image

from shared.models import encoders
from shared.models.bundle import BundleError, Manifest
from shared.models.encoders_onnx import describe, export_bundle
from tests.support.tiny import write_tiny_bundle

TEXTS = ["blue shirt", "red dress in black", "shirt"]


def _images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(3)
    return [Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    bundle = write_tiny_bundle(tmp_path_factory.mktemp("onnx"))
    runtime = export_bundle(bundle, text_quantization="none", image_quantization="none")
    return bundle, runtime


def test_export_records_the_runtime_in_the_manifest(exported):
    bundle, runtime = exported
    manifest = Manifest.read(bundle)
    assert manifest.runtime == runtime
    assert runtime["kind"] == "onnxruntime" and set(runtime["parts"]) == {"text", "image", "fusion"}
    for entry in runtime["parts"].values():
        assert (bundle / entry["file"]).is_file() and len(entry["sha256"]) == 64
        assert entry["min_cosine_vs_torch"] > 0.999
    assert describe(runtime).startswith("onnxruntime ")


def test_onnx_and_torch_give_the_same_embeddings(exported):
    bundle, _ = exported
    images = _images(3)
    torch_text = encoders.load(bundle, "text", runtime="torch")
    onnx_text = encoders.load(bundle, "text", runtime="onnxruntime")
    assert (torch_text.runtime, onnx_text.runtime) == ("torch", "onnxruntime")
    np.testing.assert_allclose(onnx_text.encode(TEXTS), torch_text.encode(TEXTS), atol=1e-4)
    image_t = encoders.load(bundle, "image", runtime="torch").encode(images)
    image_o = encoders.load(bundle, "image", runtime="onnxruntime").encode(images)
    np.testing.assert_allclose(image_o, image_t, atol=1e-4)
    fused_t = encoders.load(bundle, "fusion", runtime="torch").fuse(image_t, image_t[::-1])
    fused_o = encoders.load(bundle, "fusion", runtime="onnxruntime").fuse(image_t, image_t[::-1])
    np.testing.assert_allclose(fused_o, fused_t, atol=1e-4)
    # A batch of one and a batch of many (dynamic axes), rows L2-normalised.
    assert onnx_text.encode(["one"]).shape == (1, onnx_text.dim)
    np.testing.assert_allclose(np.linalg.norm(image_o, axis=1), 1.0, atol=1e-5)


def test_auto_picks_the_exported_runtime_on_cpu_only(exported, tmp_path):
    bundle, _ = exported
    manifest = Manifest.read(bundle)
    assert encoders.resolve_runtime("auto", manifest, device="cpu") == "onnxruntime"
    assert encoders.resolve_runtime("auto", manifest, device="cuda") == "torch"
    assert encoders.resolve_runtime("torch", manifest, device="cpu") == "torch"
    plain = write_tiny_bundle(tmp_path)
    assert encoders.load(plain, "text").runtime == "torch"
    with pytest.raises(BundleError, match="export-onnx"):
        encoders.load(plain, "text", runtime="onnxruntime")
    with pytest.raises(ValueError, match="unknown runtime"):
        encoders.load(plain, "text", runtime="tensorflow")


def test_int8_text_graph_stays_close_to_torch(tmp_path):
    bundle = write_tiny_bundle(tmp_path)
    runtime = export_bundle(bundle, text_quantization="int8-dynamic")
    assert runtime["parts"]["text"]["quantization"] == "int8-dynamic"
    assert runtime["parts"]["image"]["quantization"] == "none"
    quantized = encoders.load(bundle, "text", runtime="onnxruntime").encode(TEXTS)
    reference = encoders.load(bundle, "text", runtime="torch").encode(TEXTS)
    assert (quantized * reference).sum(axis=1).min() > 0.9


def test_a_changed_graph_file_is_refused(exported, tmp_path):
    import shutil

    bundle = tmp_path / "copy"
    shutil.copytree(exported[0], bundle)
    with (bundle / "onnx" / "fusion.onnx").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="differs from the bundle's manifest"):
        encoders.load(bundle, "fusion", runtime="onnxruntime")


def test_loading_the_graphs_never_unpickles(exported, monkeypatch):
    import torch

    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    bundle, _ = exported
    for part in ("text", "image", "fusion"):
        encoders.load(bundle, part, runtime="onnxruntime")
    files = [p.name for p in bundle.rglob("*") if p.is_file()]
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]
    json.loads((bundle / "manifest.json").read_text())  # still plain JSON
