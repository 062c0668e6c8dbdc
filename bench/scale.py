"""A million products in the embedded store: fp32 against each quantization of the engine.

1,000,000 clustered vectors of the served bundle's dimension (256, training/configs/myntra.yaml)
with catalog payloads (title, article type, colour, gender, year, price: the default indexed
fields) in Qdrant Edge, built once per quantization: memory, build time, top-10 p50/p99 and
recall@10 against exact search (numpy) with no filter, a 10% filter (a colour, independent of
the clusters) and a 1% filter (an article type). Quantized searches rescore with the original
vectors (shared/vectorstore/quantization.py). Then the same on real embeddings: every Myntra
photo of the team folder (labelled and unlabeled) embedded by the myntra bundle, searched by
the labelled products' titles, when both are there.

`VITRINE_BENCH_SCALE_POINTS` sets the size (1,000,000).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from tqdm.auto import tqdm

from bench.harness import Row, Section
from shared.types import Condition, Filter
from shared.vectorstore import Point, open_store
from shared.vectorstore.quantization import QUANTIZATIONS

POINTS = int(os.environ.get("VITRINE_BENCH_SCALE_POINTS", 1_000_000))
DIM, CLUSTERS, QUERIES, K = 256, 1000, 200, 10
COLOURS = ["Black", *(f"colour{i}" for i in range(39))]  # Black: 10% of products
TYPES = [f"type{i}" for i in range(100)]  # 1% each
GENDERS = ["Men", "Women", "Boys", "Girls", "Unisex"]
FIELDS = {"articleType": "keyword", "baseColour": "keyword", "gender": "keyword", "year": "integer"}
FILTERS = {
    "no filter": None,
    "10% filter": Filter(must=(Condition("baseColour", "Black"),)),
    "1% filter": Filter(must=(Condition("articleType", "type7"),)),
}
ROOT = Path(__file__).resolve().parents[1]
TEAM = ROOT.parent / "shared" / "data" / "myntra"


def _data(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    centres = rng.normal(size=(CLUSTERS, DIM)).astype(np.float32)
    vectors = centres[rng.integers(0, CLUSTERS, POINTS)]
    vectors += 0.6 * rng.normal(size=(POINTS, DIM)).astype(np.float32)
    queries = centres[rng.integers(0, CLUSTERS, QUERIES)]
    queries = queries + 0.6 * rng.normal(size=(QUERIES, DIM)).astype(np.float32)
    colour_p = np.full(len(COLOURS), 0.9 / (len(COLOURS) - 1))
    colour_p[0] = 0.1
    fields = {
        "baseColour": rng.choice(len(COLOURS), POINTS, p=colour_p),
        "articleType": rng.integers(0, len(TYPES), POINTS),
        "gender": rng.integers(0, len(GENDERS), POINTS),
    }
    return vectors, queries, fields


def _normalised(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def exact_top(vectors: np.ndarray, queries: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Row indices of each query's exact top K by cosine (among `mask`)."""
    unit, out = _normalised(vectors), []
    allowed = np.flatnonzero(mask) if mask is not None else None
    for q in _normalised(queries):
        scores = unit @ q if allowed is None else unit[allowed] @ q
        top = np.argpartition(-scores, K)[:K]
        top = top[np.argsort(-scores[top])]
        out.append(top if allowed is None else allowed[top])
    return np.array(out)


def _masks(fields: dict[str, np.ndarray]) -> dict[str, np.ndarray | None]:
    return {
        "no filter": None,
        "10% filter": fields["baseColour"] == 0,
        "1% filter": fields["articleType"] == 7,
    }


def _build(root: str, quantization: str, vectors, fields) -> tuple[object, float]:
    store = open_store(
        f"edge:{root}",
        model_version="scale",
        dim=DIM,
        indexed_fields=FIELDS,
        quantization=quantization,
    )
    t0 = time.perf_counter()
    for start in tqdm(range(0, len(vectors), 2000), desc=f"upsert ({quantization})", leave=False):
        store.upsert(
            [
                Point(
                    f"p{i}",
                    vectors[i],
                    {
                        "title": f"{COLOURS[fields['baseColour'][i]]} {TYPES[fields['articleType'][i]]}",
                        "baseColour": COLOURS[fields["baseColour"][i]],
                        "articleType": TYPES[fields["articleType"][i]],
                        "gender": GENDERS[fields["gender"][i]],
                        "year": 2010 + i % 10,
                        "price": float(100 + i % 900),
                    },
                )
                for i in range(start, min(len(vectors), start + 2000))
            ]
        )
    store.optimize()
    return store, time.perf_counter() - t0


def _measure(
    store, queries, truth: dict, flt_name: str, filters: dict
) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, recall@10) of single searches, 3 passes over the queries."""
    flt = filters[flt_name]
    times, found = [], 0
    for rep in range(3):
        for qi, q in enumerate(queries):
            t0 = time.perf_counter()
            hits = store.search(q, top_k=K, filter=flt)
            times.append(time.perf_counter() - t0)
            if rep == 0:
                got = {int(h.product_id[1:]) for h in hits}
                found += len(got & set(truth[flt_name][qi].tolist()))
    ms = np.array(times) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), found / (K * len(queries))


def _disk_mb(root: str) -> float:
    return sum(f.stat().st_size for f in Path(root).rglob("*") if f.is_file()) / 2**20


def _one(quantization: str, truth: dict) -> tuple:
    """In a process of its own (memory measured alone): the data again (same seed), one build
    and its measures: (build s, RSS growth MB, peak RSS growth MB, disk MB, {filter: measures})."""
    import resource

    vectors, queries, fields = _data(np.random.default_rng(0))
    rss0 = psutil.Process().memory_info().rss
    with tempfile.TemporaryDirectory(dir=os.environ.get("VITRINE_BENCH_TMP")) as root:
        store, build_s = _build(root, quantization, vectors, fields)
        measured = {name: _measure(store, queries, truth, name, FILTERS) for name in FILTERS}
        rss_mb = (psutil.Process().memory_info().rss - rss0) / 2**20
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0 / 2**20
        disk = _disk_mb(root)
        store.close()
    return build_s, rss_mb, peak_mb, disk, measured


def choose(results: dict) -> str:
    """The cheapest quantization (fewest bits a dimension) whose recall@10 is >= 0.95 with and
    without filters at a p50 within 2x fp32's; fp32 when none is."""
    base = results["none"][-1]
    for q in ("binary", "turbo4", "int8"):
        measured = results[q][-1]
        if all(measured[f][2] >= 0.95 and measured[f][0] <= 2 * base[f][0] for f in measured):
            return q
    return "none"


def run() -> Section:
    import concurrent.futures
    import multiprocessing

    rng = np.random.default_rng(0)
    vectors, queries, fields = _data(rng)
    truth = {name: exact_top(vectors, queries, m) for name, m in _masks(fields).items()}
    del vectors
    section = Section(
        title="A million products (embedded Qdrant Edge, quantization)",
        command=".venv/bin/python -m bench scale",
        description=(
            f"{POINTS:,} clustered {DIM}-d vectors with catalog payloads in one Qdrant Edge "
            "shard per quantization, each built in a process of its own (payload indexes "
            "before HNSW m=16, ef_construct=128; hnsw_ef=64; quantized vectors in RAM, the best "
            "oversampling x top-k rescored with the originals: int8 1.5x, binary 3x, turbo4 "
            f"2x); single-thread top-10 search over {QUERIES} queries x 3, recall@10 against "
            "exact numpy search with the same filter (10%: a colour independent of the "
            "clusters; 1%: an article type). Memory: the build process's RSS growth after the "
            "searches (and its peak); disk: the shard folder."
        ),
    )
    results = {}
    context = multiprocessing.get_context("spawn")
    for quantization in QUANTIZATIONS:
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            results[quantization] = pool.submit(_one, quantization, truth).result()
        print(quantization, results[quantization], flush=True)
    _rows(section, results)
    chosen = choose(results)
    section.rows.append(
        Row(
            f"chosen: {chosen}",
            "fp32",
            results["none"][1],
            results[chosen][1],
            "MB",
            "the cheapest with recall@10 >= 0.95 (all filters) at p50 <= 2x fp32",
        )
    )
    section.rows.extend(real_embeddings(chosen))
    return section


def _rows(section: Section, results: dict) -> None:
    base_build, base_rss, _, base_disk, base = results["none"]
    for q, (build_s, rss_mb, peak_mb, disk_mb, measured) in results.items():
        label = "fp32" if q == "none" else q
        section.rows.append(
            Row(f"{label}: build (upsert + HNSW)", "fp32", base_build, build_s, "s")
        )
        section.rows.append(
            Row(
                f"{label}: memory (RSS growth)",
                "fp32",
                base_rss,
                rss_mb,
                "MB",
                f"peak {peak_mb:,.0f} MB; disk {disk_mb:,.0f} MB (fp32 {base_disk:,.0f} MB)",
            )
        )
        for name, (p50_ms, p99_ms, recall) in measured.items():
            b50, _, brecall = base[name]
            section.rows.append(
                Row(
                    f"{label}: p50, {name}",
                    "fp32",
                    b50,
                    p50_ms,
                    "ms",
                    f"p99 {p99_ms:.2f} ms; recall@10 {recall:.3f} (fp32 {brecall:.3f})",
                )
            )


def real_embeddings(chosen: str) -> list[Row]:
    """Recall@10 of `chosen` against fp32 on real embeddings: every Myntra photo of the team
    folder (labelled and unlabeled) embedded by the myntra bundle, queried by the labelled
    products' titles; none when the team folder or the bundle is missing."""
    from shared.data.catalog import load_products
    from shared.models import encoders
    from training.evaluate import encode_in_batches
    from training.evaluate import open_image as load

    bundle = ROOT / "artifacts" / "bundles" / "myntra"
    if not (TEAM / "products.jsonl").is_file() or not (bundle / "manifest.json").is_file():
        print("real embeddings: no team folder or no artifacts/bundles/myntra; skipped")
        return []
    products = load_products(TEAM / "products.jsonl")
    photos = [p.image for p in products] + sorted((TEAM / "unlabeled").rglob("*.jpg"))
    image, text = encoders.load(bundle, "image"), encoders.load(bundle, "text")
    gallery = encode_in_batches(
        lambda chunk: image.encode([load(p) for p in chunk]), photos, batch_size=16, desc="photos"
    )
    titles = [p.title for p in products[:QUERIES]]
    queries = encode_in_batches(text.encode, titles, batch_size=32)
    truth = exact_top(gallery, queries, None)
    rows = []
    for q in ("none", chosen) if chosen != "none" else ("none",):
        with tempfile.TemporaryDirectory() as root:
            store = open_store(
                f"edge:{root}",
                model_version="real",
                dim=gallery.shape[1],
                indexed_fields={},
                quantization=q,
            )
            store.upsert([Point(f"p{i}", v) for i, v in enumerate(gallery)])
            store.optimize()
            found = sum(
                len({int(h.product_id[1:]) for h in store.search(v, top_k=K)} & set(t.tolist()))
                for v, t in zip(queries, truth, strict=True)
            )
            store.close()
        rows.append(found / (K * len(queries)))
    label = "fp32" if chosen == "none" else chosen
    return [
        Row(
            f"real embeddings: {label} recall@10",
            "fp32",
            rows[0],
            rows[-1],
            "",
            f"{len(photos):,} Myntra photos (myntra bundle), {len(titles)} title queries",
        )
    ]
