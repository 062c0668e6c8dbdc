"""The backbone interface shared by image and text backbones, and the registry of kinds.

A backbone turns preprocessed inputs into pooled features. Each kind lives in its own sibling
module (`image_backbone_hf.py`, `image_backbone_efficientnet.py`, `text_backbone_hf.py`) and
registers itself here under the name written into bundle manifests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

_REGISTRY: dict[str, type[Backbone]] = {}


class Backbone(nn.Module):
    """Base class: pooled features of dimension `feature_dim`, savable into a bundle folder."""

    kind: ClassVar[str]
    feature_dim: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if getattr(cls, "kind", None):
            _REGISTRY[cls.kind] = cls

    def spec(self) -> dict[str, Any]:
        """JSON-serialisable description written into the bundle manifest."""
        raise NotImplementedError

    def save(self, directory: Path) -> None:
        """Writes the weights (safetensors only) and any files needed to load them again."""
        raise NotImplementedError

    @classmethod
    def load(cls, directory: Path, spec: dict[str, Any]) -> Backbone:
        """Loads a backbone written by `save`. Never unpickles."""
        raise NotImplementedError

    def trainable_blocks(self) -> list[nn.Module]:
        """The backbone's blocks from input to output; the last N may be fine-tuned."""
        raise NotImplementedError

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """A text backbone's inputs for `texts` (`input_ids`, `attention_mask`, [B, T])."""
        raise NotImplementedError(f"{type(self).__name__} takes no text")

    def freeze(self, *, train_last_blocks: int = 0) -> None:
        """Freezes every parameter except those of the last `train_last_blocks` blocks."""
        self.requires_grad_(False)
        if train_last_blocks > 0:
            for block in self.trainable_blocks()[-train_last_blocks:]:
                block.requires_grad_(True)

    def forward_prefix(self, inputs: Any, *, train_last_blocks: int) -> Any:
        """The frozen part: everything before the last `train_last_blocks` blocks.

        Together with `forward_suffix` it equals `forward`; training caches the prefix's
        output once and runs only the suffix. Kinds that cannot split raise NotImplementedError.
        """
        raise NotImplementedError

    def forward_suffix(self, hidden: Any, *, train_last_blocks: int) -> Any:
        """The trainable last blocks, from `forward_prefix`'s output to pooled features."""
        raise NotImplementedError


def child_modules(root: nn.Module, path: str) -> list[nn.Module]:
    """The children, in order, of the container (an nn.ModuleList) at dotted `path` in `root`."""
    return list(root.get_submodule(path).children())


def backbone_class(kind: str) -> type[Backbone]:
    """Returns the class registered under `kind`. Raises ValueError for an unknown kind."""
    _import_builtin_kinds()
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise ValueError(f"unknown backbone kind {kind!r}; known: {sorted(_REGISTRY)}") from None


def _import_builtin_kinds() -> None:
    from shared.models import (  # noqa: F401  (imported for their registration)
        clip,
        image_backbone_combined,
        image_backbone_efficientnet,
        image_backbone_hf,
        text_backbone_hf,
    )
