"""The per-worker training loop run by Ray Train's TorchTrainer.

Frozen backbones are replaced by their cached features (`FeatureInput`); a backbone with
trainable blocks runs on raw inputs in the loop. Each step optimises the text->image loss,
weighted by `words_weight` the shopper-words loss (training phrasings of the attributes ->
image), and weighted by `composed_weight` the composed-query loss through the fusion module.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray.train
import ray.train.torch
import torch
from safetensors.torch import save_file
from torch import nn

from shared.models.backbone import Backbone
from shared.models.factory import build_image_backbone, build_text_backbone
from shared.models.image_backbone_combined import CombinedImageBackbone
from shared.models.model import HeadConfig, RetrievalModel
from shared.models.text_backbone_hf import HFTextBackbone
from shared.models.transforms import ImagePreprocessor
from training.batches import epoch_batches, schedule
from training.config import TrainConfig
from training.examples import Examples
from training.objective import TrainModule

log = logging.getLogger("vitrine.train")
CHECKPOINT_FILE = "model.safetensors"


class FeatureInput(Backbone):
    """Stands in for a frozen backbone whose features were computed beforehand: identity."""

    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        self.feature_dim = feature_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features

    def trainable_blocks(self) -> list[nn.Module]:
        return []


@dataclass
class TrainInputs:
    """What every worker receives: examples plus cached features or raw inputs.

    image_features: [views, N, F] pooled features when the image backbone is frozen;
        [views, N, ...] outputs of its frozen prefix when `image_prefix_blocks` > 0 (the loop
        runs only the trainable last blocks); None when the backbone cannot split (then
        `image_paths` are loaded and preprocessed in the loop).
    title_features / modifier_features / words_features: [N, F] / [M, F] / [W, F] when the
        text backbone is frozen.
    """

    examples: Examples
    image_features: np.ndarray | None
    title_features: np.ndarray | None
    modifier_features: np.ndarray | None
    image_paths: list[str]
    image_feature_dim: int
    text_feature_dim: int
    image_prefix_blocks: int = 0
    words_features: np.ndarray | None = None
    unbranded_features: np.ndarray | None = None  # [N, F] titles without their brand


def configured_image_backbone(cfg: TrainConfig) -> tuple[Backbone, ImagePreprocessor]:
    """The configured image backbone, frozen but for its last `train_last_blocks` blocks."""
    backbone, preprocessor = build_image_backbone(
        cfg.image.kind,
        source=cfg.image.source,
        resolution=cfg.image.resolution,
        pooling=cfg.image.pooling,
    )
    if cfg.image.combine_with:
        others = [
            build_image_backbone(
                m.kind, source=m.source, resolution=m.resolution, pooling=m.pooling
            )
            for m in cfg.image.combine_with
        ]
        backbone = CombinedImageBackbone.of((backbone, preprocessor), others)
    backbone.freeze(train_last_blocks=cfg.image.train_last_blocks)
    return backbone, preprocessor


def configured_text_backbone(cfg: TrainConfig) -> HFTextBackbone:
    """The configured text backbone, frozen but for its last `train_last_blocks` blocks."""
    source = cfg.text.source or (cfg.image.source if cfg.text.kind == "clip" else "")
    backbone = build_text_backbone(source, max_length=cfg.text.max_length, kind=cfg.text.kind)
    backbone.freeze(train_last_blocks=cfg.text.train_last_blocks)
    return backbone


def build_worker_model(cfg: TrainConfig, inputs: TrainInputs) -> RetrievalModel:
    """The model to train: real backbones only where blocks train, cached features elsewhere."""
    heads = HeadConfig(**cfg.heads)
    if cfg.image.train_last_blocks > 0:
        image_bb, pre = configured_image_backbone(cfg)
    else:
        image_bb, pre = FeatureInput(inputs.image_feature_dim), ImagePreprocessor()
    text_bb = configured_text_backbone(cfg) if cfg.text.train_last_blocks > 0 else None
    model = RetrievalModel.build(
        heads=heads, image_backbone=image_bb, preprocessor=pre, text_backbone=text_bb
    )
    if text_bb is None:
        from shared.models.model import TextTower

        model.text = TextTower(FeatureInput(inputs.text_feature_dim), heads)
    return model


def _param_groups(
    model: RetrievalModel, cfg: TrainConfig, *, extra: nn.Module | None = None
) -> list[dict[str, Any]]:
    """AdamW groups: heads and fusion with weight decay, norms/biases/temperature without,
    trainable backbone blocks at their own lr, and the objective's own training-only
    classifiers (`extra.attribute_heads`) with decay."""
    decay, no_decay, backbone = [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if ".backbone." in f".{name}":
            backbone.append(param)
        elif param.ndim < 2 or name == "logit_scale":
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [
        {"params": decay, "lr": cfg.optim.lr, "weight_decay": cfg.optim.weight_decay},
        {"params": no_decay, "lr": cfg.optim.lr, "weight_decay": 0.0},
    ]
    own = extra.get_submodule("attribute_heads") if extra is not None else None
    if own is not None and (params := list(own.parameters())):
        groups.append(
            {"params": params, "lr": cfg.optim.lr, "weight_decay": cfg.optim.weight_decay}
        )
    if backbone:
        groups.append(
            {
                "params": backbone,
                "lr": cfg.optim.backbone_lr,
                "weight_decay": cfg.optim.weight_decay,
            }
        )
    return groups


def _save_checkpoint(model: RetrievalModel, directory: Path) -> None:
    """Saves the heads, fusion and temperature, plus the backbone parameters that trained."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    state = {
        k: v.detach().contiguous()
        for k, v in model.state_dict().items()
        if ".backbone." not in f".{k}" or k in trainable
    }
    save_file(state, str(directory / CHECKPOINT_FILE))


def run_training(
    cfg: TrainConfig,
    inputs: TrainInputs,
    *,
    rank: int = 0,
    world: int = 1,
    on_epoch: Callable[[RetrievalModel, dict[str, float]], None] | None = None,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
) -> RetrievalModel:
    """Trains and returns the worker's model. Ray-free: the Ray entry point below wraps it.

    Args:
        on_epoch: called after each epoch with the model and that epoch's mean losses.
        wrap: wraps the loss module for data parallelism (DDP under Ray Train).
    """
    torch.manual_seed(cfg.optim.seed)
    model = build_worker_model(cfg, inputs)
    module: nn.Module = TrainModule(model, inputs, cfg)
    optimizer = torch.optim.AdamW(_param_groups(model, cfg, extra=module))
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    if wrap is not None:
        module = wrap(module)
    steps_per_epoch = len(epoch_batches(inputs, cfg, epoch=0, rank=rank, world=world))
    total = steps_per_epoch * cfg.optim.epochs
    warmup = max(1, int(cfg.optim.warmup_fraction * total))
    step = 0
    for epoch in range(cfg.optim.epochs):
        started = time.perf_counter()
        module.train()
        sums: dict[str, float] = {}
        rng = np.random.default_rng([cfg.optim.seed, epoch, rank])
        batches = epoch_batches(inputs, cfg, epoch=epoch, rank=rank, world=world)
        for batch in batches:
            for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
                group["lr"] = base * schedule(step, total, warmup)
            losses = module(batch, rng)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            optimizer.step()
            step += 1
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
        metrics = {k: v / max(1, len(batches)) for k, v in sums.items()}
        metrics.update(
            epoch=epoch + 1, temperature=model.temperature(), seconds=time.perf_counter() - started
        )
        if rank == 0:
            shown = ("loss", "t2i", "words", "composed", "attributes", "temperature")
            log.info(
                "epoch %d/%d  %s  (%.1fs)",
                epoch + 1,
                cfg.optim.epochs,
                "  ".join(f"{k}={metrics[k]:.4f}" for k in shown if k in metrics),
                metrics["seconds"],
            )
        if on_epoch is not None:
            on_epoch(model, metrics)
    return model.eval()


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point. `config`: {"train_config": dict, "inputs": TrainInputs}.

    Rank 0 reports a checkpoint (heads, fusion, temperature, trained backbone blocks) after
    every epoch through `ray.train.report`; the other ranks report their metrics.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = TrainConfig.model_validate(config["train_config"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()

    def report(model: RetrievalModel, metrics: dict[str, float]) -> None:
        if rank != 0:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as tmp:
            _save_checkpoint(model, Path(tmp))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    def ddp(module: nn.Module) -> nn.Module:
        # A batch may hold no composed queries (the fusion then gets no gradient).
        kwargs = {"find_unused_parameters": True}
        return ray.train.torch.prepare_model(
            module, move_to_device=False, parallel_strategy_kwargs=kwargs
        )

    run_training(
        cfg,
        config["inputs"],
        rank=rank,
        world=world,
        on_epoch=report,
        wrap=ddp if world > 1 else None,
    )
