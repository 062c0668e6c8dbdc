"""Encoder runtimes: text- and image-encoder throughput per inference runtime and setting,
against torch fp32 (1 thread, the replicas' budget) in the same run, with the change in held-out
R@10 on the Myntra protocol of docs/QUALITY.md (the 224 px `myntra.yaml` bundle).

A variant may become the default only when its R@10 drops by at most 0.01 on every query set
(own image, attribute relevance, composed with the learned fusion); of those, the fastest, unless
another is within 10% of its speed and loses less R@10. Each tower's variants are
evaluated with the other tower in torch fp32, then the chosen pair together. Needs
`../shared/data/myntra` and the bundle `vitrine train --config training/configs/myntra.yaml`
writes (artifacts/bundles/myntra); `--bundle` and `--catalog` point elsewhere.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bench.harness import Row, Section

ROOT = Path(__file__).resolve().parent.parent
SETS = ("text_to_image_own", "text_to_image_attribute", "composed")
RULE = 0.01
NOISE = 0.10  # speeds closer than this are not told apart on these machines


@dataclass
class Variant:
    tower: str  # "text" or "image"
    name: str
    make: Callable[[], object]  # -> an encoder with .encode(batch)
    threads: int = 1
    same_numerics_as: str = ""  # skip the quality run: identical weights and ops as this one
    rates: list[float] = field(default_factory=list)
    error: str = ""


class _TorchTextVariant:
    def __init__(self, model, transform: Callable | None = None) -> None:
        self.tokenize = model.text.backbone.tokenize
        self.tower = transform(model.text) if transform else model.text

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> np.ndarray:
        tokens = self.tokenize(texts)
        return self.tower(tokens["input_ids"], tokens["attention_mask"]).float().numpy()


class _TorchImageVariant:
    def __init__(self, model, *, channels_last: bool = False, compile: bool = False) -> None:
        self.preprocessor = model.image.preprocessor
        self.tower = model.image
        self.channels_last = channels_last
        if channels_last:
            self.tower = self.tower.to(memory_format=torch.channels_last)
        if compile:
            self.tower = torch.compile(self.tower)

    @torch.inference_mode()
    def encode(self, images) -> np.ndarray:
        pixels = self.preprocessor.batch(images)
        if self.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        return self.tower(pixels).float().numpy()


def _exported(bundle: Path, root: Path, name: str, *, text: str, image: str) -> Path:
    """A copy of the bundle exported with the given quantizations."""
    from shared.models.encoders_onnx import export_bundle

    copy = root / name
    shutil.copytree(bundle, copy, ignore=shutil.ignore_patterns("onnx"))
    export_bundle(copy, text_quantization=text, image_quantization=image)
    return copy


def _twin(tower: str, name: str, make: Callable[[], object], *, of: str, threads: int = 1):
    """A variant with the same weights and ops as variant `of`: no quality run of its own."""
    return Variant(tower, name, make, threads=threads, same_numerics_as=of)


def _variants(bundle: Path, root: Path) -> list[Variant]:
    from shared.models import encoders
    from shared.models.bundle import load_bundle

    fp32 = _exported(bundle, root, "fp32", text="none", image="none")
    int8 = _exported(bundle, root, "int8", text="int8-dynamic", image="int8-dynamic")

    def torch_model():
        return load_bundle(bundle, parts=frozenset({"text", "image"}))[0]

    def ort(path: Path, part: str, threads: int):
        return lambda: encoders.load(path, part, runtime="onnxruntime", threads=threads)

    def quantized_linear(tower):
        return torch.ao.quantization.quantize_dynamic(tower, {torch.nn.Linear}, dtype=torch.qint8)

    def text(transform=None):
        return lambda: _TorchTextVariant(torch_model(), transform)

    def image(**options):
        return lambda: _TorchImageVariant(torch_model(), **options)

    return [
        Variant("text", "torch fp32", text()),
        _twin("text", "torch fp32, 2 threads", text(), of="torch fp32", threads=2),
        Variant("text", "torch int8 dynamic (Linear)", text(quantized_linear)),
        _twin("text", "torch.compile", text(torch.compile), of="torch fp32"),
        Variant("text", "onnxruntime fp32", ort(fp32, "text", 1)),
        Variant("text", "onnxruntime int8-dynamic", ort(int8, "text", 1)),
        _twin(
            "text",
            "onnxruntime int8-dynamic, 2 threads",
            ort(int8, "text", 2),
            of="onnxruntime int8-dynamic",
            threads=2,
        ),
        Variant("image", "torch fp32", image()),
        _twin("image", "torch fp32, 2 threads", image(), of="torch fp32", threads=2),
        _twin("image", "torch channels-last", image(channels_last=True), of="torch fp32"),
        _twin("image", "torch.compile", image(compile=True), of="torch fp32"),
        Variant("image", "onnxruntime fp32", ort(fp32, "image", 1)),
        Variant("image", "onnxruntime int8-dynamic", ort(int8, "image", 1)),
        _twin(
            "image",
            "onnxruntime fp32, 2 threads",
            ort(fp32, "image", 2),
            of="onnxruntime fp32",
            threads=2,
        ),
    ]


def _rate(encoder, batch: list, seconds: float) -> float:
    encoder.encode(batch)  # warm up (and compile, for torch.compile)
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        encoder.encode(batch)
        done += len(batch)
    return done / (time.perf_counter() - t0)


def _throughput(variants: list[Variant], batches: dict[str, list], *, rounds: int, seconds: float):
    """Items per second of each variant; rounds interleave the variants so drift hits all."""
    from tqdm.auto import tqdm

    encoders: dict[str, object] = {}
    for v in variants:
        try:
            encoders[v.tower + v.name] = v.make()
        except Exception as e:  # a variant this machine cannot build (reported in the table)
            v.error = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
    with tqdm(total=rounds * len(variants), desc="throughput", unit="run") as bar:
        for _ in range(rounds):
            for v in variants:
                bar.update()
                if v.error:
                    continue
                torch.set_num_threads(v.threads)
                try:
                    v.rates.append(_rate(encoders[v.tower + v.name], batches[v.tower], seconds))
                except Exception as e:
                    v.error = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
    torch.set_num_threads(1)
    return encoders


def _quality(variants, encoders, bundle: Path, products) -> dict[str, dict[str, float]]:
    """Held-out R@10 per query set for each variant (the other tower torch fp32)."""
    from shared.models import encoders as runtimes
    from training.evaluate import catalog_metrics, encode_in_batches
    from training.evaluate import open_image as load

    fusion = runtimes.load(bundle, "fusion", runtime="torch")
    gallery: dict[str, np.ndarray] = {}
    texts: dict[str, object] = {}
    for v in variants:
        if v.error or v.same_numerics_as:
            continue
        encoder = encoders[v.tower + v.name]
        if v.tower == "image":
            gallery[v.name] = encode_in_batches(
                lambda chunk, e=encoder: e.encode([load(p.image) for p in chunk]),
                list(products),
                batch_size=16,
                desc=f"gallery ({v.name})",
            )
        else:
            texts[v.name] = encoder
    scores: dict[str, dict[str, float]] = {}

    def r10(images: np.ndarray, text) -> dict[str, float]:
        metrics = catalog_metrics(
            images,
            lambda t: encode_in_batches(text.encode, t, batch_size=32),
            fusion.fuse,
            products,
        )
        return _r10(metrics)

    base_text = texts["torch fp32"]
    for name, images in gallery.items():
        scores[f"image {name}"] = r10(images, base_text)
    for name, text in texts.items():
        scores[f"text {name}"] = r10(gallery["torch fp32"], text)
    return scores


def _pick(variants: list[Variant], scores: dict, tower: str) -> Variant:
    """The default of a tower: among the 1-thread variants whose R@10 is within RULE of torch
    fp32 on every set, the fastest; but of those within NOISE of the fastest's speed (closer
    than run-to-run spread can tell apart), the one that loses the least R@10."""
    base = scores[f"{tower} torch fp32"]

    def drop(v: Variant) -> float | None:
        got = scores.get(f"{tower} {v.same_numerics_as or v.name}")
        return None if got is None else max(base[s] - got[s] for s in SETS)

    eligible = [
        v
        for v in variants
        if v.tower == tower
        and v.threads == 1
        and v.rates
        and (d := drop(v)) is not None
        and d <= RULE
    ]
    fastest = max(statistics.median(v.rates) for v in eligible)
    close = [v for v in eligible if statistics.median(v.rates) >= fastest * (1 - NOISE)]
    return min(close, key=lambda v: (drop(v), -statistics.median(v.rates)))


def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m bench runtimes", description=__doc__)
    p.add_argument("--bundle", type=Path, default=ROOT / "artifacts" / "bundles" / "myntra")
    p.add_argument(
        "--catalog",
        type=Path,
        default=ROOT.parent / "shared" / "data" / "myntra" / "products.jsonl",
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=3.0)
    return p.parse_args(argv)


def run(argv: list[str] | None = None) -> Section:
    from shared.data.catalog import load_products, split_products
    from training.evaluate import open_image

    args = _parse(argv)
    if not args.catalog.is_file() or not (args.bundle / "manifest.json").is_file():
        raise SystemExit(
            f"bench runtimes: needs {args.catalog} and a bundle at {args.bundle} "
            "(vitrine train --config training/configs/myntra.yaml)"
        )
    torch.set_num_threads(1)
    _, held_out = split_products(load_products(args.catalog), test_fraction=0.33, seed=0)
    batches = {
        "text": [p.title for p in held_out[:32]],
        "image": [open_image(p.image) for p in held_out[:16]],
    }
    with tempfile.TemporaryDirectory() as tmp:
        variants = _variants(args.bundle, Path(tmp))
        encoders = _throughput(variants, batches, rounds=args.rounds, seconds=args.seconds)
        scores = _quality(variants, encoders, args.bundle, held_out)
        chosen = {tower: _pick(variants, scores, tower) for tower in ("text", "image")}
        combined = _combined(chosen, encoders, args.bundle, held_out)
    return _section(variants, scores, chosen, combined, args)


def _combined(chosen, encoders, bundle: Path, products) -> dict[str, float]:
    """R@10 of the chosen text and image variants together (what a deployment serves)."""
    from shared.models import encoders as runtimes
    from training.evaluate import evaluate_catalog_served

    text, image = (encoders[t + v.name] for t, v in chosen.items())
    metrics = evaluate_catalog_served(
        text, image, runtimes.load(bundle, "fusion", runtime="torch"), products, batch_size=16
    )
    return _r10(metrics)


def _r10(metrics: dict) -> dict[str, float]:
    """R@10 of each query set (SETS) in catalog metrics; composed with the learned fusion."""
    return {
        "text_to_image_own": metrics["text_to_image_own"]["R@10"],
        "text_to_image_attribute": metrics["text_to_image_attribute"]["R@10"],
        "composed": metrics["composed"]["fusion"]["R@10"],
    }


def _section(variants, scores, chosen, combined, args) -> Section:
    section = Section(
        title="Encoder runtimes",
        command=".venv/bin/python -m bench runtimes",
        description=__doc__.split("\n\n")[0].replace("\n", " ")
        + f" Batches of 32 held-out titles / 16 held-out photos (decoding excluded, "
        f"preprocessing included), median of {args.rounds} interleaved rounds; R@10 over the "
        f"795 held-out products (own image, attribute, composed-fusion; change vs torch fp32).",
    )
    base = {
        t: statistics.median(
            next(v for v in variants if v.tower == t and v.name == "torch fp32").rates
        )
        for t in ("text", "image")
    }
    ref = {t: scores[f"{t} torch fp32"] for t in ("text", "image")}
    section.rows += [_variant_row(v, base[v.tower], ref[v.tower], scores, chosen) for v in variants]
    section.rows.append(
        Row(
            f"chosen pair: text {chosen['text'].name}, image {chosen['image'].name}",
            "torch fp32 pair (R@10, own image)",
            ref["text"]["text_to_image_own"],
            combined["text_to_image_own"],
            "R@10",
            ", ".join(
                f"{s}: {combined[s]:.3f} ({combined[s] - ref['text'][s]:+.3f})" for s in SETS
            ),
        )
    )
    return section


def _variant_row(v: Variant, base: float, ref: dict, scores: dict, chosen: dict) -> Row:
    """A variant's speed against torch fp32's (`base`), its R@10 change against `ref`."""
    unit = "texts/s" if v.tower == "text" else "images/s"
    if v.error:
        return Row(
            f"{v.tower}: {v.name}", "torch fp32", base, float("nan"), unit, f"not run: {v.error}"
        )
    got = scores.get(f"{v.tower} {v.same_numerics_as or v.name}")
    if got is None:
        quality = "R@10 not measured"
    else:
        quality = "R@10 " + ", ".join(
            f"{s.split('_')[-1]} {got[s]:.3f} ({got[s] - ref[s]:+.3f})" for s in SETS
        )
        if v.same_numerics_as:
            quality += f" (same numerics as {v.same_numerics_as})"
    mark = " **chosen**" if chosen[v.tower] is v else ""
    median = statistics.median(v.rates)
    return Row(f"{v.tower}: {v.name}{mark}", "torch fp32", base, median, unit, quality)


if __name__ == "__main__":
    print(run().to_markdown())
