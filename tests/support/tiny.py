"""Tiny real models for tests: a ViT and a BERT written by save_pretrained (random weights),
a model bundle made of them, and a small catalog of distinct images."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import BertConfig, BertModel, BertTokenizerFast, ViTConfig, ViTModel

from shared.models.bundle import save_bundle
from shared.models.image_backbone_hf import HFImageBackbone
from shared.models.model import HeadConfig, RetrievalModel
from shared.models.text_backbone_hf import HFTextBackbone
from shared.models.transforms import ImagePreprocessor

HEADS = HeadConfig(embed_dim=16, image_hidden_dim=32, text_hidden_dim=32, fusion_hidden_dim=16)
VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "blue",
    "red",
    "shirt",
    "dress",
    "in",
    "black",
]
COLOURS = ["Red", "Blue", "Black"]


def write_tiny_checkpoints(root: Path) -> Path:
    torch.manual_seed(0)
    vit = ViTModel(
        ViTConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            image_size=32,
            patch_size=8,
        ),
        add_pooling_layer=False,
    )
    vit.save_pretrained(root / "vit")
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(VOCAB))
    bert = BertModel(
        BertConfig(
            vocab_size=len(VOCAB),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
        ),
        add_pooling_layer=False,
    )
    bert.save_pretrained(root / "bert")
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(root / "bert")
    return root


def tiny_model(checkpoints: Path, *, seed: int = 0) -> RetrievalModel:
    torch.manual_seed(seed)
    image = HFImageBackbone.from_pretrained(str(checkpoints / "vit"), pooling="cls_mean")
    text = HFTextBackbone.from_pretrained(str(checkpoints / "bert"), max_length=8)
    return RetrievalModel.build(
        heads=HEADS,
        image_backbone=image,
        preprocessor=ImagePreprocessor(resolution=32),
        text_backbone=text,
    ).eval()


def write_tiny_bundle(root: Path, *, seed: int = 0) -> Path:
    """A complete model bundle (image, text, fusion) at root/bundle; another seed gives other
    heads (another model version)."""
    model = tiny_model(write_tiny_checkpoints(root / "hub"), seed=seed)
    save_bundle(model, root / "bundle")
    return root / "bundle"


def png_bytes(seed: int, size: int = 40) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def write_catalog(root: Path, n: int = 12, *, prefix: str = "p") -> Path:
    """products.jsonl with n products with distinct random images and colour attributes."""
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        (root / f"{prefix}{i}.png").write_bytes(png_bytes(i))
        colour = COLOURS[i % len(COLOURS)]
        lines.append(
            json.dumps(
                {
                    "id": f"{prefix}{i}",
                    "image": f"{prefix}{i}.png",
                    "title": f"{colour.lower()} shirt {i}",
                    "baseColour": colour,
                    "year": 2020 + i,
                }
            )
        )
    (root / "products.jsonl").write_text("\n".join(lines) + "\n")
    return root / "products.jsonl"
