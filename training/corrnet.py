"""The Correlational Network objective (Chandar et al., "Correlational Neural Networks", Neural
Computation 2016), the fashion cross-modal study's other two-view model, over this model's towers.

CorrNet learns a common representation h of two views x (image features) and y (text features)
by reconstructing both views from h(x), from h(y) and from h(x, y), while maximising the
correlation between h(x) and h(y) across the batch. Here h(x) and h(y) are the towers' projection
heads (the retrieval embeddings), h(x, y) their normalised sum, and the decoders are two
training-only linear maps; the features are standardised per sample (layer norm, no affine).
Only for frozen backbones (cached features).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


class CorrNetLoss(nn.Module):
    """Reconstruction (self and cross) minus `correlation_weight` x the correlation of the two
    views' embeddings, averaged over the embedding dimensions."""

    def __init__(
        self, embed_dim: int, image_dim: int, text_dim: int, *, correlation_weight: float = 1.0
    ) -> None:
        super().__init__()
        self.image_decoder = nn.Linear(embed_dim, image_dim)
        self.text_decoder = nn.Linear(embed_dim, text_dim)
        self.correlation_weight = correlation_weight

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, hx: torch.Tensor, hy: torch.Tensor
    ) -> torch.Tensor:
        x = F.layer_norm(x, x.shape[-1:])
        y = F.layer_norm(y, y.shape[-1:])
        joint = F.normalize(hx + hy, dim=-1)
        reconstruction = sum(
            F.mse_loss(self.image_decoder(h), x) + F.mse_loss(self.text_decoder(h), y)
            for h in (joint, hx, hy)
        )
        return reconstruction - self.correlation_weight * correlation(hx, hy)


def correlation(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Mean over dimensions of the Pearson correlation of `a` and `b` [B, D] across the batch."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    return ((a * b).sum(0) / (a.norm(dim=0) * b.norm(dim=0) + eps)).mean()
