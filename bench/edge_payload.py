"""What a search costs in the embedded Qdrant Edge engine with and without payloads (not a
`python -m bench` benchmark: a probe behind docs/BENCHMARKS.md, "Where the time went").

    .venv/bin/python bench/edge_payload.py [POINTS] [DIM]

Writes POINTS products (default 120 with 64-d int8 vectors, as `make run`'s demo catalog) with a
title, five attributes and a 3 KB thumbnail to a temporary shard, then times one batch of 32
nearest-neighbour queries asked three ways: no payload, the product id only (what the store asks
for a ranking it pages itself), and the whole payload (a result page); then the store's own
`search_batch` of the same 32 queries with its payload cache and without it. Wall and CPU time
per batch, median of 5 rounds of 100 batches; the engine runs searches on threads of its own,
so CPU can exceed wall.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import qdrant_edge as qe  # noqa: E402

from shared.vectorstore import Point, product_payload  # noqa: E402
from shared.vectorstore.base import PointQuery  # noqa: E402
from shared.vectorstore.edge import EdgeStore, payload_selector  # noqa: E402
from shared.vectorstore.payload_cache import PayloadCache  # noqa: E402


def _timed(fn, n: int = 100) -> tuple[float, float]:
    fn()
    rounds = []
    for _ in range(5):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            fn()
        rounds.append(((time.perf_counter() - wall) / n, (time.process_time() - cpu) / n))
    return statistics.median(r[0] for r in rounds), statistics.median(r[1] for r in rounds)


ATTRIBUTES = {k: "value" for k in ("gender", "articleType", "baseColour", "pattern", "sleeve")}
THUMBNAIL = "data:image/jpeg;base64," + "A" * 3000  # a 128-px JPEG thumbnail's size


def _unit(rng, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _fill(store: EdgeStore, vectors: np.ndarray) -> None:
    for start in range(0, len(vectors), 256):
        store.upsert(
            [
                Point(
                    f"p{i}",
                    vectors[i],
                    product_payload(f"title {i}", ATTRIBUTES, thumbnail=THUMBNAIL),
                )
                for i in range(start, min(len(vectors), start + 256))
            ]
        )


def _engine_rows(store: EdgeStore, queries: np.ndarray) -> None:
    shard = store._open_shard  # noqa: SLF001 -- the engine itself, not the store's wrapper
    for name, selector in (
        ("no payload", False),
        ("product id only", payload_selector(False)),
        ("whole payload", True),
    ):
        requests = [
            qe.QueryRequest(limit=10, query=qe.Query.Nearest(q.tolist()), with_payload=selector)
            for q in queries
        ]
        wall, cpu = _timed(lambda r=requests: shard.query_batch(qe.QueryBatchRequest(r)))
        print(f"{name:>16}: {1000 * wall:6.2f} ms wall, {1000 * cpu:6.2f} ms CPU per batch")


def main() -> None:
    points = int(sys.argv[1]) if len(sys.argv) > 1 else 120
    dim = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        store = EdgeStore(tmp, "products", dim=dim, indexed_fields={}, quantization="int8")
        _fill(store, _unit(rng, points, dim))
        queries = _unit(rng, 32, dim)
        print(f"{points} points, {dim}-d int8, 32 queries of top 10 a batch, {os.cpu_count()} CPUs")
        _engine_rows(store, queries)
        # The store's own search_batch (hits with payloads), with its payload cache and without.
        asked = [PointQuery(q, top_k=10) for q in queries]
        cached_wall, cached_cpu = _timed(lambda: store.search_batch(asked))
        store._payloads = PayloadCache(0)  # noqa: SLF001
        wall, cpu = _timed(lambda: store.search_batch(asked))
        print(
            f"EdgeStore.search_batch, payloads from the engine: {1000 * wall:.2f} ms wall, "
            f"{1000 * cpu:.2f} ms CPU; from its cache: {1000 * cached_wall:.2f} ms wall, "
            f"{1000 * cached_cpu:.2f} ms CPU ({cpu / cached_cpu:.1f}x less CPU)"
        )
        store.close()


if __name__ == "__main__":
    main()
