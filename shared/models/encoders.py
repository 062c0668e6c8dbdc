"""Inference runtimes of a bundle's towers: texts, images and fusion pairs in, numpy out.

A runtime is a sibling module that registers loaders here: `encoders_torch` (the bundle's own
torch modules) and `encoders_onnx` (ONNX Runtime sessions over the graphs `vitrine models
export-onnx` writes into the bundle; docs/BENCHMARKS.md, "Encoder runtimes", has the measured
trade-off). Serving and evaluation use these interfaces, so they never care which one runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from shared.models.bundle import Manifest

RUNTIMES = ("torch", "onnxruntime")


class TextEncoder(Protocol):
    runtime: str
    model_version: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray:
        """L2-normalised embeddings [len(texts), dim], float32."""
        ...


class ImageEncoder(Protocol):
    runtime: str
    model_version: str
    dim: int

    def encode(self, images: list[Image.Image]) -> np.ndarray:
        """L2-normalised embeddings [len(images), dim] of decoded RGB images, float32."""
        ...


class Fusion(Protocol):
    runtime: str
    model_version: str
    dim: int

    def fuse(self, image: np.ndarray, text: np.ndarray) -> np.ndarray:
        """Query embeddings [n, dim] from image and text embeddings [n, dim], float32."""
        ...


# runtime -> part -> loader(bundle_dir, manifest, *, threads, device)
Loader = Callable[..., object]
_LOADERS: dict[str, dict[str, Loader]] = {}


def register(runtime: str, part: str, loader: Loader) -> None:
    _LOADERS.setdefault(runtime, {})[part] = loader


def resolve_runtime(requested: str, manifest: Manifest, *, device: str) -> str:
    """The runtime to use: `requested`, or for "auto" the one the bundle was exported for on a
    CPU (its manifest's `runtime`), else torch (a GPU runs the torch modules)."""
    if requested != "auto":
        return requested
    exported = (manifest.runtime or {}).get("kind")
    return exported if exported and device == "cpu" else "torch"


def load(bundle: Path, part: str, *, runtime: str = "auto", threads: int = 1, device: str = "cpu"):
    """The `part` ("text", "image" or "fusion") of a bundle in a runtime.

    Raises:
        BundleError: the bundle has no such part, or was not exported for that runtime.
        ValueError: an unknown runtime.
    """
    from shared.models import encoders_onnx, encoders_torch  # noqa: F401 - they register

    manifest = Manifest.read(bundle)
    chosen = resolve_runtime(runtime, manifest, device=device)
    if chosen not in _LOADERS:
        raise ValueError(f"unknown runtime {chosen!r}; choose from auto, {', '.join(RUNTIMES)}")
    return _LOADERS[chosen][part](bundle, manifest, threads=threads, device=device)
