"""Hypothesis strategies for hostile input: images (odd modes, truncated, random, decompression
bombs, oversized), search requests, catalog event records; and a tally of outcomes that the
reliability tests write to a report (docs/RELIABILITY.md is made from it)."""

from __future__ import annotations

import functools
import io
import json
import os
import struct
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
from hypothesis import strategies as st
from PIL import Image

# Mode -> formats PIL writes it in.
MODES = {
    "1": ("PNG", "BMP", "TIFF"),
    "L": ("PNG", "JPEG", "WEBP", "GIF"),
    "LA": ("PNG", "WEBP"),
    "P": ("PNG", "GIF", "BMP"),
    "RGB": ("PNG", "JPEG", "WEBP", "BMP", "TIFF"),
    "RGBA": ("PNG", "WEBP", "TIFF"),
    "CMYK": ("JPEG", "TIFF"),
    "I;16": ("PNG", "TIFF"),
    "I": ("TIFF",),
    "F": ("TIFF",),
}


def encoded(mode: str, fmt: str, width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).convert(mode)
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


@functools.cache
def png_bomb(side: int = 30_000) -> bytes:
    """A 1-bit PNG of side x side pixels (900 MP at the default) in about 100 KB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def png_header(width: int, height: int) -> bytes:
    """A PNG that is all header: it says width x height and carries no pixel data, so reading
    its header succeeds and decoding it fails (truncated)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"")


@st.composite
def odd_images(draw) -> bytes:
    mode = draw(st.sampled_from(sorted(MODES)))
    fmt = draw(st.sampled_from(MODES[mode]))
    width, height = draw(st.integers(1, 64)), draw(st.integers(1, 64))
    return encoded(mode, fmt, width, height, draw(st.integers(0, 2**16)))


@st.composite
def truncated_images(draw) -> bytes:
    data = draw(odd_images())
    return data[: draw(st.integers(0, max(0, len(data) - 1)))]


def images() -> st.SearchStrategy[bytes]:
    """Valid images in odd modes and formats, truncated ones, random bytes, a decompression
    bomb, a bare PNG signature. (Oversized requests are a test of their own: hypothesis keeps
    every example in memory.)"""
    return st.one_of(
        odd_images(),
        truncated_images(),
        st.binary(max_size=2048),
        st.just(png_bomb()),
        st.just(b"\x89PNG\r\n\x1a\n" + b"\0" * 64),
    )


def text_values() -> st.SearchStrategy[str]:
    return st.one_of(
        st.just(""),
        st.text(max_size=40),
        st.text(st.characters(codec="utf-8"), min_size=995, max_size=1010),  # the 1000-char limit
        st.sampled_from(["red shirt", "blue dress", "in black", " ", "\0", "💥" * 300]),
    )


class Tally:
    """Outcomes by class, written as JSON lines to $VITRINE_RELIABILITY_REPORT when set."""

    def __init__(self, name: str, *, fuzzed: bool = False) -> None:
        self.name, self.outcomes, self.fuzzed = name, Counter(), fuzzed

    def add(self, outcome: str) -> None:
        self.outcomes[outcome] += 1

    @property
    def cases(self) -> int:
        return sum(self.outcomes.values())

    def write(self, **extra) -> None:
        path = os.environ.get("VITRINE_RELIABILITY_REPORT")
        if path:
            line = {
                "test": self.name,
                "cases": self.cases,
                "outcomes": dict(self.outcomes),
                "fuzzed": self.fuzzed,
            }
            with Path(path).open("a", encoding="utf-8") as f:
                f.write(json.dumps(line | extra) + "\n")


def scale(name: str, default: int) -> int:
    """A case count, overridable by $VITRINE_<NAME> (`make chaos` raises them)."""
    return int(os.environ.get(f"VITRINE_{name.upper()}", default))
