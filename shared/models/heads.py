"""Projection heads into the shared embedding space, and the additive-attention fusion."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


class ProjectionHead(nn.Module):
    """Backbone features -> L2-normalised embeddings [batch, embed_dim].

    A linear map plus, when `hidden_dim` > 0, a residual two-layer MLP branch
    (CLIP uses a linear projection; a small MLP branch helps frozen features).
    """

    def __init__(self, in_dim: int, embed_dim: int, *, hidden_dim: int = 0, dropout: float = 0.1):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.linear = nn.Linear(in_dim, embed_dim)
        self.mlp = (
            nn.Sequential(
                nn.Linear(in_dim, hidden_dim),
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(hidden_dim, embed_dim),
            )
            if hidden_dim > 0
            else None
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # [B, in] -> [B, embed]
        x = self.norm(features)
        out = self.linear(x)
        if self.mlp is not None:
            out = out + self.mlp(x)
        return F.normalize(out, dim=-1)


class IdentityHead(nn.Module):
    """Backbone features as they are, L2-normalised: for towers whose features already share one
    space (both towers of one CLIP checkpoint), so a bundle can search zero-shot."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(features, dim=-1)


def projection_head(in_dim: int, embed_dim: int, *, identity: bool, **kw) -> nn.Module:
    """A ProjectionHead, or with `identity` an IdentityHead (then `in_dim` must be `embed_dim`).

    Raises:
        ValueError: identity heads over features of another size than the embedding.
    """
    if not identity:
        return ProjectionHead(in_dim, embed_dim, **kw)
    if in_dim != embed_dim:
        raise ValueError(
            f"identity heads need features of the embedding's size: {in_dim} != {embed_dim} "
            "(set heads.embed_dim to the backbones' projection size)"
        )
    return IdentityHead()


class AdditiveAttentionFusion(nn.Module):
    """Fuses a reference-image embedding and a modifier-text embedding into a query embedding.

    Additive (Bahdanau) attention, https://arxiv.org/abs/1409.0473, over modality candidates:
    each candidate m_k (the projected image, the projected text, and their joint projection)
    gets a score e_k = v . tanh(W m_k + U [i; t] + b), conditioned on the pair; softmax weights
    a_k = softmax(e)_k; the output is sum_k a_k m_k plus a residual MLP of [i; t], normalised.

    Shapes: image, text [batch, dim] -> [batch, dim].
    """

    def __init__(self, dim: int, *, hidden_dim: int = 512, dropout: float = 0.1):
        super().__init__()
        self.image_proj = nn.Linear(dim, dim)
        self.text_proj = nn.Linear(dim, dim)
        self.joint_proj = nn.Sequential(
            nn.Linear(2 * dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, dim)
        )
        self.w = nn.Linear(dim, hidden_dim, bias=False)
        self.u = nn.Linear(2 * dim, hidden_dim)
        self.v = nn.Linear(hidden_dim, 1, bias=False)
        self.residual = nn.Sequential(
            nn.Linear(2 * dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, dim),
        )

    def attention(
        self, image: torch.Tensor, text: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (candidates [B, K, dim], weights [B, K])."""
        pair = torch.cat([image, text], dim=-1)  # [B, 2*dim]
        candidates = torch.stack(
            [self.image_proj(image), self.text_proj(text), self.joint_proj(pair)], dim=1
        )  # [B, K, dim]
        scores = self.v(torch.tanh(self.w(candidates) + self.u(pair).unsqueeze(1)))  # [B, K, 1]
        return candidates, torch.softmax(scores.squeeze(-1), dim=-1)

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        candidates, weights = self.attention(image, text)
        fused = (weights.unsqueeze(-1) * candidates).sum(dim=1)  # [B, dim]
        fused = fused + self.residual(torch.cat([image, text], dim=-1))
        return F.normalize(fused, dim=-1)


def sum_fusion(image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """The untrained baseline: the normalised sum of the two embeddings."""
    return F.normalize(image + text, dim=-1)
