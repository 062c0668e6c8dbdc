"""Serving under concurrent load: the running platform's query throughput and latency at 1, 8, 32
and 64 concurrent clients, as a ratio of the in-process limit of the same work measured in the same
run.

Needs a running platform (`make run`); `python -m bench load` (or `vitrine bench load`) drives its
gateway. Each client is a coroutine with a gRPC channel of its own, all in one load-generator
process whose CPU use is reported. The limit runs in a process of its own while the platform is
idle: the served bundle, torch threads equal to the encoder replica's CPU budget, batches of the
deployment's max_batch_size, an embedded Qdrant Edge store holding as many points as the served
catalog. Platform and limit runs alternate for several rounds, so drift in this machine's speed
hits both; each figure is the median over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import multiprocessing
import os
import random
import resource
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.harness import Row, Section, p50, p99

KINDS = ("text", "image", "product", "composed")
CLIENTS = (1, 8, 32, 64)
PHRASES = (
    "blue striped shirt",
    "black running shoes for men",
    "red checked shirt",
    "white sneakers",
    "navy blue kurta for women",
    "green summer dress",
    "grey hoodie",
    "brown leather belt",
)
MODIFIERS = ("in black", "in red", "but blue", "with stripes", "in white", "darker")


@dataclass
class Workload:
    """What the clients send: product ids in the catalog and encoded images to query with."""

    product_ids: list[str]
    images: list[bytes]
    payload: dict  # a served product's payload: the limit's store holds points like it


@dataclass
class LoadResult:
    kind: str
    clients: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    generator_cpu_s: float = 0.0
    replica_cpu: dict[str, float] = field(default_factory=dict)  # cores per Serve replica

    @property
    def qps(self) -> float:
        return len(self.latencies_ms) / self.seconds

    @property
    def generator_cores(self) -> float:
        return self.generator_cpu_s / self.seconds


def _request(kind: str, n: int, workload: Workload, rng: random.Random):
    from shared.api.vitrine.search.v1 import search_pb2

    text = f"{rng.choice(PHRASES)} {n}"
    if kind == "text":
        return search_pb2.SearchRequest(text=text, top_k=10)
    if kind == "image":
        return search_pb2.SearchRequest(image=rng.choice(workload.images), top_k=10)
    product = rng.choice(workload.product_ids)
    if kind == "product":
        return search_pb2.SearchRequest(product_id=product, top_k=10)
    return search_pb2.SearchRequest(
        product_id=product, text=f"{rng.choice(MODIFIERS)} {n}", top_k=10
    )


async def _drive(
    target: str, kind: str, clients: int, seconds: float, warmup_s: float, workload, api_key
) -> tuple[list[float], Counter]:
    import grpc

    from shared.api.vitrine.search.v1 import search_pb2_grpc

    metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
    start = time.monotonic()
    record_from, stop_at = start + warmup_s, start + warmup_s + seconds
    latencies: list[float] = []
    errors: Counter = Counter()

    async def client(i: int) -> None:
        rng = random.Random(i)
        async with grpc.aio.insecure_channel(target) as channel:
            stub = search_pb2_grpc.SearchServiceStub(channel)
            n = 0
            while (now := time.monotonic()) < stop_at:
                request = _request(kind, n * clients + i, workload, rng)
                n += 1
                t0 = time.perf_counter()
                try:
                    await stub.Search(request, timeout=30, metadata=metadata)
                    ok = True
                except grpc.aio.AioRpcError as e:
                    ok = False
                    if now >= record_from:
                        errors[e.code().name] += 1
                if ok and now >= record_from and time.monotonic() <= stop_at:
                    latencies.append((time.perf_counter() - t0) * 1000)

    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies, errors


def _generator_main(args: tuple, out) -> None:
    """The load generator's process: drives the gateway, reports latencies and its own CPU."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    latencies, errors = asyncio.run(_drive(*args))
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out.put((latencies, dict(errors), cpu))


def _replica_processes() -> dict[str, object]:
    import psutil

    found = {}
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if cmd.startswith("ray::ServeReplica:"):
            found[cmd.split(":")[3]] = proc
    return found


def run_load(
    target: str, kind: str, clients: int, *, seconds: float, workload: Workload, api_key: str
) -> LoadResult:
    """One load run in a fresh process; CPU of every Serve replica sampled over it."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    warmup = 1.0
    args = (target, kind, clients, seconds, warmup, workload, api_key)
    proc = context.Process(target=_generator_main, args=(args, out), daemon=True)
    replicas = _replica_processes()
    proc.start()
    time.sleep(warmup + 0.5)  # the process starts, then warms up
    cpu0 = {name: sum(p.cpu_times()[:2]) for name, p in replicas.items()}
    t0 = time.monotonic()
    latencies, errors, cpu = out.get(timeout=seconds + 120)
    elapsed = time.monotonic() - t0
    proc.join(30)
    replica_cpu = {}
    for name, p in replicas.items():
        try:
            replica_cpu[name] = (sum(p.cpu_times()[:2]) - cpu0[name]) / elapsed
        except Exception:  # a replica that went away
            continue
    return LoadResult(kind, clients, seconds, latencies, Counter(errors), cpu, replica_cpu)


# The in-process limit ------------------------------------------------------------------------


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


def _measure_limits(spec: LimitSpec, workload: Workload) -> dict[str, float]:
    """Queries per second each kind reaches in one process with the platform's CPU budget, and
    the single-query stage costs in milliseconds ("stage:text" etc.)."""
    from shared.models import encoders
    from shared.models.bundle import Manifest
    from shared.models.transforms import decode_image
    from shared.vectorstore import Point, open_store

    bundle = Path(spec.bundle)
    dim = Manifest.read(bundle).embed_dim
    kw = {"runtime": spec.runtime, "threads": spec.threads}
    text_encoder = encoders.load(bundle, "text", **kw)
    image_encoder = encoders.load(bundle, "image", **kw)
    fusion = encoders.load(bundle, "fusion", **kw)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(spec.points, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"edge:{tmp}/store", model_version="limit", dim=dim, indexed_fields={})
        store.upsert([Point(f"p{i}", v, workload.payload) for i, v in enumerate(vectors)])
        store.optimize()

        def texts(batch: list[str]) -> np.ndarray:
            return text_encoder.encode(batch)

        def images(batch: list[bytes]) -> np.ndarray:
            decoded = [decode_image(b, max_bytes=2**24, max_pixels=40_000_000) for b in batch]
            return image_encoder.encode(decoded)

        def fuse(image: np.ndarray, text: np.ndarray) -> np.ndarray:
            return fusion.fuse(image, text)

        def search(queries: np.ndarray) -> None:
            for q in queries:
                store.search(q, top_k=10)

        def retrieve(n: int) -> np.ndarray:
            ids = [f"p{i}" for i in rng.integers(0, spec.points, n)]
            return np.stack([p.vector for p in store.retrieve(ids, with_vectors=True)])

        def text_batch(b: int, n: int) -> list[str]:
            return [f"{PHRASES[(n + i) % len(PHRASES)]} {n + i}" for i in range(b)]

        bt, bi, bf = spec.batch["text"], spec.batch["image"], spec.batch["fusion"]
        pipelines = {
            "text": (bt, lambda n: search(texts(text_batch(bt, n)))),
            "image": (bi, lambda n: search(images(workload.images[:bi]))),
            "product": (bt, lambda n: search(retrieve(bt))),
            "composed": (
                bt,
                lambda n: search(
                    np.concatenate(
                        [fuse(retrieve(c), texts(text_batch(c, n))) for c in _chunks(bt, bf)]
                    )
                ),
            ),
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
        one = np.stack([vectors[0]])
        stage = {
            "stage:text": lambda: texts(["blue striped shirt 1"]),
            "stage:image": lambda: images(workload.images[:1]),
            "stage:fusion": lambda: fuse(one, one),
            "stage:search": lambda: store.search(vectors[1], top_k=10),
            "stage:retrieve": lambda: retrieve(1),
        }
        for name, fn in stage.items():
            for _ in range(5):
                fn()
            samples = []
            for _ in range(100 if name != "stage:image" else 20):
                t = time.perf_counter()
                fn()
                samples.append((time.perf_counter() - t) * 1000)
            limits[name] = statistics.median(samples)
        store.close()
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


# The platform ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    """What the running platform serves, read from its replicas."""

    model_version: str
    points: int
    threads: int  # torch threads of the text encoder replica (its CPU budget)
    runtime: str  # the text encoder replica's runtime
    batch: dict[str, int]


def served_config() -> Served:
    """Asks the running replicas (through Serve handles on the cluster `make run` started)."""
    from ray import serve

    from operations.serve import connect_ray
    from shared.serving.endpoints import release_handles

    connect_ray()

    async def ask() -> list[dict]:
        infos = [
            await serve.get_deployment_handle(d, a).info.remote()
            for d, a in (
                ("TextEncoder", "text-encoder"),
                ("ImageEncoder", "image-encoder"),
                ("Fusion", "fusion"),
                ("VectorStore", "vector-store"),
            )
        ]
        await release_handles()
        return infos

    text, image, fusion, store = asyncio.run(ask())
    return Served(
        model_version=store["model_version"],
        points=store["points"],
        threads=text["torch_threads"],
        runtime=text["runtime"].split()[0],
        batch={
            "text": text["batching"]["max_batch_size"],
            "image": image["batching"]["max_batch_size"],
            "fusion": fusion["batching"]["max_batch_size"],
        },
    )


def collect_workload(target: str, api_key: str) -> Workload:
    """Product ids and their images, found by searching the catalog; images that cannot be read
    here are replaced by random JPEGs of the same size."""
    import grpc

    from shared.api.vitrine.search.v1 import search_pb2, search_pb2_grpc

    stub = search_pb2_grpc.SearchServiceStub(grpc.insecure_channel(target))
    metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
    from google.protobuf import json_format

    ids, images, payload = [], [], {}
    for phrase in PHRASES:
        response = stub.Search(
            search_pb2.SearchRequest(text=phrase, top_k=50), timeout=30, metadata=metadata
        )
        for hit in response.hits:
            if hit.product_id in ids:
                continue
            ids.append(hit.product_id)
            payload = payload or json_format.MessageToDict(hit.payload)
            uri = hit.payload.fields["image_uri"].string_value
            if uri.startswith("file://") and Path(uri[7:]).is_file() and len(images) < 64:
                images.append(Path(uri[7:]).read_bytes())
    while len(images) < 16:
        images.append(_random_jpeg(len(images)))
    if not ids:
        raise RuntimeError(f"the catalog behind {target} is empty: publish a catalog first")
    return Workload(ids, images, payload)


def _random_jpeg(seed: int) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG")
    return buf.getvalue()


# The report ------------------------------------------------------------------------------------


def _median_result(runs: list[LoadResult]) -> LoadResult:
    """The round with the median throughput (its latencies and CPU stay consistent)."""
    return sorted(runs, key=lambda r: r.qps)[len(runs) // 2]


def build_section(
    results: dict[tuple[str, int], list[LoadResult]],
    limits: list[dict[str, float]],
    served: Served,
    *,
    kinds: tuple[str, ...],
    clients: tuple[int, ...],
    seconds: float,
) -> Section:
    limit = {k: statistics.median(r[k] for r in limits) for k in limits[0]}
    section = Section(
        title="Serving under concurrent load",
        command=".venv/bin/python -m bench load  (against `make run`)",
        description=__doc__.split("\n\n")[0].replace("\n", " ")
        + f" {len(limits)} rounds of {seconds:.0f} s per point; limit: {served.runtime}, "
        f"{served.threads} thread(s), batches of {served.batch['text']} texts / {served.batch['image']} images / "
        f"{served.batch['fusion']} fusion pairs, {served.points} points.",
    )
    for kind in kinds:
        for n in clients:
            r = _median_result(results[(kind, n)])
            lat = r.latencies_ms or [float("nan")]
            busiest = sorted(r.replica_cpu.items(), key=lambda kv: -kv[1])[:3]
            section.rows.append(
                Row(
                    f"{kind} queries, {n} client{'s' if n > 1 else ''}",
                    f"in-process limit ({kind})",
                    limit[kind],
                    r.qps,
                    "q/s",
                    f"p50 {p50(lat):.1f} ms, p99 {p99(lat):.1f} ms, errors "
                    f"{sum(r.errors.values())}; load generator {r.generator_cores:.2f} cores; "
                    + ", ".join(f"{name} {cores:.2f}" for name, cores in busiest),
                )
            )
    for kind in kinds:
        one = _median_result(results[(kind, clients[0])])
        many = _median_result(results[(kind, 32 if 32 in clients else clients[-1])])
        section.rows.append(
            Row(
                f"{kind}: throughput at {many.clients} clients vs 1",
                "1 client",
                one.qps,
                many.qps,
                "q/s",
                f"p99/p50 at {many.clients} clients: "
                f"{p99(many.latencies_ms) / p50(many.latencies_ms):.2f}",
            )
        )
    stages = {  # what one query of each kind computes, in process
        "text": ("stage:text", "stage:search"),
        "image": ("stage:image", "stage:search"),
        "product": ("stage:retrieve", "stage:search"),
    }
    floors = {kind: sum(limit[s] for s in stages[kind]) for kind in kinds if kind in stages}
    if "composed" in kinds:  # retrieval and text encoding run in parallel, then fusion, search
        floors["composed"] = (
            max(limit["stage:text"], limit["stage:retrieve"])
            + limit["stage:fusion"]
            + limit["stage:search"]
        )
    for kind in kinds:
        one = _median_result(results[(kind, clients[0])])
        section.rows.append(
            Row(
                f"{kind}: one client's p50",
                "in-process stage costs (sum)",
                floors[kind],
                p50(one.latencies_ms),
                "ms",
                f"overhead {p50(one.latencies_ms) - floors[kind]:+.1f} ms (goal <= +3 ms)",
            )
        )
    return section


def plot(results, limits, *, kinds, clients, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    limit = {k: statistics.median(r[k] for r in limits) for k in kinds}
    fig, axes = plt.subplots(1, len(kinds), figsize=(4 * len(kinds), 3.4), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        qps = [_median_result(results[(kind, n)]).qps for n in clients]
        ax.plot(clients, qps, "o-", label="served")
        ax.axhline(limit[kind], color="grey", linestyle="--", label="in-process limit")
        ax.set_xscale("log", base=2)
        ax.set_xticks(clients, [str(n) for n in clients])
        ax.set_ylim(bottom=0)
        ax.set_title(f"{kind} queries")
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("queries/s")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench load", description=__doc__)
    port = os.environ.get("VITRINE_GATEWAY_GRPC_PORT", "9000")
    p.add_argument("--gateway", default=f"127.0.0.1:{port}", help="the gateway's gRPC address")
    p.add_argument("--bundle", default=os.environ.get("VITRINE_BUNDLE_PATH"))
    p.add_argument("--kinds", default=",".join(KINDS))
    p.add_argument("--clients", default=",".join(map(str, CLIENTS)))
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--limit-seconds", type=float, default=5.0)
    return p.parse_args(argv)


def _resolve_bundle(path: str | None, model_version: str) -> str:
    from shared.models.bundle import Manifest
    from shared.serving.runtime import resolve_bundle

    bundle = resolve_bundle(path)
    found = Manifest.read(bundle).bundle_id
    if found != model_version:
        raise SystemExit(
            f"bench load: {bundle} holds {found}, the platform serves {model_version}: "
            "pass the served bundle with --bundle (or VITRINE_BUNDLE_PATH)"
        )
    return str(bundle)


def run(argv: list[str] | None = None) -> Section:
    from tqdm.auto import tqdm

    args = _parse(argv)
    kinds = tuple(args.kinds.split(","))
    clients = tuple(int(c) for c in args.clients.split(","))
    api_key = os.environ.get("VITRINE_API_KEY", "")
    served = served_config()
    spec = LimitSpec(
        bundle=_resolve_bundle(args.bundle, served.model_version),
        points=max(served.points, 1),
        threads=served.threads,
        runtime=served.runtime,
        batch=served.batch,
        seconds=args.limit_seconds,
    )
    workload = collect_workload(args.gateway, api_key)
    results: dict[tuple[str, int], list[LoadResult]] = {(k, n): [] for k in kinds for n in clients}
    limits = []
    steps = args.rounds * (1 + len(kinds) * len(clients))
    with tqdm(total=steps, desc="bench load", unit="run") as bar:
        for round_ in range(args.rounds):
            bar.set_postfix_str(f"round {round_ + 1}: in-process limit")
            limits.append(measure_limits(spec, workload))
            bar.update()
            for kind in kinds:
                for n in clients:
                    bar.set_postfix_str(f"round {round_ + 1}: {kind} x{n}")
                    result = run_load(
                        args.gateway,
                        kind,
                        n,
                        seconds=args.seconds,
                        workload=workload,
                        api_key=api_key,
                    )
                    results[(kind, n)].append(result)
                    bar.update()
    section = build_section(
        results, limits, served, kinds=kinds, clients=clients, seconds=args.seconds
    )
    image = Path(__file__).resolve().parent.parent / "docs" / "images" / "bench-load.png"
    plot(results, limits, kinds=kinds, clients=clients, path=image)
    section.description += " Plot: [docs/images/bench-load.png](images/bench-load.png)."
    return section


if __name__ == "__main__":
    print(run().to_markdown())
