"""Faults injected into the running platform: worker SIGKILLs (at random points, and between a
store write and its offset commit), a vector-store partition, an encoder replica killed under
queries, a broker restart, and the gateway under concurrent load. (The gateway's limits and
degraded modes: test_limits_and_degraded.py.)

Sizes scale with $VITRINE_CHAOS_* (`make chaos` runs the acceptance sizes); each test writes its
numbers to $VITRINE_RELIABILITY_REPORT when set (docs/RELIABILITY.md). Every test leaves the
platform serving.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import threading
import time

import grpc
import numpy as np
import pytest

from operations.broker import LocalBroker
from operations.ports import free_port
from shared.api.vitrine.search.v1 import search_pb2 as pb
from shared.api.vitrine.search.v1 import search_pb2_grpc as pb_grpc
from shared.serving.endpoints import grpc_targets_sync
from shared.streaming.events import committed_behind, ensure_topics, product_events, publish
from tests.support.fuzzing import Tally, scale
from tests.support.platform import wait_serving
from tests.support.tcp_relay import TcpRelay
from tests.support.tiny import write_catalog
from tests.support.workers import (
    WorkerProcess,
    dead_letters,
    payloads,
    present,
    store_count,
    until,
    worker_settings,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def broker():
    with LocalBroker() as b:
        yield b


def _publish(broker, catalog, topic: str):
    return publish(
        product_events(catalog),
        bootstrap_servers=broker.bootstrap_servers,
        topic=topic,
        progress=False,
    )


def test_sigkill_at_random_points_loses_and_duplicates_nothing(platform, broker, tmp_path):
    n, kills = scale("chaos_items", 500), scale("chaos_kills", 3)
    topic, group = "chaos-kill", "chaos-kill"
    settings = worker_settings(broker, topic, group, batch_size=32, thumbnail_px=0)
    ids = [f"ck{i}" for i in range(n)]
    before = store_count()
    ensure_topics(broker.bootstrap_servers, {topic: 4, f"{topic}.dlq": 1})
    published = _publish(broker, write_catalog(tmp_path / "c", n=n, prefix="ck"), topic)
    # Each kill lands once this many products are in the store (exact, and replays of an
    # uncommitted batch do not count twice).
    points = sorted(random.Random(n).sample(range(1, n), kills))
    handled = 0
    for i, point in enumerate(points):
        worker = WorkerProcess(tmp_path / f"worker{i}.log", **settings)
        until(
            lambda p=point: store_count() - before >= p,
            timeout_s=600,
            what=f"kill point {point}",
            workers=[worker],
        )
        upserted = worker.upserted()
        assert worker.stop(signal.SIGKILL) == -signal.SIGKILL
        handled += upserted
    last = WorkerProcess(tmp_path / "last.log", **settings)
    try:
        # Up first: the stream may already be committed, and a worker stopped while it still
        # imports dies of the SIGTERM instead of stopping cleanly.
        until(lambda: bool(last.metrics()), timeout_s=120, what="the last worker", workers=[last])
        until(
            lambda: committed_behind(broker.bootstrap_servers, group, published.next_offsets) == 0,
            timeout_s=900,
            what="the last worker to commit the whole stream",
            workers=[last],
        )
        handled += last.upserted()
    finally:
        assert last.stop() == 0, last.output()
    lost = set(ids) - present(ids)
    duplicated = store_count() - before - (n - len(lost))
    Tally("ingestion worker SIGKILL").write(
        items=n, kills=kills, kill_points=points, lost=len(lost), duplicated=duplicated,
        upserts_counted=handled,
    )  # fmt: skip
    assert not lost, f"{len(lost)} lost, e.g. {sorted(lost)[:5]}"
    assert duplicated == 0
    assert dead_letters(broker.bootstrap_servers, f"{topic}.dlq") == []


def test_sigkill_between_store_write_and_commit_replays_exactly(platform, broker, tmp_path):
    """A worker held inside its first offset commit (tests/support/worker_held_at_commit.py)
    has written its batch to the store and committed nothing; it is SIGKILLed there. A fresh
    worker replays the batch: every product once (the store grows by exactly n), each with its
    own event's title and attributes."""
    n = 24
    topic, group = "chaos-precommit", "chaos-precommit"
    settings = worker_settings(broker, topic, group, batch_size=n, thumbnail_px=0)
    catalog = write_catalog(tmp_path / "c", n=n, prefix="pk")
    ids = [f"pk{i}" for i in range(n)]
    ensure_topics(broker.bootstrap_servers, {topic: 2, f"{topic}.dlq": 1})
    before = store_count()
    published = _publish(broker, catalog, topic)
    marker = tmp_path / "at-commit"
    held = WorkerProcess(
        tmp_path / "held.log",
        module="tests.support.worker_held_at_commit",
        args=(str(marker),),
        **settings,
    )
    until(marker.exists, timeout_s=300, what="the worker to reach its commit", workers=[held])
    written = present(ids)
    assert written, "the worker reached its commit without writing its batch"
    assert committed_behind(broker.bootstrap_servers, group, published.next_offsets) == n
    assert held.stop(signal.SIGKILL) == -signal.SIGKILL
    fresh = WorkerProcess(tmp_path / "fresh.log", **settings)
    try:
        until(
            lambda: bool(fresh.metrics()), timeout_s=120, what="the fresh worker", workers=[fresh]
        )
        until(
            lambda: committed_behind(broker.bootstrap_servers, group, published.next_offsets) == 0,
            timeout_s=300,
            what="the fresh worker to commit the stream",
            workers=[fresh],
        )
        replayed = fresh.upserted()
    finally:
        assert fresh.stop() == 0, fresh.output()
    # Every event again, the killed worker's batch included: nothing was committed.
    assert replayed >= n
    assert store_count() - before == n  # replays overwrite: no duplicates
    expected = {
        # Catalog events carry attributes as strings.
        p["id"]: {"title": p["title"], "baseColour": p["baseColour"], "year": str(p["year"])}
        for p in map(json.loads, catalog.read_text().splitlines())
    }
    stored = payloads(ids)
    got = {pid: {k: stored[pid].get(k) for k in ("title", "baseColour", "year")} for pid in stored}
    assert got == expected
    assert dead_letters(broker.bootstrap_servers, f"{topic}.dlq") == []
    Tally("ingestion worker SIGKILLed between store write and commit").write(
        items=n, written_before_kill=len(written), replayed=replayed, lost=0, duplicated=0
    )


def test_vector_store_partition_commits_nothing_until_it_heals(platform, broker, tmp_path):
    """The worker reaches the store through a relay that is cut for a while: it retries, keeps
    its offsets, and catches up when the link returns."""
    n, outage_s = 60, scale("chaos_outage_s", 5)
    topic, group = "chaos-outage", "chaos-outage"
    ids = [f"co{i}" for i in range(n)]
    ensure_topics(broker.bootstrap_servers, {topic: 2, f"{topic}.dlq": 1})
    with TcpRelay(grpc_targets_sync("vector-store")[0]) as relay:
        settings = worker_settings(broker, topic, group, batch_size=8, thumbnail_px=0)
        worker = WorkerProcess(
            tmp_path / "worker.log", **{**settings, "vector_store_address": relay.address}
        )
        try:
            until(
                lambda: worker.metrics().get("vitrine_ingest_assigned_partitions", 0) == 2,
                timeout_s=120,
                what="the worker to join",
                workers=[worker],
            )
            relay.cut()
            published = _publish(broker, write_catalog(tmp_path / "c", n=n, prefix="co"), topic)
            deadline = time.monotonic() + outage_s
            while time.monotonic() < deadline:  # down: nothing written, nothing committed
                behind = committed_behind(broker.bootstrap_servers, group, published.next_offsets)
                assert behind == n, f"{n - behind} events committed while the store was cut off"
                time.sleep(0.5)
            assert not present(ids)
            retries = sum(v for k, v in worker.metrics().items() if "retries_total" in k)
            assert retries > 0
            relay.restore()
            until(
                lambda: (
                    committed_behind(broker.bootstrap_servers, group, published.next_offsets) == 0
                ),
                timeout_s=120,
                what="the worker to catch up after the partition",
                workers=[worker],
            )
        finally:
            assert worker.stop() == 0, worker.output()
    assert present(ids) == set(ids)
    Tally("vector store partitioned during ingestion").write(
        events=n, outage_s=outage_s, retries=retries, lost=0
    )


def test_broker_restart_the_worker_reconnects(platform, tmp_path):
    """The in-memory broker (Tansu, memory://) forgets topics, events and committed offsets when
    it stops; the worker must reconnect and index what is published after the restart."""
    port = free_port()
    topic, group = "chaos-restart", "chaos-restart"
    first = LocalBroker(port=port).start()
    settings = worker_settings(first, topic, group, batch_size=8, thumbnail_px=0)
    worker = WorkerProcess(tmp_path / "worker.log", **settings)
    second = None
    try:
        before = _publish(first, write_catalog(tmp_path / "a", n=10, prefix="rb"), topic)
        until(
            lambda: committed_behind(first.bootstrap_servers, group, before.next_offsets) == 0,
            timeout_s=180,
            what="the first batch",
            workers=[worker],
        )
        first.stop()
        time.sleep(3)  # the worker sees the broker gone
        second = LocalBroker(port=port).start()
        ensure_topics(second.bootstrap_servers, {topic: 4, f"{topic}.dlq": 1})
        after = _publish(second, write_catalog(tmp_path / "b", n=10, prefix="ra"), topic)
        until(
            lambda: present([f"ra{i}" for i in range(10)]) == {f"ra{i}" for i in range(10)},
            timeout_s=180,
            what="the batch published after the restart",
            workers=[worker],
        )
        until(
            lambda: committed_behind(second.bootstrap_servers, group, after.next_offsets) == 0,
            timeout_s=60,
            what="the commit on the new broker",
            workers=[worker],
        )
    finally:
        code = worker.stop()
        for b in (first, second):
            if b is not None:
                b.stop()
    assert code == 0, worker.output()
    Tally("broker restarted under the worker").write(reconnected=True)


def _replica_actor(app: str, deployment: str):
    """(name, handle) of the deployment's one replica actor (named actors need no dashboard)."""
    import ray

    prefix = f"SERVE_REPLICA::{app}#{deployment}#"
    (name,) = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(prefix)
    ]
    return name, ray.get_actor(name, namespace="serve")


def test_encoder_replica_killed_during_queries(platform):
    """Queries keep coming while the text encoder's replica is killed: every call gets an answer
    from the gateway (OK, UNAVAILABLE, or the gateway's own 10 s deadline), never INTERNAL and
    never silence until the caller's 20 s deadline; the gateway answers again once Serve has
    replaced the replica."""
    import ray

    tally, stop = Tally("text encoder replica killed under queries"), threading.Event()
    errors: list[str] = []

    def query_loop():
        with grpc.insecure_channel(platform.gateway) as channel:
            stub = pb_grpc.SearchServiceStub(channel)
            while not stop.is_set():
                try:
                    stub.Search(pb.SearchRequest(text="red shirt", top_k=3), timeout=20)
                    tally.add("OK")
                except grpc.RpcError as e:
                    tally.add(e.code().name)
                    gateways_deadline = "the gateway's deadline" in (e.details() or "")
                    if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and gateways_deadline:
                        continue
                    if e.code() != grpc.StatusCode.UNAVAILABLE:
                        errors.append(f"{e.code().name}: {e.details()}")
                    time.sleep(0.05)

    clients = 4
    threads = [threading.Thread(target=query_loop) for _ in range(clients)]
    for t in threads:
        t.start()
    try:
        time.sleep(2)
        name, actor = _replica_actor("text-encoder", "TextEncoder")
        ray.kill(actor, no_restart=True)
        killed_at = time.monotonic()
        until(
            lambda: _replica_actor_name("text-encoder", "TextEncoder") not in (None, name),
            timeout_s=180,
            what="Serve to replace the killed replica",
        )
        ok_before = tally.outcomes["OK"]
        until(lambda: tally.outcomes["OK"] > ok_before + 5, timeout_s=120, what="queries again")
        recovered_s = time.monotonic() - killed_at
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not errors, errors[:5]
    assert tally.outcomes["OK"] > 0
    tally.write(recovered_after_s=round(recovered_s, 1), clients=clients)
    with grpc.insecure_channel(platform.gateway) as channel:
        wait_serving(channel)


def _replica_actor_name(app: str, deployment: str) -> str | None:
    try:
        return _replica_actor(app, deployment)[0]
    except ValueError:  # none or several alive while Serve replaces it
        return None


def test_gateway_under_concurrent_load(platform):
    """32 clients (concurrent grpc.aio calls) send a mix of text, product, composed and filtered
    queries for a fixed time: 0 errors; latency percentiles reported."""
    clients, seconds = scale("chaos_clients", 32), scale("chaos_load_s", 10)
    requests = [
        pb.SearchRequest(text="red shirt", top_k=10),
        pb.SearchRequest(product_id="p3", top_k=10),
        pb.SearchRequest(product_id="p4", text="in black", top_k=5),
        pb.SearchRequest(
            text="blue dress",
            top_k=5,
            filter=pb.Filter(must=[pb.Condition(key="baseColour", keyword="Blue")]),
        ),
    ]

    async def run() -> tuple[list[float], list[str]]:
        latencies, errors = [], []
        async with grpc.aio.insecure_channel(platform.gateway) as channel:
            stub = pb_grpc.SearchServiceStub(channel)
            end = time.monotonic() + seconds

            async def client(k: int) -> None:
                i = k
                while time.monotonic() < end:
                    started = time.perf_counter()
                    try:
                        await stub.Search(requests[i % len(requests)], timeout=30)
                        latencies.append(time.perf_counter() - started)
                    except grpc.aio.AioRpcError as e:
                        errors.append(f"{e.code().name}: {e.details()}")
                    i += 1

            await asyncio.gather(*(client(k) for k in range(clients)))
        return latencies, errors

    latencies, errors = asyncio.run(run())
    ms = np.array(latencies) * 1000
    p50, p99 = (float(np.percentile(ms, q)) if len(ms) else 0.0 for q in (50, 99))
    Tally("gateway under concurrent load").write(
        clients=clients, seconds=seconds, requests=len(ms) + len(errors), errors=len(errors),
        qps=round(len(ms) / seconds, 1), p50_ms=round(p50, 1), p99_ms=round(p99, 1),
        max_ms=round(float(ms.max()) if len(ms) else 0.0, 1),
    )  # fmt: skip
    assert not errors, f"{len(errors)} errors, e.g. {errors[:3]}"
    assert len(ms) > clients
