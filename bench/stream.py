"""A long stream: 20,000 catalog events through two ingestion workers on two partitions while
queries run.

The whole platform of deploy/serve/vitrine.yaml on a local Ray (2 CPUs) with the packaged image
backbone (EfficientNet-Lite0 224 px, untrained heads), the local Tansu broker, and two worker
processes as `vitrine ingest` runs them, in one consumer group on a two-partition topic. The
events (the team folder's Myntra photos, reused under new ids; random JPEGs without it) are
published as a backlog, then both workers start while two clients send text queries to the
gateway. Measured: the ingestion rate (first to last commit over both workers) against the image
encoder's own rate, fed directly in the same run; the query p99 during ingestion against the same
query load on the idle platform; and at the end, every event's point read back with its payload.

`VITRINE_BENCH_STREAM_EVENTS` sets the size (20,000).
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
from pathlib import Path

from bench.harness import Row, Section, TextQueries, p50, p99, start_ray
from bench.ingestion import LAST_COMMIT, UPSERTED, _clients, _encoder_throughput, _images, _Worker
from bench.serving import _bundle, platform_config
from operations.broker import LocalBroker
from operations.local_ray import stop_local_ray
from operations.ports import free_port
from shared.serving.clients import shared_loop
from shared.streaming.events import ensure_topics, publish
from shared.types import CatalogEvent, Op

EVENTS = int(os.environ.get("VITRINE_BENCH_STREAM_EVENTS", 20_000))
QUERY_CLIENTS, IDLE_S = 2, 20.0
TOPIC = "stream"


def _events(photos: list[bytes]):
    now = dt.datetime.now(dt.UTC)
    for i in range(EVENTS):
        yield CatalogEvent(
            f"s{i}",
            Op.UPSERT,
            image_bytes=photos[i % len(photos)],
            title=f"stream item {i}",
            attributes={"batch": str(i % 7)},
            event_time=now,
        )


def _drain(broker: LocalBroker, proxy: str, gateway: str, root: Path) -> tuple[float, TextQueries]:
    """Both workers drain the backlog while queries run; (events/s first to last commit, the
    queries)."""
    workers = [
        _Worker(broker, proxy, root / f"worker{i}.log", catalog_topic=TOPIC, consumer_group=TOPIC)
        for i in range(2)
    ]
    try:
        with TextQueries(gateway, QUERY_CLIENTS) as queries:
            firsts: list[dict] = [{}, {}]
            while not all(firsts):  # each worker's first commit, as soon as it is seen
                for i, w in enumerate(workers):
                    if not firsts[i] and (m := w.metrics()).get(UPSERTED, 0) > 0:
                        firsts[i] = m
                time.sleep(0.05)
            deadline = time.monotonic() + 7200
            while True:
                lasts = [w.metrics() for w in workers]
                if all(lasts) and sum(m[UPSERTED] for m in lasts) >= EVENTS:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not drained: {[m.get(UPSERTED) for m in lasts]}")
                time.sleep(0.5)
    finally:
        for w in workers:
            w.stop()
    start = min(m[LAST_COMMIT] for m in firsts)
    end = max(m[LAST_COMMIT] for m in lasts)
    done = sum(m[UPSERTED] for m in lasts) - sum(m[UPSERTED] for m in firsts)
    return done / (end - start), queries


def _check_points(store) -> tuple[int, int]:
    """(points found, points with the event's payload) over every event's product id."""
    run, found, right = shared_loop().run, 0, 0
    for start in range(0, EVENTS, 500):
        ids = [f"s{i}" for i in range(start, min(EVENTS, start + 500))]
        for p in run(store.retrieve(ids, timeout_s=120)):
            found += 1
            i = int(p.product_id[1:])
            right += p.payload.get("title") == f"stream item {i}" and p.payload.get("batch") == str(
                i % 7
            )
    return found, right


def run() -> Section:
    from operations.serve import deploy

    section = Section(
        title="A long stream (two workers, queries running)",
        command=".venv/bin/python -m bench stream",
        description=__doc__.split("\n\n")[1].replace("\n", " ") + f" {EVENTS:,} events.",
    )
    photos = _images(1536)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bundle = _bundle(root)
        start_ray()
        try:
            gateway = f"127.0.0.1:{free_port()}"
            deploy(platform_config(bundle, root, int(gateway.rsplit(":", 1)[1])), timeout_s=600)
            from operations.indexing import proxy_address

            proxy = proxy_address()
            encoder, store = _clients(proxy)
            _encoder_throughput(encoder, photos[:64], concurrency=2)  # warm-up
            direct = max(_encoder_throughput(encoder, photos, concurrency=c) for c in (1, 2))
            with TextQueries(gateway, QUERY_CLIENTS) as idle:
                time.sleep(IDLE_S)
            with LocalBroker() as broker:
                ensure_topics(broker.bootstrap_servers, {TOPIC: 2})
                publish(
                    _events(photos),
                    bootstrap_servers=broker.bootstrap_servers,
                    topic=TOPIC,
                    total=EVENTS,
                )
                rate, busy = _drain(broker, proxy, gateway, root)
            found, right = _check_points(store)
        finally:
            stop_local_ray()
    section.rows += _rows(direct, rate, idle, busy, found, right)
    return section


def _rows(direct: float, rate: float, idle: TextQueries, busy: TextQueries, found: int, right: int):
    return [
        Row(
            "ingestion rate, two workers",
            "image encoder fed directly (best of 1 or 2 callers)",
            direct,
            rate,
            "images/s",
            f"{EVENTS:,} events on 2 partitions, first to last commit, {QUERY_CLIENTS} query "
            "clients running",
        ),
        Row(
            "query p99 during ingestion",
            "the same queries, platform idle",
            p99(idle.latencies),
            p99(busy.latencies),
            "ms",
            f"p50 {p50(busy.latencies):.1f} ms (idle {p50(idle.latencies):.1f} ms); "
            f"{len(busy.latencies):,} queries, {len(busy.errors)} errors (idle "
            f"{len(idle.errors)})",
        ),
        Row(
            "points present with their payload",
            "events published",
            EVENTS,
            right,
            "points",
            f"{found:,} points found",
        ),
    ]
