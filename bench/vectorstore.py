"""Embedded vector search (Qdrant Edge) at catalog scale: HNSW against exact search.

100k clustered 256-d vectors; a keyword payload field with 10 values (10% selectivity per value)
assigned independently of the clusters, the hard case for filtered HNSW. Recall@10 is measured
against exact search with the same filter.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
from tqdm.auto import tqdm

from bench.harness import Row, Section, p50, time_calls
from shared.types import Condition, Filter
from shared.vectorstore import Point, open_store

POINTS = int(os.environ.get("VITRINE_BENCH_POINTS", 100_000))
DIM, CLUSTERS, QUERIES, K = 256, 200, 200, 10


def _data(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    centres = rng.normal(size=(CLUSTERS, DIM)).astype(np.float32)
    labels = rng.integers(0, CLUSTERS, POINTS)
    vectors = centres[labels] + 0.6 * rng.normal(size=(POINTS, DIM)).astype(np.float32)
    queries = centres[rng.integers(0, CLUSTERS, QUERIES)] + 0.6 * rng.normal(
        size=(QUERIES, DIM)
    ).astype(np.float32)
    return vectors, queries


def _recall(store, queries: np.ndarray, flt: Filter | None) -> float:
    found = 0
    for q in queries:
        exact = {h.product_id for h in store.search(q, top_k=K, filter=flt, exact=True)}
        approx = {h.product_id for h in store.search(q, top_k=K, filter=flt)}
        found += len(exact & approx)
    return found / (K * len(queries))


def _latency(store, queries: np.ndarray, flt: Filter | None, exact: bool) -> float:
    it = iter(np.tile(queries, (3, 1)))
    return p50(
        time_calls(lambda: store.search(next(it), top_k=K, filter=flt, exact=exact), repeat=400)
    )


def run() -> Section:
    rng = np.random.default_rng(0)
    vectors, queries = _data(rng)
    section = Section(
        title="Vector search (embedded Qdrant Edge)",
        command=".venv/bin/python -m bench vectorstore",
        description=(
            f"{POINTS:,} clustered {DIM}-d vectors in the embedded store (payload indexes created "
            "before the HNSW build, m=16, ef_construct=128, hnsw_ef=64); top-10 search p50 and "
            "recall@10 against exact search with the same filter; the filter keeps one of 10 "
            "values of a keyword field, assigned independently of the clusters (10% selectivity)."
        ),
    )
    with tempfile.TemporaryDirectory() as root:
        store = open_store(
            f"edge:{root}", model_version="bench", dim=DIM, indexed_fields={"shard": "keyword"}
        )
        t0 = time.perf_counter()
        for start in tqdm(range(0, POINTS, 2000), desc="upsert", unit="batch", leave=False):
            store.upsert(
                [
                    Point(f"p{i}", vectors[i], {"shard": f"s{i % 10}"})
                    for i in range(start, min(POINTS, start + 2000))
                ]
            )
        upsert_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        store.optimize()
        optimize_s = time.perf_counter() - t0
        print(f"upsert {upsert_s:.1f} s, optimize {optimize_s:.1f} s, {store.info()}")
        for name, flt in [
            ("no filter", None),
            ("10% filter", Filter(must=(Condition("shard", "s3"),))),
        ]:
            exact_ms = _latency(store, queries, flt, exact=True)
            hnsw_ms = _latency(store, queries, flt, exact=False)
            recall = _recall(store, queries, flt)
            section.rows.append(
                Row(f"HNSW search p50, {name}", "exact search", exact_ms, hnsw_ms, "ms")
            )
            section.rows.append(
                Row(f"HNSW recall@10, {name}", "exact search", 1.0, recall, "", "higher is better")
            )
        store.close()
    section.rows.append(
        Row("build: upsert + HNSW optimize", "upsert alone", upsert_s, upsert_s + optimize_s, "s")
    )
    return section
