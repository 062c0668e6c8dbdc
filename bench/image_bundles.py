"""Probe: the served image encoder of several bundles on the same photos, as the platform runs it.

Each bundle's image part through `shared.models.encoders` (its exported runtime, ONNX Runtime by
default, with the image-encoder replica's one thread), 96 Myntra photos in batches of 16,
decoding excluded and preprocessing included; rounds interleaved so drift hits every bundle, the
median round reported, each as a ratio against the first bundle. docs/QUALITY.md quotes it for
the combined backbones' cost. Not part of `python -m bench`:

    .venv/bin/python bench/image_bundles.py BUNDLE [BUNDLE...] [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.models import encoders  # noqa: E402
from shared.models.inference import open_image  # noqa: E402

PHOTOS = Path("../shared/data/myntra/images")
BATCH = 16
BATCHES = 6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    paths = sorted(PHOTOS.glob("*.jpg"))[: BATCH * BATCHES]
    if len(paths) < BATCH:
        sys.exit(f"no photos under {PHOTOS}: run from the repo root beside ../shared")
    images = [open_image(p) for p in paths]
    loaded = [encoders.load(b, "image", threads=1) for b in args.bundles]
    for encoder in loaded:
        encoder.encode(images[:BATCH])  # warm-up
    rates: list[list[float]] = [[] for _ in loaded]
    for _ in range(args.rounds):
        for i, encoder in enumerate(loaded):
            start = time.perf_counter()
            for b in range(0, len(images), BATCH):
                encoder.encode(images[b : b + BATCH])
            rates[i].append(len(images) / (time.perf_counter() - start))
    base = statistics.median(rates[0])
    for bundle, encoder, r in zip(args.bundles, loaded, rates, strict=True):
        rate = statistics.median(r)
        runtime = getattr(encoder, "runtime", "?")
        print(f"{bundle}: {rate:.1f} images/s ({runtime}), {rate / base:.2f}x the first")


if __name__ == "__main__":
    main()
