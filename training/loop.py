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
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from shared.models.backbone import Backbone
from shared.models.factory import build_image_backbone, build_text_backbone
from shared.models.losses import LOSSES
from shared.models.model import HeadConfig, RetrievalModel
from shared.models.text_backbone_hf import HFTextBackbone
from shared.models.transforms import ImagePreprocessor
from training.batches import epoch_batches, schedule
from training.config import TrainConfig
from training.examples import Examples

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


class TrainModule(nn.Module):
    """Wraps the model so that one forward computes the whole loss (what DDP synchronises)."""

    def __init__(self, model: RetrievalModel, inputs: TrainInputs, cfg: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.inputs = inputs
        self.loss = LOSSES[cfg.optim.loss]
        self.composed_weight = cfg.optim.composed_weight
        self.words_weight = cfg.optim.words_weight
        self.brand_drop = cfg.optim.brand_drop
        self.flip = cfg.optim.flip_augment

    def train(self, mode: bool = True) -> TrainModule:
        """Batch-norm statistics stay frozen: small CPU batches would corrupt them."""
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    def _images(self, idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        tower = self.model.image_tower()
        feats = self.inputs.image_features
        if feats is not None:
            views = (
                rng.integers(feats.shape[0], size=len(idx))
                if self.flip
                else np.zeros(len(idx), int)
            )
            x = torch.from_numpy(np.ascontiguousarray(feats[views, idx]))
            if self.inputs.image_prefix_blocks:
                x = tower.backbone.forward_suffix(
                    x, train_last_blocks=self.inputs.image_prefix_blocks
                )
            return tower.head(x)
        from shared.models.inference import open_image

        images = [open_image(Path(self.inputs.image_paths[i])) for i in idx]
        if self.flip:
            flip = Image.Transpose.FLIP_LEFT_RIGHT
            images = [im.transpose(flip) if rng.random() < 0.5 else im for im in images]
        return tower(tower.preprocessor.batch(images))

    def _texts(self, idx: np.ndarray, kind: str) -> torch.Tensor:
        """Embeddings of texts `idx` of one kind: "titles", "modifiers" or "words"."""
        tower = self.model.text_tower()
        ex, inputs = self.inputs.examples, self.inputs
        feats, source = {
            "titles": (inputs.title_features, ex.titles),
            "modifiers": (inputs.modifier_features, ex.composed.texts),
            "words": (inputs.words_features, ex.words.texts),
        }[kind]
        if feats is not None:
            return tower.head(torch.from_numpy(feats[idx]))
        return tower.encode([source[i] for i in idx])

    def _titles(self, idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """Title embeddings of products `idx`, each without its brand with probability
        `brand_drop`."""
        if self.brand_drop <= 0:
            return self._texts(idx, "titles")
        drop = rng.random(len(idx)) < self.brand_drop
        tower, inputs = self.model.text_tower(), self.inputs
        titles, plain = inputs.title_features, inputs.unbranded_features
        if titles is not None and plain is not None:
            feats = np.where(drop[:, None], plain[idx], titles[idx])
            return tower.head(torch.from_numpy(np.ascontiguousarray(feats)))
        ex = inputs.examples
        texts = [
            ex.unbranded_titles[i] if d else ex.titles[i] for i, d in zip(idx, drop, strict=True)
        ]
        return tower.encode(texts)

    def _pair_loss(
        self, queries: torch.Tensor, targets: torch.Tensor, groups: np.ndarray
    ) -> torch.Tensor:
        """The loss over the global batch: embeddings are gathered from every rank (with their
        gradients), so each query meets the negatives of all workers, as with one process.
        """
        group_tensor = torch.from_numpy(groups)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            queries = torch.cat(dist_nn.all_gather(queries))
            targets = torch.cat(dist_nn.all_gather(targets))
            gathered = [torch.empty_like(group_tensor) for _ in range(dist.get_world_size())]
            dist.all_gather(gathered, group_tensor)
            group_tensor = torch.cat(gathered)
        return self.loss(queries, targets, logit_scale=self.model.logit_scale, groups=group_tensor)

    def forward(
        self, batch: dict[str, np.ndarray], rng: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        ex = self.inputs.examples
        idx = batch["products"]
        t2i = self._pair_loss(self._titles(idx, rng), self._images(idx, rng), ex.title_groups[idx])
        out = {"t2i": t2i, "loss": t2i}
        worded = batch["words_products"]
        if self.words_weight > 0 and len(worded):
            words = self._pair_loss(
                self._texts(batch["words"], "words"),
                self._images(worded, rng),
                ex.attribute_groups[worded],
            )
            out["words"] = words
            out["loss"] = out["loss"] + self.words_weight * words
        if self.composed_weight > 0 and len(batch["refs"]):
            query = self.model.fusion_module()(
                self._images(batch["refs"], rng), self._texts(batch["mods"], "modifiers")
            )
            targets = batch["targets"]
            composed = self._pair_loss(
                query, self._images(targets, rng), ex.attribute_groups[targets]
            )
            out["composed"] = composed
            out["loss"] = out["loss"] + self.composed_weight * composed
        return out


def configured_image_backbone(cfg: TrainConfig) -> tuple[Backbone, ImagePreprocessor]:
    """The configured image backbone, frozen but for its last `train_last_blocks` blocks."""
    backbone, preprocessor = build_image_backbone(
        cfg.image.kind,
        source=cfg.image.source,
        resolution=cfg.image.resolution,
        pooling=cfg.image.pooling,
    )
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


def _param_groups(model: RetrievalModel, cfg: TrainConfig) -> list[dict[str, Any]]:
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
    optimizer = torch.optim.AdamW(_param_groups(model, cfg))
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
            shown = ("loss", "t2i", "words", "composed", "temperature")
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
