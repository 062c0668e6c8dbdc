"""The training objective: one module whose forward computes every loss of a step (what DDP
synchronises): text->image, shopper words, composed queries, and the auxiliary attribute loss."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn.functional as F  # noqa: N812
from PIL import Image
from torch import nn

from shared.models.losses import LOSSES
from shared.models.model import RetrievalModel
from training.config import TrainConfig
from training.corrnet import CorrNetLoss, correlation

if TYPE_CHECKING:
    from training.loop import TrainInputs


class TrainModule(nn.Module):
    """Wraps the model so that one forward computes the whole loss (what DDP synchronises)."""

    def __init__(self, model: RetrievalModel, inputs: TrainInputs, cfg: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.inputs = inputs
        self.loss = LOSSES["info_nce" if cfg.optim.loss == "corrnet" else cfg.optim.loss]
        self.composed_weight = cfg.optim.composed_weight
        self.words_weight = cfg.optim.words_weight
        self.brand_drop = cfg.optim.brand_drop
        self.flip = cfg.optim.flip_augment
        self.attribute_weight = cfg.optim.attribute_weight
        self.correlation_weight = cfg.optim.correlation_weight
        # CorrNet (loss: corrnet) replaces the text->image ranking loss; composed and words
        # terms keep InfoNCE. Its decoders are training-only, like the attribute classifiers.
        self.corrnet: CorrNetLoss | None = None
        if cfg.optim.loss == "corrnet":
            if inputs.image_features is None or inputs.title_features is None:
                raise ValueError("loss corrnet needs frozen backbones (cached features)")
            self.corrnet = CorrNetLoss(
                model.heads.embed_dim, inputs.image_feature_dim, inputs.text_feature_dim
            )
        # Training-only classifiers of the shared space (never in the bundle): one linear layer
        # per attribute, over image and title embeddings alike.
        # Made only when used: their initialisation draws from torch's random stream.
        self.attribute_heads = nn.ModuleList(
            nn.Linear(model.heads.embed_dim, max(n, 1))
            for n in (inputs.examples.attribute_classes if self.attribute_weight > 0 else ())
        )

    def train(self, mode: bool = True) -> TrainModule:
        """Batch-norm statistics stay frozen: small CPU batches would corrupt them."""
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    def _image_features(self, idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """Pooled backbone features of products `idx` (cached, one view each), or of the
        trainable suffix run on the cached prefix."""
        tower = self.model.image_tower()
        feats = self.inputs.image_features
        if feats is None:
            raise ValueError("image features are computed in the loop for this backbone")
        views = (
            rng.integers(feats.shape[0], size=len(idx)) if self.flip else np.zeros(len(idx), int)
        )
        x = torch.from_numpy(np.ascontiguousarray(feats[views, idx]))
        if self.inputs.image_prefix_blocks:
            x = tower.backbone.forward_suffix(x, train_last_blocks=self.inputs.image_prefix_blocks)
        return x

    def _images(self, idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        tower = self.model.image_tower()
        if self.inputs.image_features is not None:
            return tower.head(self._image_features(idx, rng))
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

    def _corrnet_loss(self, idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """CorrNet's objective on products `idx`: their image and title features (cached) and
        the towers' embeddings of them."""
        assert self.corrnet is not None and self.inputs.title_features is not None
        x = self._image_features(idx, rng)
        y = torch.from_numpy(self.inputs.title_features[idx])
        hx = self.model.image_tower().head(x)
        hy = self.model.text_tower().head(y)
        return self.corrnet(x, y, hx, hy)

    def _attribute_loss(self, embeddings: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
        """Mean cross-entropy of predicting each attribute (articleType, baseColour, gender,
        usage) of products `idx` from their embeddings; unknown values are ignored."""
        labels = torch.from_numpy(self.inputs.examples.attribute_labels[idx])  # [B, K]
        losses = [
            F.cross_entropy(head(embeddings), labels[:, k], ignore_index=-1)
            for k, head in enumerate(self.attribute_heads)
            if bool((labels[:, k] >= 0).any())
        ]
        return torch.stack(losses).mean() if losses else embeddings.sum() * 0.0

    def forward(
        self, batch: dict[str, np.ndarray], rng: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        ex = self.inputs.examples
        idx = batch["products"]
        pair: tuple[torch.Tensor, torch.Tensor] | None = None
        if self.corrnet is not None:
            t2i = self._corrnet_loss(idx, rng)
        else:
            pair = (self._titles(idx, rng), self._images(idx, rng))
            t2i = self._pair_loss(*pair, ex.title_groups[idx])
        out = {"t2i": t2i, "loss": t2i}
        if self.correlation_weight > 0 and pair is not None:
            corr = correlation(*pair)  # CorrNet's correlation term beside the ranking loss
            out["correlation"] = corr
            out["loss"] = out["loss"] - self.correlation_weight * corr
        if self.attribute_weight > 0 and len(self.attribute_heads) and pair is not None:
            attributes = self._attribute_loss(torch.cat(pair), np.concatenate([idx, idx]))
            out["attributes"] = attributes
            out["loss"] = out["loss"] + self.attribute_weight * attributes
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
