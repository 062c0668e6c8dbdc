"""The model bundle: a versioned directory that training writes and serving and ingestion load.

Layout:
    manifest.json          format version, bundle id, backbones, resolution, embedding dim,
                           preprocessing, training data and parameters, metrics, and the
                           runtime the towers were exported for (if any)
    heads.safetensors      projection heads, fusion module, temperature
    image_backbone/        the image backbone's weights (safetensors) and config
    text_backbone/         the text backbone's weights (safetensors), config and tokenizer
    onnx/                  optional: the towers as ONNX graphs (`vitrine models export-onnx`)

Loading reads JSON, safetensors and ONNX protobuf only; it never unpickles.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from shared.models.backbone import Backbone, backbone_class
from shared.models.model import HeadConfig, RetrievalModel
from shared.models.text_backbone_hf import HFTextBackbone
from shared.models.transforms import ImagePreprocessor

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
HEADS = "heads.safetensors"
PARTS = frozenset({"image", "text", "fusion"})


class BundleError(ValueError):
    """A bundle directory is missing, incomplete or of an unknown format."""


@dataclass
class Manifest:
    bundle_id: str
    embed_dim: int
    heads: dict[str, Any]
    image: dict[str, Any] | None
    text: dict[str, Any] | None
    fusion: dict[str, Any] | None
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    # Inference graphs exported for another runtime (shared.models.encoders_onnx); None: torch.
    runtime: dict[str, Any] | None = None
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True)

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST
        if not path.is_file():
            raise BundleError(f"{directory} is not a model bundle: {MANIFEST} is missing")
        data = json.loads(path.read_text())
        if data.get("format_version") != FORMAT_VERSION:
            raise BundleError(
                f"{directory}: bundle format {data.get('format_version')!r}, this code reads {FORMAT_VERSION}"
            )
        return cls(**data)

    def part(self, name: str) -> dict[str, Any]:
        """The `image`, `text` or `fusion` section. Raises BundleError when the bundle lacks it."""
        section = getattr(self, name)
        if section is None:
            raise BundleError(f"bundle {self.bundle_id} has no {name} part")
        return section


def _bundle_id(heads: dict[str, torch.Tensor], manifest_core: str) -> str:
    digest = hashlib.sha256(manifest_core.encode())
    for name in sorted(heads):
        digest.update(name.encode())
        digest.update(heads[name].detach().cpu().numpy().tobytes())
    return f"vitrine-{digest.hexdigest()[:12]}"


def save_bundle(
    model: RetrievalModel,
    directory: Path,
    *,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Manifest:
    """Writes `model` as a bundle into `directory` (replaced if it exists) and returns its manifest.

    The bundle id is a hash of the head weights and the manifest's model description, so the
    same model always gets the same id and any change of weights a new one.
    """
    image = text = fusion = None
    if model.image is not None:
        image = {
            "backbone": model.image.backbone.spec(),
            "preprocess": model.image.preprocessor.to_dict(),
        }
    if model.text is not None:
        text = {"backbone": model.text.backbone.spec()}
    if model.fusion is not None:
        fusion = {"kind": "additive_attention", "hidden_dim": model.heads.fusion_hidden_dim}
    heads = {k: v.contiguous() for k, v in model.head_state_dict().items()}
    core = json.dumps([model.heads.to_dict(), image, text, fusion], sort_keys=True)
    manifest = Manifest(
        bundle_id=_bundle_id(heads, core),
        embed_dim=model.heads.embed_dim,
        heads=model.heads.to_dict(),
        image=image,
        text=text,
        fusion=fusion,
        training=training or {},
        metrics=metrics or {},
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    tmp = directory.with_name(directory.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(heads, str(tmp / HEADS))
    if model.image is not None:
        model.image.backbone.save(tmp / "image_backbone")
    if model.text is not None:
        model.text.backbone.save(tmp / "text_backbone")
    (tmp / MANIFEST).write_text(manifest.to_json())
    # Readers never see a half-written bundle: the directory appears complete or not at all.
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)
    return manifest


def load_bundle(
    directory: Path, *, parts: frozenset[str] = PARTS, device: str = "cpu"
) -> tuple[RetrievalModel, Manifest]:
    """Loads the requested parts of a bundle, in eval mode.

    Args:
        directory: the bundle directory.
        parts: any of "image", "text", "fusion"; the others are not loaded.
        device: torch device.

    Raises:
        BundleError: the bundle lacks a requested part or is not a bundle.
    """
    directory = Path(directory)
    manifest = Manifest.read(directory)
    unknown = parts - PARTS
    if unknown:
        raise ValueError(f"unknown bundle parts {sorted(unknown)}")
    for part in parts:
        manifest.part(part)  # raises BundleError before any weights load
    image_backbone: Backbone | None = None
    preprocessor: ImagePreprocessor | None = None
    text_backbone: HFTextBackbone | None = None
    if "image" in parts:
        spec = manifest.part("image")["backbone"]
        image_backbone = backbone_class(spec["kind"]).load(directory / "image_backbone", spec)
        preprocessor = ImagePreprocessor.from_dict(manifest.part("image")["preprocess"])
    if "text" in parts:
        spec = manifest.part("text")["backbone"]
        loaded = backbone_class(spec["kind"]).load(directory / "text_backbone", spec)
        if not isinstance(loaded, HFTextBackbone):
            raise BundleError(
                f"bundle {manifest.bundle_id}: {spec['kind']!r} is not a text backbone"
            )
        text_backbone = loaded
    model = RetrievalModel.build(
        heads=HeadConfig(**manifest.heads),
        image_backbone=image_backbone,
        preprocessor=preprocessor,
        text_backbone=text_backbone,
        with_fusion="fusion" in parts,
    )
    heads = load_file(str(directory / HEADS))
    wanted = model.head_state_dict().keys()
    missing = [k for k in wanted if k not in heads]
    if missing:
        raise BundleError(f"bundle {manifest.bundle_id}: {HEADS} lacks {missing[:5]}")
    model.load_state_dict({k: heads[k] for k in wanted}, strict=False)
    return model.to(device).eval(), manifest
