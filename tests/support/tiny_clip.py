"""Tiny random CLIP and SigLIP checkpoints written by save_pretrained: both towers, a byte-pair
tokenizer over a small vocabulary, and the image processor config, as hub checkpoints are laid
out."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPTokenizer,
    SiglipConfig,
    SiglipModel,
)

PROJECTION_DIM = 16
WORDS = [
    "a",
    "navy",
    "blue",
    "shirt",
    "for",
    "men",
    "women",
    "red",
    "shoes",
    "in",
    "black",
    "same",
    "but",
    "striped",
    "the",
    "one",
    "white",
]


def _tokenizer(root: Path) -> tuple[CLIPTokenizer, int]:
    """A byte-pair tokenizer over the letters and WORDS, and its vocabulary's size."""
    root.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in "abcdefghijklmnopqrstuvwxyz,'-":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(f"{ch}</w>", len(vocab))
    for word in WORDS:
        vocab.setdefault(f"{word}</w>", len(vocab))
    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(root / "vocab.json"), str(root / "merges.txt")), len(vocab)


def write_tiny_clip(root: Path) -> Path:
    """Writes the checkpoint into `root/clip` and returns that folder."""
    tokenizer, vocab_size = _tokenizer(root)
    torch.manual_seed(0)
    text = {"vocab_size": vocab_size, "max_position_embeddings": 32, "bos_token_id": 0}
    text |= {"eos_token_id": 1, "pad_token_id": 1}
    sizes = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2}
    sizes |= {"num_attention_heads": 4}
    config = CLIPConfig(
        text_config=text | sizes,
        vision_config=sizes | {"image_size": 32, "patch_size": 8},
        projection_dim=PROJECTION_DIM,
    )
    folder = root / "clip"
    CLIPModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    processor = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    processor.save_pretrained(folder)
    return folder


def write_tiny_siglip(root: Path) -> Path:
    """Writes a SigLIP checkpoint (text embeddings of PROJECTION_DIM, 16 text positions) into
    `root/siglip` and returns that folder. Hub SigLIPs ship a SentencePiece tokenizer; any
    tokenizer saved beside the weights loads the same way."""
    tokenizer, vocab_size = _tokenizer(root)
    torch.manual_seed(0)
    sizes = {"hidden_size": PROJECTION_DIM, "intermediate_size": 37, "num_hidden_layers": 2}
    sizes |= {"num_attention_heads": 4}
    text = {"vocab_size": vocab_size, "max_position_embeddings": 16, "pad_token_id": 1}
    config = SiglipConfig(
        text_config=sizes | text | {"projection_size": PROJECTION_DIM},
        vision_config=sizes | {"image_size": 32, "patch_size": 8},
    )
    folder = root / "siglip"
    SiglipModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    processor = CLIPImageProcessor(
        size={"shortest_edge": 32},
        crop_size={"height": 32, "width": 32},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor.save_pretrained(folder)
    return folder
