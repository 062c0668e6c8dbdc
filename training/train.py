"""`vitrine train`: prepare data and cached features, fit with Ray Train, export and evaluate a bundle."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from shared.models.backbone import Backbone
from shared.models.bundle import Manifest, save_bundle
from shared.models.model import HeadConfig, RetrievalModel
from training.config import TrainConfig, TrainingSettings
from training.data import PreparedData, prepare_data
from training.evaluate import evaluate_catalog, evaluate_fashioniq
from training.examples import build_examples
from training.features import cached_image_features, cached_text_features
from training.loop import (
    CHECKPOINT_FILE,
    TrainInputs,
    configured_image_backbone,
    configured_text_backbone,
    train_loop_per_worker,
)

log = logging.getLogger("vitrine.train")


@dataclass
class TrainResult:
    manifest: Manifest
    bundle: Path
    metrics: dict[str, Any]
    seconds: float


def _inputs(
    cfg: TrainConfig, data: PreparedData, model: RetrievalModel, cache_dir: Path
) -> TrainInputs:
    """Examples plus cached features for every frozen backbone."""
    examples = build_examples(
        data.train,
        all_modifier_phrasings=cfg.optim.modifier_phrasings == "all",
        composed_kinds=cfg.optim.composed_kinds,
    )
    image, text = model.image_tower(), model.text_tower()
    image_feats = title_feats = modifier_feats = words_feats = unbranded_feats = None
    blocks = cfg.image.train_last_blocks
    prefix = blocks if blocks and _can_split(image.backbone, blocks) else 0
    if blocks == 0 or prefix:
        views = [False, True] if cfg.optim.flip_augment else [False]
        image_feats = np.stack(
            [
                cached_image_features(
                    image.backbone,
                    image.preprocessor,
                    data.train,
                    cache_dir=cache_dir,
                    flip=f,
                    prefix_blocks=prefix,
                    label="train",
                )
                for f in views
            ]
        )  # [views, N, F] or [views, N, C, h, w]
    if cfg.text.train_last_blocks == 0:
        title_feats = cached_text_features(
            text.backbone, examples.titles, cache_dir=cache_dir, label="titles"
        )
        modifier_feats = cached_text_features(
            text.backbone, examples.composed.texts, cache_dir=cache_dir, label="modifiers"
        )
        if cfg.optim.brand_drop > 0:
            unbranded_feats = cached_text_features(
                text.backbone, examples.unbranded_titles, cache_dir=cache_dir, label="unbranded"
            )
        if examples.words.texts:
            words_feats = cached_text_features(
                text.backbone, examples.words.texts, cache_dir=cache_dir, label="shopper words"
            )
    return TrainInputs(
        examples=examples,
        image_features=image_feats,
        title_features=title_feats,
        modifier_features=modifier_feats,
        image_paths=[str(p.image) for p in data.train],
        image_feature_dim=image.backbone.feature_dim,
        text_feature_dim=text.backbone.feature_dim,
        image_prefix_blocks=prefix,
        words_features=words_feats,
        unbranded_features=unbranded_feats,
    )


@torch.no_grad()
def _can_split(backbone: Backbone, blocks: int) -> bool:
    """Whether the backbone can run its last `blocks` blocks on cached prefix outputs."""
    try:
        backbone.forward_suffix(
            backbone.forward_prefix(torch.zeros(1, 3, 32, 32), train_last_blocks=blocks),
            train_last_blocks=blocks,
        )
    except NotImplementedError:
        return False
    return True


def _ensure_ray(num_cpus: int | None) -> None:
    import ray

    if not ray.is_initialized():
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        # The cluster RAY_ADDRESS names (a RayJob sets it), else a Ray of this process's own:
        # never a cluster merely found on the machine (a `make run` head, or a stale address file).
        address = os.environ.get("RAY_ADDRESS") or "local"
        if address == "local":
            ray.init(address, num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)
        else:
            ray.init(address, log_to_driver=True)


def fit(cfg: TrainConfig, inputs: TrainInputs, *, storage_path: Path) -> dict[str, torch.Tensor]:
    """Runs the TorchTrainer and returns the final checkpoint's weights."""
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    _ensure_ray(None)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"train_config": cfg.model_dump(mode="json"), "inputs": inputs},
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu),
        run_config=RunConfig(
            name=f"{cfg.name}-{int(time.time())}",
            storage_path=str(storage_path.resolve()),
            checkpoint_config=CheckpointConfig(num_to_keep=2),  # one per epoch otherwise
        ),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training produced no checkpoint: {result.error}")
    with result.checkpoint.as_directory() as directory:
        return load_file(str(Path(directory) / CHECKPOINT_FILE))


def build_model(cfg: TrainConfig) -> RetrievalModel:
    """The full model with real backbones and freshly initialised heads (seeded)."""
    torch.manual_seed(cfg.optim.seed)
    image_bb, pre = configured_image_backbone(cfg)
    text_bb = configured_text_backbone(cfg)
    return RetrievalModel.build(
        heads=HeadConfig(**cfg.heads),
        image_backbone=image_bb,
        preprocessor=pre,
        text_backbone=text_bb,
    ).eval()


def evaluate(
    model: RetrievalModel, data: PreparedData, cfg: TrainConfig, cache_dir: Path
) -> dict[str, Any]:
    metrics = evaluate_catalog(
        model, data.test, cache_dir=cache_dir, max_queries=cfg.eval_max_queries
    )
    if cfg.data.kind in ("synthetic", "fashioniq") and data.fashioniq_root is not None:
        fiq = evaluate_fashioniq(
            model,
            data.fashioniq_root,
            split="val" if cfg.data.kind == "fashioniq" else "test",
            cache_dir=cache_dir,
        )
        if fiq:
            metrics["fashioniq"] = fiq
    return metrics


def _fit_heads(
    cfg: TrainConfig, data: PreparedData, model: RetrievalModel, settings: TrainingSettings
) -> float:
    """Fits `model`'s trainable parts on `data.train` (Ray Train) and loads the result; returns
    the fit's seconds."""
    inputs = _inputs(cfg, data, model, settings.cache_dir)
    started = time.perf_counter()
    state = fit(cfg, inputs, storage_path=settings.storage_path)
    seconds = time.perf_counter() - started
    missing, _ = model.load_state_dict(state, strict=False)
    missing_heads = [k for k in missing if ".backbone." not in f".{k}"]
    if missing_heads:
        raise RuntimeError(f"checkpoint lacks {missing_heads[:5]}")
    model.eval()
    return seconds


def train(cfg: TrainConfig, settings: TrainingSettings) -> TrainResult:
    """Trains on the training split and evaluates on the held-out split; then, when the config
    refits (`TrainConfig.refits`, the default for catalog data), fits a fresh model with the same
    settings on every product and exports that one. The manifest says which was exported
    (`training.fit_on`) and always carries the held-out report of the split fit."""
    started = time.perf_counter()
    cache_dir = settings.cache_dir
    data = prepare_data(cfg.data, workdir=cache_dir / "data")
    log.info("data: %s", data.description)
    model = build_model(cfg)
    untrained = evaluate(model, data, cfg, cache_dir)
    fit_seconds = _fit_heads(cfg, data, model, settings)
    metrics = evaluate(model, data, cfg, cache_dir)
    training: dict[str, Any] = {
        "config": cfg.model_dump(mode="json"),
        "data": data.description,
        "fit_on": "train",
        "fit_seconds": round(fit_seconds, 1),
        "machine": f"{os.cpu_count()} CPUs",
    }
    if cfg.refits():
        log.info(
            "held-out report done; fitting the served model on all %d products",
            len(data.train) + len(data.test),
        )
        everything = PreparedData(data.train + data.test, [], data.description)
        model = build_model(cfg)  # the same seed and initial weights as the split fit
        refit_seconds = _fit_heads(cfg, everything, model, settings)
        training |= {
            "fit_on": "all",
            "held_out_fit": {"fit_on": "train", "fit_seconds": training["fit_seconds"]},
            "fit_seconds": round(refit_seconds, 1),
        }
    training["total_seconds"] = round(time.perf_counter() - started, 1)
    manifest = save_bundle(
        model,
        cfg.output,
        training=training,
        metrics={"held_out": metrics, "untrained_heads": untrained},
    )
    log.info("bundle %s written to %s", manifest.bundle_id, cfg.output)
    if cfg.export.runtime == "onnxruntime":
        from shared.models.encoders_onnx import describe, export_bundle

        runtime = export_bundle(
            cfg.output,
            text_quantization=cfg.export.text_quantization,
            image_quantization=cfg.export.image_quantization,
        )
        manifest = Manifest.read(cfg.output)
        log.info("exported for %s", describe(runtime))
    return TrainResult(manifest, cfg.output, metrics, time.perf_counter() - started)
