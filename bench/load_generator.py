"""The load generator of `bench load`: what the clients send, and one run of N concurrent
clients against the gateway in a process of its own, with the CPU every Serve replica spends."""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import random
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

KINDS = ("text", "image", "product", "composed")
# Text queries in each search mode (`bench modes`); "text" above is the dense one.
MODE_KINDS = ("dense", "lexical", "hybrid")
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


def key_metadata(api_key: str) -> tuple[tuple[str, str], ...]:
    """The gRPC metadata that presents `api_key` to the gateway (none without a key)."""
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()


def _request(kind: str, n: int, workload: Workload, rng: random.Random):
    from shared.api.vitrine.search.v1 import search_pb2

    text = f"{rng.choice(PHRASES)} {n}"
    if kind == "text":  # dense: the in-process limit of `bench load` encodes text
        return search_pb2.SearchRequest(text=text, top_k=10, mode=search_pb2.SEARCH_MODE_DENSE)
    if kind in MODE_KINDS:
        mode = search_pb2.SearchMode.Value(f"SEARCH_MODE_{kind.upper()}")
        return search_pb2.SearchRequest(text=text, top_k=10, mode=mode)
    if kind == "image":
        return search_pb2.SearchRequest(image=rng.choice(workload.images), top_k=10)
    product = rng.choice(workload.product_ids)
    if kind == "product":
        return search_pb2.SearchRequest(product_id=product, top_k=10)
    return search_pb2.SearchRequest(
        product_id=product, text=f"{rng.choice(MODIFIERS)} {n}", top_k=10
    )


def _traceparent(rng: random.Random) -> tuple[str, str]:
    """A sampled W3C trace context: the gateway traces the query as part of the caller's trace."""
    return ("traceparent", f"00-{rng.getrandbits(128):032x}-{rng.getrandbits(64):016x}-01")


async def _drive(
    target: str,
    kind: str,
    clients: int,
    seconds: float,
    warmup_s: float,
    workload,
    api_key,
    trace_ratio: float = 0.0,
) -> tuple[list[float], Counter]:
    import grpc

    from shared.api.vitrine.search.v1 import search_pb2_grpc

    metadata = key_metadata(api_key)
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
                traced = rng.random() < trace_ratio
                sent = (*metadata, _traceparent(rng)) if traced else metadata
                t0 = time.perf_counter()
                try:
                    await stub.Search(request, timeout=30, metadata=sent)
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
    target: str,
    kind: str,
    clients: int,
    *,
    seconds: float,
    workload: Workload,
    api_key: str,
    trace_ratio: float = 0.0,
) -> LoadResult:
    """One load run in a fresh process; CPU of every Serve replica sampled over it. A share
    `trace_ratio` of the requests carry a sampled traceparent (`bench tracing`)."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    warmup = 1.0
    args = (target, kind, clients, seconds, warmup, workload, api_key, trace_ratio)
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


def collect_workload(target: str, api_key: str) -> Workload:
    """Product ids and their images, found by searching the catalog; images that cannot be read
    here are replaced by random JPEGs of the same size."""
    import grpc

    from shared.api.vitrine.search.v1 import search_pb2, search_pb2_grpc

    stub = search_pb2_grpc.SearchServiceStub(grpc.insecure_channel(target))
    metadata = key_metadata(api_key)
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
