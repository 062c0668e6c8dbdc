"""A tiny random CLIP checkpoint written by save_pretrained: both towers, a byte-pair tokenizer
over a small vocabulary, and the image processor config, as a hub CLIP is laid out."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

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


def write_tiny_clip(root: Path) -> Path:
    """Writes the checkpoint into `root/clip` and returns that folder."""
    root.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in "abcdefghijklmnopqrstuvwxyz,'-":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(f"{ch}</w>", len(vocab))
    for word in WORDS:
        vocab.setdefault(f"{word}</w>", len(vocab))
    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(root / "vocab.json"), str(root / "merges.txt"))
    torch.manual_seed(0)
    text = {"vocab_size": len(vocab), "max_position_embeddings": 32, "bos_token_id": 0}
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
