"""The ONNX Runtime runtime: a bundle's towers exported as ONNX graphs (shared.models.encoders).

`export_bundle` writes `onnx/{text,image,fusion}.onnx` into a bundle and records them in its
manifest under `runtime` (the onnxruntime version, each graph's file, quantization, sha256 and
the agreement with torch measured at export). Loading reads ONNX protobuf files and the
tokenizer's JSON; nothing is unpickled.

Why: on a CPU one session call runs a whole batch in C++ with the GIL released, so a replica's
event loop keeps answering while a batch computes (the torch modules hold the GIL between ops),
and the graphs are faster: docs/BENCHMARKS.md, "Encoder runtimes".
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from shared.models.bundle import MANIFEST, BundleError, Manifest, load_bundle
from shared.models.encoders import register
from shared.models.text_backbone_hf import tokenize_texts
from shared.models.transforms import ImagePreprocessor

RUNTIME = "onnxruntime"
OPSET = 18
ONNX_DIR = "onnx"
QUANTIZATIONS = ("none", "int8-dynamic")


def _session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _graph(bundle: Path, manifest: Manifest, part: str) -> tuple[Path, dict[str, Any]]:
    """The verified path of a part's graph and its manifest entry (file, quantization, ...).

    Raises:
        BundleError: not exported for onnxruntime, or the file differs from the manifest.
    """
    runtime = manifest.runtime or {}
    entry = runtime.get("parts", {}).get(part) if runtime.get("kind") == RUNTIME else None
    if entry is None:
        raise BundleError(
            f"bundle {manifest.bundle_id} has no {RUNTIME} graph for {part}: "
            f"run `vitrine models export-onnx {bundle}`, or use the torch runtime"
        )
    path = bundle / entry["file"]
    if not path.is_file() or _sha256(path) != entry["sha256"]:
        raise BundleError(f"{path} is missing or differs from the bundle's manifest")
    return path, entry


class OnnxTextEncoder:
    runtime = RUNTIME

    def __init__(self, bundle: Path, manifest: Manifest, *, threads: int, device: str) -> None:
        from transformers import AutoTokenizer

        graph, entry = _graph(bundle, manifest, "text")
        self._session = _session(graph, threads)
        self._tokenizer = AutoTokenizer.from_pretrained(str(bundle / "text_backbone"))
        backbone = manifest.part("text")["backbone"]
        self._max_length = int(backbone.get("max_length", 64))
        self._padding = backbone.get("padding", "longest")
        # A graph whose model never reads the mask (SigLIP) has no mask input.
        self._inputs = {i.name for i in self._session.get_inputs()}
        self.model_version, self.dim = manifest.bundle_id, manifest.embed_dim
        self.quantization = entry["quantization"]

    def encode(self, texts: list[str]) -> np.ndarray:
        tokens = tokenize_texts(
            self._tokenizer,
            texts,
            max_length=self._max_length,
            padding=self._padding,
            return_tensors="np",
        )
        feeds = {
            "input_ids": tokens["input_ids"].astype(np.int64),  # [b, tokens]
            "attention_mask": tokens["attention_mask"].astype(np.int64),
        }
        feeds = {name: value for name, value in feeds.items() if name in self._inputs}
        return self._session.run(None, feeds)[0]  # [b, dim]


class OnnxImageEncoder:
    runtime = RUNTIME

    def __init__(self, bundle: Path, manifest: Manifest, *, threads: int, device: str) -> None:
        graph, entry = _graph(bundle, manifest, "image")
        self._session = _session(graph, threads)
        self.preprocessor = ImagePreprocessor.from_dict(manifest.part("image")["preprocess"])
        self.model_version, self.dim = manifest.bundle_id, manifest.embed_dim
        self.quantization = entry["quantization"]

    def encode(self, images: list[Image.Image]) -> np.ndarray:
        pixels = self.preprocessor.batch(images).numpy()  # [b, 3, r, r]
        return self._session.run(None, {"pixels": pixels})[0]  # [b, dim]


class OnnxFusion:
    runtime = RUNTIME

    def __init__(self, bundle: Path, manifest: Manifest, *, threads: int, device: str) -> None:
        graph, entry = _graph(bundle, manifest, "fusion")
        self._session = _session(graph, threads)
        self.model_version, self.dim = manifest.bundle_id, manifest.embed_dim
        self.quantization = entry["quantization"]

    def fuse(self, image: np.ndarray, text: np.ndarray) -> np.ndarray:
        feeds = {"image": image.astype(np.float32), "text": text.astype(np.float32)}
        return self._session.run(None, feeds)[0]  # [b, dim]


register(RUNTIME, "text", OnnxTextEncoder)
register(RUNTIME, "image", OnnxImageEncoder)
register(RUNTIME, "fusion", OnnxFusion)


# Export ---------------------------------------------------------------------------------------


class _Fuse(nn.Module):
    def __init__(self, fusion: nn.Module) -> None:
        super().__init__()
        self.fusion = fusion

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.fusion(image, text)


def _export(module: nn.Module, args: tuple, names: list[str], axes: dict, path: Path) -> None:
    torch.onnx.export(
        module.eval(),
        args,
        str(path),
        input_names=names,
        output_names=["embeddings"],
        dynamic_axes={**axes, "embeddings": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,  # the TorchScript exporter: no onnxscript dependency, dynamic axes
    )


def _quantize(path: Path, quantization: str) -> None:
    """Int8 dynamic quantization of the graph's MatMul weights, in place: activations are
    quantized per batch at run time, so no calibration data is needed."""
    if quantization == "none":
        return
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = path.with_suffix(".fp32.onnx")
    path.rename(fp32)
    quantize_dynamic(
        str(fp32),
        str(path),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        per_channel=True,
    )
    fp32.unlink()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _agreement(reference: np.ndarray, got: np.ndarray) -> float:
    """The lowest cosine similarity between torch's and the graph's rows (both normalised)."""
    return float((reference * got).sum(axis=1).min())


def export_bundle(
    bundle: Path,
    *,
    text_quantization: str = "int8-dynamic",
    image_quantization: str = "none",
    sample_images: list[Image.Image] | None = None,
) -> dict[str, Any]:
    """Exports every part the bundle has to ONNX and records them in its manifest; returns the
    manifest's new `runtime` entry.

    Args:
        text_quantization, image_quantization: "none" or "int8-dynamic" (fusion stays fp32: it
            is a few small matrices).
        sample_images: images to check the image graph against torch (random pixels if None).

    Raises:
        BundleError: the bundle cannot be loaded, or a graph disagrees with torch (cosine < 0.9).
    """
    for q in (text_quantization, image_quantization):
        if q not in QUANTIZATIONS:
            raise ValueError(f"unknown quantization {q!r}; choose from {QUANTIZATIONS}")
    model, manifest = load_bundle(bundle)
    out = bundle / ONNX_DIR
    out.mkdir(exist_ok=True)
    parts: dict[str, dict[str, Any]] = {}
    checks: dict[str, _Check] = {}
    with torch.no_grad():
        if model.text is not None:
            checks["text"] = _export_text(model.text, out / "text.onnx", text_quantization)
            parts["text"] = {"quantization": text_quantization}
        if model.image is not None:
            images = sample_images or _random_images(4)
            checks["image"] = _export_image(
                model.image, out / "image.onnx", image_quantization, images
            )
            parts["image"] = {"quantization": image_quantization}
        if model.fusion is not None:
            checks["fusion"] = _export_fusion(model.fusion, out / "fusion.onnx", manifest.embed_dim)
            parts["fusion"] = {"quantization": "none"}
    for part, entry in parts.items():
        entry["file"] = f"{ONNX_DIR}/{part}.onnx"
        entry["sha256"] = _sha256(bundle / entry["file"])
    runtime = _runtime_entry(parts)
    _write_manifest(bundle, manifest, runtime)
    _check_agreement(bundle, checks, runtime)
    _write_manifest(bundle, manifest, runtime)
    return runtime


# (the torch output, the ONNX runtime's output given the loaded encoder) of one part's samples
_Check = tuple[Callable[[], np.ndarray], Callable[[Any], np.ndarray]]


def _export_text(tower, path: Path, quantization: str) -> _Check:
    texts = ["a navy blue shirt for men", "red shoes", "in black", "same but striped"]
    tokens = tower.backbone.tokenize(texts)
    _export(
        tower,
        (tokens["input_ids"], tokens["attention_mask"]),
        ["input_ids", "attention_mask"],
        {
            "input_ids": {0: "batch", 1: "tokens"},
            "attention_mask": {0: "batch", 1: "tokens"},
        },
        path,
    )
    _quantize(path, quantization)
    return (
        lambda: tower(tokens["input_ids"], tokens["attention_mask"]).numpy(),
        lambda encoder: encoder.encode(texts),
    )


def _export_image(tower, path: Path, quantization: str, images: list[Image.Image]) -> _Check:
    pixels = tower.preprocessor.batch(images)
    _export(tower, (pixels,), ["pixels"], {"pixels": {0: "batch"}}, path)
    _quantize(path, quantization)
    return (lambda: tower(pixels).numpy(), lambda encoder: encoder.encode(images))


def _export_fusion(fusion, path: Path, dim: int) -> _Check:
    pair = torch.nn.functional.normalize(torch.randn(2, 4, dim), dim=-1)
    _export(
        _Fuse(fusion),
        (pair[0], pair[1]),
        ["image", "text"],
        {"image": {0: "batch"}, "text": {0: "batch"}},
        path,
    )
    return (
        lambda: fusion(pair[0], pair[1]).numpy(),
        lambda runtime: runtime.fuse(pair[0].numpy(), pair[1].numpy()),
    )


def _check_agreement(bundle: Path, checks: dict[str, _Check], runtime: dict[str, Any]) -> None:
    """Runs each exported graph on its samples against torch; records the cosine in `runtime`.

    Raises:
        BundleError: a graph disagrees with torch (cosine < 0.9).
    """
    manifest = Manifest.read(bundle)
    loaders = {"text": OnnxTextEncoder, "image": OnnxImageEncoder, "fusion": OnnxFusion}
    for part, (reference, run) in checks.items():
        with torch.no_grad():
            expected = reference()
        got = run(loaders[part](bundle, manifest, threads=1, device="cpu"))
        cosine = _agreement(expected, got)
        if cosine < 0.9:
            raise BundleError(f"the exported {part} graph disagrees with torch: cosine {cosine}")
        runtime["parts"][part]["min_cosine_vs_torch"] = round(cosine, 5)


def _runtime_entry(parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    import onnxruntime

    return {
        "kind": RUNTIME,
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__.split("+")[0],
        "opset": OPSET,
        "parts": parts,
    }


def _write_manifest(bundle: Path, manifest: Manifest, runtime: dict[str, Any]) -> None:
    """Rewrites manifest.json with `runtime`, atomically (a reader sees old or new, whole)."""
    manifest.runtime = runtime
    fd, tmp = tempfile.mkstemp(dir=bundle, prefix=".manifest-")
    with os.fdopen(fd, "w") as f:
        f.write(manifest.to_json())
    os.replace(tmp, bundle / MANIFEST)


def _random_images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (160, 200, 3), dtype=np.uint8)) for _ in range(n)]


def describe(runtime: dict[str, Any] | None) -> str:
    """One line for logs and `vitrine serve status`."""
    if not runtime:
        return "torch"
    parts = ", ".join(f"{p} {e['quantization']}" for p, e in runtime.get("parts", {}).items())
    return f"{runtime['kind']} {runtime.get('onnxruntime', '')} ({parts})"
