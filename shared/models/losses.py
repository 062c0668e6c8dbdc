"""Contrastive objectives over a batch of paired query and target embeddings.

Every loss takes L2-normalised `queries` [B, D] and `targets` [B, D] where row i of each is a
positive pair, plus optional `groups` [B] (equal group = a second positive, e.g. the same
product, never treated as a negative), and returns a scalar.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F  # noqa: N812


class PairLoss(Protocol):
    def __call__(
        self,
        queries: torch.Tensor,
        targets: torch.Tensor,
        *,
        logit_scale: torch.Tensor,
        groups: torch.Tensor | None = None,
    ) -> torch.Tensor: ...


def _positive_mask(n: int, groups: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    if groups is None:
        return torch.eye(n, dtype=torch.bool, device=device)
    return groups.unsqueeze(0) == groups.unsqueeze(1)  # [B, B]


def info_nce(
    queries: torch.Tensor,
    targets: torch.Tensor,
    *,
    logit_scale: torch.Tensor,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric cross-entropy over in-batch cosine similarities with a learnable temperature.

    InfoNCE (https://arxiv.org/abs/1807.03748) as used by CLIP (https://arxiv.org/abs/2103.00020).
    Off-diagonal pairs of the same group are masked out of the negatives.
    """
    scale = logit_scale.exp().clamp(max=100.0)
    logits = scale * queries @ targets.T  # [B, B]
    positives = _positive_mask(len(queries), groups, queries.device)
    eye = torch.eye(len(queries), dtype=torch.bool, device=queries.device)
    logits = logits.masked_fill(positives & ~eye, float("-inf"))
    labels = torch.arange(len(queries), device=queries.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def triplet_hard_negative(
    queries: torch.Tensor,
    targets: torch.Tensor,
    *,
    logit_scale: torch.Tensor,
    groups: torch.Tensor | None = None,
    margin: float = 0.2,
) -> torch.Tensor:
    """Triplet ranking loss with the hardest in-batch negative in both directions.

    VSE++ (https://arxiv.org/abs/1707.05612); the two-branch networks of Wang et al. use the
    same margin ranking form. `logit_scale` is unused (cosine margins need no temperature).
    """
    del logit_scale
    sims = queries @ targets.T  # [B, B]
    positive = sims.diag()
    negatives = sims.masked_fill(
        _positive_mask(len(queries), groups, queries.device), float("-inf")
    )
    hardest_target = negatives.max(dim=1).values  # per query
    hardest_query = negatives.max(dim=0).values  # per target
    return (
        F.relu(margin - positive + hardest_target).mean()
        + F.relu(margin - positive + hardest_query).mean()
    ) / 2


def triplet_all_negatives(
    queries: torch.Tensor,
    targets: torch.Tensor,
    *,
    logit_scale: torch.Tensor,
    groups: torch.Tensor | None = None,
    margin: float = 0.2,
) -> torch.Tensor:
    """Triplet ranking loss summed over every in-batch negative that violates the margin, both
    directions (VSE0 in the VSE++ paper; the form of the two-branch networks of Wang et al.),
    averaged per query. Every violating negative gives a gradient, so it trains from a random
    start where the hardest-negative form collapses (docs/QUALITY.md)."""
    del logit_scale
    sims = queries @ targets.T  # [B, B]
    positive = sims.diag()
    mask = _positive_mask(len(queries), groups, queries.device)
    to_targets = F.relu(margin - positive.unsqueeze(1) + sims).masked_fill(mask, 0.0)
    to_queries = F.relu(margin - positive.unsqueeze(0) + sims).masked_fill(mask, 0.0)
    return (to_targets.sum(1).mean() + to_queries.sum(0).mean()) / 2


def pairwise_contrastive(
    queries: torch.Tensor,
    targets: torch.Tensor,
    *,
    logit_scale: torch.Tensor,
    groups: torch.Tensor | None = None,
    margin: float = 1.0,
) -> torch.Tensor:
    """The Siamese two-branch network's pairwise contrastive loss (Hadsell, Chopra & LeCun,
    CVPR 2006), as the fashion cross-modal study trains its two branches: squared distance for
    positive pairs, squared hinge max(0, margin - distance) for every in-batch negative pair;
    each averaged over its pairs. Distances of unit vectors lie in [0, 2]."""
    del logit_scale
    distances = torch.cdist(queries, targets)  # [B, B]
    negative = ~_positive_mask(len(queries), groups, queries.device)
    pulled = distances.diag().pow(2).mean()
    if not bool(negative.any()):
        return pulled
    return pulled + F.relu(margin - distances[negative]).pow(2).mean()


def cmpm(
    queries: torch.Tensor,
    targets: torch.Tensor,
    *,
    logit_scale: torch.Tensor,
    groups: torch.Tensor | None = None,
    epsilon: float = 1e-8,
) -> torch.Tensor:
    """Cross-Modal Projection Matching (Zhang & Lu, ECCV 2018, https://arxiv.org/abs/1808.08285).

    KL divergence between the softmax over projections of each query onto the (normalised)
    targets and the normalised true matching distribution, in both directions.
    """
    positives = _positive_mask(len(queries), groups, queries.device).float()
    true_dist = positives / positives.sum(dim=1, keepdim=True)
    scale = logit_scale.exp().clamp(max=100.0)
    directions = []
    for logits in (scale * queries @ targets.T, scale * targets @ queries.T):
        pred = F.softmax(logits, dim=1)
        kl = pred * (F.log_softmax(logits, dim=1) - torch.log(true_dist + epsilon))
        directions.append(kl.sum(1).mean())
    return (directions[0] + directions[1]) / 2


LOSSES: dict[str, PairLoss] = {
    "info_nce": info_nce,
    "triplet": triplet_hard_negative,
    "triplet_all": triplet_all_negatives,
    "contrastive": pairwise_contrastive,
    "cmpm": cmpm,
}
