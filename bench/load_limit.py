"""The in-process limit of `bench load`: the served work done in one process with the platform's
CPU budget (the served bundle, torch threads of the encoder replica, its batch sizes, an embedded
Qdrant Edge store as large as the served catalog), in a process of its own."""

from __future__ import annotations

import multiprocessing
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.load_generator import PHRASES, Workload


@dataclass(frozen=True)
class LimitSpec:
    bundle: str
    points: int
    threads: int
    runtime: str  # what the encoder replicas run: "torch" or "onnxruntime"
    batch: dict[str, int]  # max_batch_size of text, image and fusion deployments
    seconds: float


def _limit_main(spec: LimitSpec, workload: Workload, out) -> None:
    out.put(_measure_limits(spec, workload))


class _Stack:
    """The platform's work in one process: its encoders and a store of `spec.points` random
    unit vectors carrying a served payload."""

    def __init__(self, spec: LimitSpec, workload: Workload, store_dir: str) -> None:
        from shared.models import encoders
        from shared.models.bundle import Manifest
        from shared.vectorstore import Point, open_store

        bundle = Path(spec.bundle)
        dim = Manifest.read(bundle).embed_dim
        kw = {"runtime": spec.runtime, "threads": spec.threads}
        self.text_encoder = encoders.load(bundle, "text", **kw)
        self.image_encoder = encoders.load(bundle, "image", **kw)
        self.fusion = encoders.load(bundle, "fusion", **kw)
        self.points = spec.points
        self.rng = np.random.default_rng(0)
        vectors = self.rng.normal(size=(spec.points, dim)).astype(np.float32)
        self.vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        self.store = open_store(
            f"edge:{store_dir}/store", model_version="limit", dim=dim, indexed_fields={}
        )
        self.store.upsert([Point(f"p{i}", v, workload.payload) for i, v in enumerate(self.vectors)])
        self.store.optimize()

    def texts(self, batch: list[str]) -> np.ndarray:
        return self.text_encoder.encode(batch)

    def images(self, batch: list[bytes]) -> np.ndarray:
        from shared.models.transforms import decode_image

        decoded = [decode_image(b, max_bytes=2**24, max_pixels=40_000_000) for b in batch]
        return self.image_encoder.encode(decoded)

    def fuse(self, image: np.ndarray, text: np.ndarray) -> np.ndarray:
        return self.fusion.fuse(image, text)

    def search(self, queries: np.ndarray) -> None:
        for q in queries:
            self.store.search(q, top_k=10)

    def retrieve(self, n: int) -> np.ndarray:
        ids = [f"p{i}" for i in self.rng.integers(0, self.points, n)]
        return np.stack([p.vector for p in self.store.retrieve(ids, with_vectors=True)])


def _text_batch(b: int, n: int) -> list[str]:
    return [f"{PHRASES[(n + i) % len(PHRASES)]} {n + i}" for i in range(b)]


def _throughputs(stack: _Stack, spec: LimitSpec, workload: Workload) -> dict[str, float]:
    """Queries per second of each kind, batches of the served sizes for `spec.seconds` each."""
    bt, bi, bf = spec.batch["text"], spec.batch["image"], spec.batch["fusion"]

    def composed(n: int) -> None:
        parts = [
            stack.fuse(stack.retrieve(c), stack.texts(_text_batch(c, n))) for c in _chunks(bt, bf)
        ]
        stack.search(np.concatenate(parts))

    pipelines = {
        "text": (bt, lambda n: stack.search(stack.texts(_text_batch(bt, n)))),
        "image": (bi, lambda n: stack.search(stack.images(workload.images[:bi]))),
        "product": (bt, lambda n: stack.search(stack.retrieve(bt))),
        "composed": (bt, composed),
    }
    limits = {}
    for kind, (batch, step) in pipelines.items():
        step(0)  # warm up
        done, n, t0 = 0, 0, time.perf_counter()
        while time.perf_counter() - t0 < spec.seconds:
            step(n)
            done += batch
            n += batch
        limits[kind] = done / (time.perf_counter() - t0)
    return limits


def _stage_costs(stack: _Stack, workload: Workload) -> dict[str, float]:
    """Milliseconds of each stage of one query ("stage:text" etc.), medians."""
    one = np.stack([stack.vectors[0]])
    stage = {
        "stage:text": lambda: stack.texts(["blue striped shirt 1"]),
        "stage:image": lambda: stack.images(workload.images[:1]),
        "stage:fusion": lambda: stack.fuse(one, one),
        "stage:search": lambda: stack.store.search(stack.vectors[1], top_k=10),
        "stage:retrieve": lambda: stack.retrieve(1),
    }
    costs = {}
    for name, fn in stage.items():
        for _ in range(5):
            fn()
        samples = []
        for _ in range(100 if name != "stage:image" else 20):
            t = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t) * 1000)
        costs[name] = statistics.median(samples)
    return costs


def _measure_limits(spec: LimitSpec, workload: Workload) -> dict[str, float]:
    """Queries per second each kind reaches in one process with the platform's CPU budget, and
    the single-query stage costs in milliseconds ("stage:text" etc.)."""
    with tempfile.TemporaryDirectory() as tmp:
        stack = _Stack(spec, workload, tmp)
        limits = _throughputs(stack, spec, workload) | _stage_costs(stack, workload)
        stack.store.close()
    return limits


def _chunks(total: int, size: int) -> list[int]:
    return [min(size, total - i) for i in range(0, total, size)]


def measure_limits(spec: LimitSpec, workload: Workload) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    proc = context.Process(target=_limit_main, args=(spec, workload, out), daemon=True)
    proc.start()
    result = out.get(timeout=900)
    proc.join(30)
    return result
