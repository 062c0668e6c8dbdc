"""Image backbone: several image backbones' features side by side, e.g. EfficientNet-Lite0's
supervised ImageNet features beside DINOv2's self-supervised ones.

A bundle has one preprocessing: the first member's own, so the first member reads the pixels as
they come. Every other member gets them converted inside the graph to what its own weights
expect (back to 0..255, resized to its resolution, normalised its way), which the ONNX export
carries too. Each member's features are standardised (a layer norm without parameters) before
they are concatenated, so neither member drowns the other in the heads' first norm.

Training caches each member's features apart (training/features.py), so the first member shares
its cache with the same backbone used alone. Members are frozen: a combined backbone trains no
blocks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from shared.models.backbone import Backbone, backbone_class
from shared.models.transforms import ImagePreprocessor

LAYER_NORM_EPS = 1e-5  # F.layer_norm's default


def _channels(values, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype).view(1, 3, 1, 1)


class AdaptedBackbone(Backbone):
    """A backbone fed pixels preprocessed for another: converts them to its own preprocessing.

    Args:
        inner: the backbone.
        given: the preprocessing its input arrives in (the bundle's).
        own: the preprocessing its weights expect (resolution and normalisation).
    """

    kind = "adapted_image"

    def __init__(self, inner: Backbone, *, given: ImagePreprocessor, own: ImagePreprocessor):
        super().__init__()
        self.inner = inner
        self.given, self.own = given, own
        self.feature_dim = inner.feature_dim

    def _convert(self, pixels: torch.Tensor) -> torch.Tensor:
        given, own = self.given, self.own
        mean, std = _channels(given.mean, pixels), _channels(given.std, pixels)
        raw = ((pixels * std + mean) - given.offset) / given.scale  # back to 0..255
        if own.resolution != given.resolution:
            size = (own.resolution, own.resolution)
            raw = F.interpolate(raw, size=size, mode="bilinear", align_corners=False)
        mean, std = _channels(own.mean, pixels), _channels(own.std, pixels)
        return (raw * own.scale + own.offset - mean) / std

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.inner(self._convert(pixels))

    def spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "inner": self.inner.spec(),
            "given": self.given.to_dict(),
            "own": self.own.to_dict(),
            "feature_dim": self.feature_dim,
        }


class CombinedImageBackbone(Backbone):
    """The members' standardised features, concatenated: [B, sum of their feature_dims].

    Args:
        members: the first reads the bundle's pixels as they are; the others are
            AdaptedBackbones given that preprocessing.
    """

    kind = "combined_image"

    def __init__(self, members: list[Backbone]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError("a combined backbone needs at least two members")
        if isinstance(members[0], AdaptedBackbone) or not all(
            isinstance(m, AdaptedBackbone) for m in members[1:]
        ):
            raise ValueError("the first member reads the pixels as given; the others adapt them")
        self.parts = nn.ModuleList(members)  # registered: parameters, state_dict, eval()
        self._members = list(members)  # the same modules, typed
        self.feature_dim = sum(m.feature_dim for m in members)

    @property
    def members(self) -> list[Backbone]:
        return self._members

    @classmethod
    def of(cls, first: tuple[Backbone, ImagePreprocessor], others) -> CombinedImageBackbone:
        """Members from (backbone, its own preprocessing) pairs; the bundle preprocesses for
        `first`."""
        given = first[1]
        return cls([first[0], *(AdaptedBackbone(b, given=given, own=p) for b, p in others)])

    def _merged(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Each member's features standardised, then concatenated."""
        return torch.cat(
            [
                F.layer_norm(p, (m.feature_dim,), eps=LAYER_NORM_EPS)  # a static size: ONNX
                for p, m in zip(parts, self.members, strict=True)
            ],
            -1,
        )

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._merged([m(pixels) for m in self.members])

    def merge(self, parts: list[np.ndarray]) -> np.ndarray:
        """`forward` over the members' features computed apart (one array per member)."""
        with torch.no_grad():
            tensors = [torch.from_numpy(np.asarray(p, dtype=np.float32)) for p in parts]
            return self._merged(tensors).numpy()

    def freeze(self, *, train_last_blocks: int = 0) -> None:
        if train_last_blocks:
            raise ValueError("a combined image backbone trains no blocks (train_last_blocks: 0)")
        self.requires_grad_(False)

    def spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "members": [m.spec() for m in self.members],
            "feature_dim": self.feature_dim,
        }

    def save(self, directory: Path) -> None:
        for i, member in enumerate(self.members):
            inner = member.inner if isinstance(member, AdaptedBackbone) else member
            inner.save(directory / f"member_{i}")

    @classmethod
    def load(cls, directory: Path, spec: dict[str, Any]) -> CombinedImageBackbone:
        members: list[Backbone] = []
        for i, member in enumerate(spec["members"]):
            inner_spec = member.get("inner", member)
            inner = backbone_class(inner_spec["kind"]).load(directory / f"member_{i}", inner_spec)
            if member["kind"] == AdaptedBackbone.kind:
                given = ImagePreprocessor.from_dict(member["given"])
                own = ImagePreprocessor.from_dict(member["own"])
                inner = AdaptedBackbone(inner, given=given, own=own)
            members.append(inner)
        return cls(members)
