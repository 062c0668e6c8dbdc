"""Catalog events through the real broker and the real Serve applications into the store."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from operations.broker import LocalBroker
from services.ingestion.app import grpc_processor
from services.ingestion.config import IngestionSettings
from services.ingestion.consumer import IngestionWorker
from services.ingestion.processor import REASON_HEADER
from shared.serving.endpoints import grpc_targets_sync
from shared.streaming.events import (
    committed_behind,
    encode,
    ensure_topics,
    product_events,
    publish,
)
from shared.types import CatalogEvent, Op
from tests.support.tiny import png_bytes, write_catalog
from tests.support.workers import (
    WorkerProcess,
    dead_letters,
    present,
    store_count,
    stored_points,
    until,
    worker_settings,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
LOOPBACK_URL = "http://127.0.0.1:8000/"  # the gateway's HTTP port in `make run`
KCAT = REPO / ".venv" / "opt" / "kcat" / "kcat"  # `make tools` (scripts/fetch_kcat.sh)


@pytest.fixture(scope="module")
def broker():
    with LocalBroker() as b:
        admin = KafkaAdminClient(bootstrap_servers=b.bootstrap_servers)
        admin.create_topics(
            [
                NewTopic("catalog", num_partitions=3, replication_factor=1),
                NewTopic("catalog.dlq", num_partitions=1, replication_factor=1),
            ]
        )
        admin.close()
        yield b


@pytest.fixture(scope="module")
def worker(platform, broker, tmp_path_factory):
    settings = IngestionSettings(
        # The tests' catalogs are written under pytest's temporary folder, named as file://.
        fetch_schemes="http,https,file",
        fetch_file_roots=str(tmp_path_factory.getbasetemp()),
        kafka_bootstrap_servers=broker.bootstrap_servers,
        catalog_topic="catalog",
        dlq_topic="catalog.dlq",
        consumer_group="test-ingestion",
        batch_size=8,
        image_encoder_address=grpc_targets_sync("image-encoder")[0],
        vector_store_address=grpc_targets_sync("vector-store")[0],
    )
    w = IngestionWorker(settings, grpc_processor(settings))
    yield w
    w.close()


def _publish(broker, events, *, topic: str, as_json: bool = False):
    return publish(
        events,
        as_json=as_json,
        bootstrap_servers=broker.bootstrap_servers,
        topic=topic,
        progress=False,
    )


def _committed(broker, group: str, published) -> bool:
    """Whether `group` has committed every event of `published`."""
    return committed_behind(broker.bootstrap_servers, group, published.next_offsets) == 0


def _drain(worker, expected_records: int):
    """Runs the worker until it has handled `expected_records` records."""
    seen = upserted = deleted = dead = stale = updated = 0
    reasons = []
    for _ in range(60):
        result = worker.run_once(timeout_ms=1000)
        upserted += result.upserted
        deleted += result.deleted
        updated += result.updated
        dead += result.dead_lettered
        stale += result.stale  # skipped by the store: it holds a newer version
        reasons += result.reasons
        seen = upserted + deleted + dead + stale + updated
        if seen >= expected_records:
            break
    return upserted, deleted, dead, reasons


def test_publish_replay_delete(worker, broker, tmp_path):
    catalog = write_catalog(tmp_path / "c", n=10, prefix="k")
    before = store_count()
    _publish(broker, product_events(catalog), topic="catalog")
    assert _drain(worker, 10)[0] == 10
    assert store_count() == before + 10
    ids = {f"k{i}" for i in range(10)}
    assert present(sorted(ids)) == ids
    # A replay (JSON this time, URIs instead of bytes, one title changed) overwrites: the same
    # count and ids, the changed payload.
    replay = (
        dataclasses.replace(e, title="renamed shirt") if e.product_id == "k0" else e
        for e in product_events(catalog, inline_images=False)
    )
    _publish(broker, replay, as_json=True, topic="catalog")
    _drain(worker, 10)
    assert store_count() == before + 10
    assert present(sorted(ids)) == ids
    payloads = {p.product_id: p.payload for p in stored_points(["k0", "k1"])}
    assert payloads["k0"]["title"] == "renamed shirt"
    assert payloads["k1"]["title"] == "blue shirt 1"
    assert payloads["k1"]["image_uri"].startswith("file://")  # the replay's payload
    record = encode(CatalogEvent("k3", Op.DELETE, event_time=dt.datetime.now(dt.UTC)))
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    producer.send("catalog", key=record.key, value=record.value, headers=list(record.headers))
    producer.close()
    assert _drain(worker, 1)[1] == 1
    assert store_count() == before + 9


def test_poison_goes_to_the_dead_letter_topic(worker, broker, tmp_path):
    catalog = write_catalog(tmp_path / "c", n=3, prefix="good")
    before = store_count()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    poison = [
        (b"x1", b"\xff\xfe garbage", [("content-type", b"application/x-protobuf")]),
        (b"x2", b"{broken json", [("content-type", b"application/json")]),
        (b"x3", encode(CatalogEvent("x3", Op.UPSERT, image_bytes=b"not an image")).value, []),
        (b"x4", encode(CatalogEvent("x4", Op.UPSERT)).value, []),
        # A sound header over a cut-off body: passes the worker's check, the encoder refuses it.
        (b"x5", encode(CatalogEvent("x5", Op.UPSERT, image_bytes=_truncated_jpeg())).value, []),
        # The fetch policy: loopback is no image host, and no file outside the allowed roots.
        (b"x6", encode(CatalogEvent("x6", Op.UPSERT, image_uri=LOOPBACK_URL)).value, []),
        (b"x7", encode(CatalogEvent("x7", Op.UPSERT, image_uri="file:///etc/passwd")).value, []),
    ]
    for key, value, headers in poison:
        producer.send("catalog", key=key, value=value, headers=headers)
    producer.close()
    _publish(broker, product_events(catalog), topic="catalog")
    upserted, _, dead, reasons = _drain(worker, 10)
    assert (upserted, dead) == (3, 7), reasons
    assert store_count() == before + 3
    consumer = KafkaConsumer(
        "catalog.dlq",
        bootstrap_servers=broker.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10000,
    )
    letters = {}
    for r in consumer:
        letters[r.key] = (r.value, dict(r.headers)[REASON_HEADER].decode())
        if len(letters) == 7:
            break
    consumer.close()
    assert letters[b"x1"][0] == b"\xff\xfe garbage"  # the original bytes travel with the reason
    assert "not a catalog event" in letters[b"x1"][1]
    assert "image" in letters[b"x3"][1]
    assert "needs image_bytes or image_uri" in letters[b"x4"][1]
    assert letters[b"x5"][1].startswith("image encoder: ")
    assert "loopback, private, link-local or reserved addresses are refused" in letters[b"x6"][1]
    assert "outside the allowed roots" in letters[b"x7"][1]


def _truncated_jpeg() -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buf, "JPEG")
    return buf.getvalue()[: len(buf.getvalue()) // 2]


def test_two_workers_share_the_partitions_and_export_metrics(platform, broker, tmp_path):
    settings = worker_settings(broker, "catalog-shared", "shared-group", batch_size=4)
    workers = [WorkerProcess(tmp_path / f"worker{i}.log", **settings) for i in range(2)]
    try:

        def assigned() -> list[float]:
            return [w.metrics().get("vitrine_ingest_assigned_partitions", 0) for w in workers]

        # Both members hold partitions of the 4 (the topic is created by the first worker).
        until(
            lambda: min(assigned()) > 0 and sum(assigned()) == 4,
            timeout_s=120,
            what="both workers to own partitions",
            workers=workers,
        )
        catalog = write_catalog(tmp_path / "c", n=40, prefix="s")
        ids = [f"s{i}" for i in range(40)]
        published = _publish(broker, product_events(catalog), topic="catalog-shared")
        until(lambda: len(present(ids)) == 40, timeout_s=180, what="40 products", workers=workers)
        until(
            lambda: _committed(broker, "shared-group", published),
            timeout_s=60,
            what="the group to commit everything",
            workers=workers,
        )
        per_worker = [w.upserted() for w in workers]
        assert min(per_worker) > 0, per_worker  # both did part of the work
        assert sum(per_worker) >= 40
        for w in workers:
            m = w.metrics()
            assert m['vitrine_ingest_records_total{outcome="dead_lettered"}'] == 0
            assert m["vitrine_ingest_batch_seconds_count"] > 0
            assert m["vitrine_ingest_last_commit_timestamp_seconds"] > 0
            # One lag series per owned partition (its values: services/ingestion/README.md, on Tansu).
            lag = [k for k in m if k.startswith("vitrine_ingest_consumer_lag{")]
            assert len(lag) == m["vitrine_ingest_assigned_partitions"]
    finally:
        codes = [w.stop() for w in workers]
    assert codes == [0, 0], [w.output() for w in workers]  # SIGTERM: a clean stop


def test_sigkill_mid_stream_then_restart_indexes_everything_once(platform, broker, tmp_path):
    """Every item indexed exactly once in effect: nothing lost, nothing duplicated."""
    n = 300
    settings = worker_settings(broker, "catalog-kill", "kill-group", batch_size=8)
    catalog = write_catalog(tmp_path / "c", n=n, prefix="kill")
    ids = [f"kill{i}" for i in range(n)]
    before = store_count()
    published = _publish(broker, product_events(catalog), topic="catalog-kill")
    first = WorkerProcess(tmp_path / "first.log", **settings)
    until(lambda: first.upserted() >= 40, timeout_s=180, what="a first part", workers=[first])
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    indexed_at_kill = len(present(ids))
    assert 0 < indexed_at_kill < n, "the kill must land mid-stream"

    second = WorkerProcess(tmp_path / "second.log", **settings)
    try:
        until(
            lambda: _committed(broker, "kill-group", published),
            timeout_s=300,
            what="the restarted worker to catch up",
            workers=[second],
        )
    finally:
        assert second.stop() == 0, second.output()
    assert present(ids) == set(ids)  # nothing lost
    assert store_count() == before + n  # nothing duplicated
    assert dead_letters(broker.bootstrap_servers, "catalog-kill.dlq", idle_s=2) == []


def test_a_json_event_produced_by_kcat_is_indexed(platform, tmp_path):
    """A third-party producer (librdkafka, not kafka-python) writes the JSON form of an event."""
    if not KCAT.exists():
        pytest.skip(f"kcat is not installed at {KCAT} (`make tools` fetches it with apt-get)")
    from tests.support.kafka_relay import KafkaRelay

    catalog = write_catalog(tmp_path / "c", n=1, prefix="kcat")
    event = {
        "productId": "kcat-1",
        "op": "OP_UPSERT",
        "imageUri": (catalog.parent / "kcat0.png").resolve().as_uri(),
        "title": "a shirt sent by kcat",
        "attributes": {"baseColour": "Teal"},
    }
    message = tmp_path / "event.json"
    message.write_text(json.dumps(event))
    broker = LocalBroker()
    # kcat's librdkafka 2.0.2 needs the relay (tests/support/kafka_relay.py says why); so does
    # everything else on this broker, which advertises the relay's port.
    with KafkaRelay(broker.port) as relay:
        broker.advertised_port = relay.port
        with broker:
            bootstrap = f"127.0.0.1:{relay.port}"
            ensure_topics(bootstrap, {"catalog": 1})
            proc = subprocess.run(
                [str(KCAT), "-P", "-b", bootstrap, "-t", "catalog", "-k", "kcat-1"]
                + ["-H", "content-type=application/json", str(message)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert proc.returncode == 0, proc.stderr
            settings = IngestionSettings(
                kafka_bootstrap_servers=bootstrap,
                catalog_topic="catalog",
                consumer_group="kcat-test",
                fetch_schemes="file",
                fetch_file_roots=str(catalog.parent),
                image_encoder_address=grpc_targets_sync("image-encoder")[0],
                vector_store_address=grpc_targets_sync("vector-store")[0],
            )
            worker = IngestionWorker(settings, grpc_processor(settings))
            try:
                upserted, _, dead, reasons = _drain(worker, 1)
            finally:
                worker.close()
    assert (upserted, dead) == (1, 0), reasons
    [point] = stored_points(["kcat-1"])
    assert point.payload["title"] == "a shirt sent by kcat"
    assert point.payload["baseColour"] == "Teal"


class _FlakyImages:
    """A loopback image server that answers 503 until `healthy` is set."""

    def __init__(self) -> None:
        import http.server
        import threading

        image, self.healthy, self.hits = png_bytes(11), threading.Event(), []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                owner.hits.append(self.path)
                status, body = (200, image) if owner.healthy.is_set() else (503, b"busy")
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/img.png"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_transient_failure_is_retried_then_dead_lettered_marked_and_replayable(platform, broker):
    """A 503 is tried `fetch_attempts` times, dead-lettered marked transient, and `replay`
    (what `vitrine dlq replay` runs) sends it back once the host is healthy: then indexed."""
    from shared.streaming.dlq import TRANSIENT_HEADER, list_dead_letters, replay

    ensure_topics(broker.bootstrap_servers, {"catalog-flaky": 1, "catalog-flaky.dlq": 1})
    images = _FlakyImages()
    settings = IngestionSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        catalog_topic="catalog-flaky",
        dlq_topic="catalog-flaky.dlq",
        consumer_group="flaky-group",
        fetch_allow_networks="127.0.0.1/32",  # the test's own image server, explicitly
        fetch_attempts=2,
        image_encoder_address=grpc_targets_sync("image-encoder")[0],
        vector_store_address=grpc_targets_sync("vector-store")[0],
    )
    worker = IngestionWorker(settings, grpc_processor(settings))
    try:
        event = CatalogEvent(
            "flaky-1", Op.UPSERT, image_uri=images.url, title="flaky", event_time=_now()
        )
        _publish(broker, [event], topic="catalog-flaky")
        _, _, dead, reasons = _drain(worker, 1)
        assert dead == 1 and "HTTP 503" in reasons[0] and "after 2 attempts" in reasons[0]
        assert len(images.hits) == 2
        [letter] = list_dead_letters(broker.bootstrap_servers, "catalog-flaky.dlq")
        assert letter.transient and dict(letter.headers)[TRANSIENT_HEADER] == b"true"
        assert present(["flaky-1"]) == set()

        images.healthy.set()
        report = replay(
            broker.bootstrap_servers,
            "catalog-flaky.dlq",
            "catalog-flaky",
            group="flaky-replay",
        )
        assert (report.read, report.replayed) == (1, 1)
        upserted, _, dead, reasons = _drain(worker, 1)
        assert (upserted, dead) == (1, 0), reasons
        [point] = stored_points(["flaky-1"])
        assert point.payload["title"] == "flaky"
        # The replay's group committed: a second replay finds nothing new.
        again = replay(
            broker.bootstrap_servers, "catalog-flaky.dlq", "catalog-flaky", group="flaky-replay"
        )
        assert again.read == 0
    finally:
        worker.close()
        images.close()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_an_older_event_never_overwrites_a_newer_one_nor_resurrects_a_delete(worker, broker):
    """Events published out of order (a replay, a producer retry): the store keeps the newest."""
    t = _now()
    older, newer = t - dt.timedelta(minutes=5), t
    events = [
        CatalogEvent("order-1", Op.UPSERT, image_bytes=png_bytes(1), title="new", event_time=newer),
        CatalogEvent("order-1", Op.UPSERT, image_bytes=png_bytes(2), title="old", event_time=older),
        CatalogEvent("order-2", Op.DELETE, event_time=newer),
        CatalogEvent(
            "order-2", Op.UPSERT, image_bytes=png_bytes(3), title="stale", event_time=older
        ),
    ]
    for e in events:  # one at a time: each in a batch of its own
        _publish(broker, [e], topic="catalog")
        _drain(worker, 1)
    [point] = stored_points(["order-1"])
    assert point.payload["title"] == "new"
    assert stored_points(["order-2"]) == []


def test_two_workers_racing_over_a_rebalance_never_write_a_stale_event(platform, broker, tmp_path):
    """Worker A polls v1 of a product and freezes before its store write (SIGSTOP, like a long
    pause); its session times out, worker B takes the partition and writes v1 then v2; then A
    wakes and its write of v1 arrives last. The store keeps v2: A's write is counted stale."""
    ensure_topics(broker.bootstrap_servers, {"catalog-race": 1, "catalog-race.dlq": 1})
    settings = worker_settings(broker, "catalog-race", "race-group", catalog_partitions=1)
    t = _now()
    v1 = CatalogEvent("race-1", Op.UPSERT, image_bytes=png_bytes(4), title="v1", event_time=t)
    v2 = dataclasses.replace(v1, title="v2", event_time=t + dt.timedelta(seconds=1))
    _publish(broker, [v1], topic="catalog-race")
    a = WorkerProcess(tmp_path / "a.log", module="tests.support.stalling_worker", **settings)
    b = None
    try:
        until(lambda: _state(a.proc.pid) == "T", timeout_s=180, what="A to stall", workers=[])
        assert "stalling before writing ['race-1']" in a.output()
        _publish(broker, [v2], topic="catalog-race")
        b = IngestionWorker(
            IngestionSettings(**settings), grpc_processor(IngestionSettings(**settings))
        )
        for _ in range(180):
            b.run_once(timeout_ms=1000)
            found = stored_points(["race-1"])
            if found and found[0].payload["title"] == "v2":
                break
        assert stored_points(["race-1"])[0].payload["title"] == "v2"
        a.proc.send_signal(signal.SIGCONT)
        until(
            lambda: a.metrics().get('vitrine_ingest_records_total{outcome="stale"}', 0) >= 1,
            timeout_s=120,
            what="A's late write to be refused as stale",
            workers=[a],
        )
        assert stored_points(["race-1"])[0].payload["title"] == "v2"
    finally:
        if a.proc.poll() is None:
            a.proc.send_signal(signal.SIGCONT)
        a.stop()
        if b is not None:
            b.close()


def _state(pid: int) -> str:
    """The process's state letter from /proc (T: stopped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "?"


def test_an_update_event_changes_the_payload_without_re_embedding(worker, broker):
    """OP_UPDATE: title and attributes change, the vector stays, nothing is fetched or encoded;
    an update of a product the store does not hold is skipped."""
    t = _now()
    upsert = CatalogEvent(
        "upd-1", Op.UPSERT, image_bytes=png_bytes(7), title="red shirt",
        attributes={"price": "10"}, event_time=t - dt.timedelta(minutes=1),
    )  # fmt: skip
    _publish(broker, [upsert], topic="catalog")
    _drain(worker, 1)
    [before] = stored_points(["upd-1"], with_vectors=True)
    update = CatalogEvent(
        "upd-1", Op.UPDATE, title="navy polo", attributes={"price": "8"}, event_time=t
    )
    ghost = CatalogEvent("upd-ghost", Op.UPDATE, title="nobody", event_time=t)
    _publish(broker, [update, ghost], topic="catalog")
    _drain(worker, 2)
    [after] = stored_points(["upd-1"], with_vectors=True)
    assert after.payload["title"] == "navy polo" and after.payload["price"] == "8"
    assert after.payload["thumbnail"] == before.payload["thumbnail"]  # the image's fields stay
    np.testing.assert_array_equal(after.vector, before.vector)
    assert stored_points(["upd-ghost"]) == []


def test_page_tokens_while_the_feed_writes(platform, worker, broker):
    """What a page token promises while ingestion runs: the next page is the slice of the
    ranking as the store holds it when that page is asked for. A product indexed between two
    pages that ranks at the top pushes the first page's last hit onto the next page."""
    import grpc

    from shared.api.vitrine.search.v1 import search_pb2 as pb
    from shared.api.vitrine.search.v1 import search_pb2_grpc as pb_grpc

    image = png_bytes(9001)  # no other test's product has this image
    reference = CatalogEvent("live-ref", Op.UPSERT, image_bytes=image, event_time=_now())
    _publish(broker, [reference], topic="catalog")
    _drain(worker, 1)
    with grpc.insecure_channel(platform.gateway) as channel:
        stub = pb_grpc.SearchServiceStub(channel)

        def search(top_k: int, token: str = "") -> pb.SearchResponse:
            request = pb.SearchRequest(product_id="live-ref", top_k=top_k, page_token=token)
            return stub.Search(request, timeout=30)

        first = search(3)
        twin = CatalogEvent("live-twin", Op.UPSERT, image_bytes=image, event_time=_now())
        _publish(broker, [twin], topic="catalog")  # scores as high as the reference itself
        _drain(worker, 1)
        second = [h.product_id for h in search(3, first.next_page_token).hits]
        whole = [h.product_id for h in search(6).hits]
    assert set(whole[:2]) == {"live-ref", "live-twin"}
    assert second == whole[3:6]  # the slice of the ranking as it stands now
    assert second[0] == first.hits[2].product_id  # shifted by the newcomer: shown again


def test_rollout_serves_a_new_model_with_no_failed_query_and_rolls_back(platform, broker, tmp_path):
    """`vitrine rollout`'s steps on the running platform under 4 clients' text queries: the new
    slot replays the catalog topic into its collection, the gateway switches, no query fails,
    and once a client sees the new model it never sees the old one; then a rollback."""
    import threading

    import grpc
    from ray import serve

    from operations.rollout import gateway_info, rollback, rollout, slot_apps
    from shared.api.vitrine.search.v1 import search_pb2 as pb
    from shared.api.vitrine.search.v1 import search_pb2_grpc as pb_grpc
    from shared.models.bundle import Manifest
    from tests.support.tiny import write_tiny_bundle

    ensure_topics(broker.bootstrap_servers, {"rollout": 3, "rollout.dlq": 1})
    _publish(
        broker, product_events(write_catalog(tmp_path / "c", n=9, prefix="r")), topic="rollout"
    )
    new = write_tiny_bundle(tmp_path / "new", seed=1)
    old_model, new_model = gateway_info()["model_version"], Manifest.read(new).bundle_id
    assert old_model != new_model
    stop, seen, errors = threading.Event(), [[] for _ in range(4)], []

    def load(mine: list) -> None:
        with grpc.insecure_channel(platform.gateway) as channel:
            stub = pb_grpc.SearchServiceStub(channel)
            while not stop.is_set():
                try:
                    reply = stub.Search(pb.SearchRequest(text="red shirt", top_k=3), timeout=30)
                    mine.append((reply.model_version, [h.product_id for h in reply.hits]))
                except grpc.RpcError as e:
                    errors.append((e.code(), e.details()))

    threads = [threading.Thread(target=load, args=(mine,)) for mine in seen]
    for t in threads:
        t.start()
    args = {
        "kafka_bootstrap_servers": broker.bootstrap_servers,
        "catalog_topic": "rollout",
        "dlq_topic": "rollout.dlq",
        "consumer_group": "rollout-test",
        "batch_size": 8,
    }
    try:
        switched = rollout(new, ingestion_args=args, timeout_s=600, progress=False)
        assert (switched.slot, switched.model_version, switched.points) == ("green", new_model, 9)
        assert switched.previous_model_version == old_model
        until(lambda: all(m and m[-1][0] == new_model for m in seen), timeout_s=30, what="new")
        back = rollback(timeout_s=300)
        assert (back.slot, back.model_version) == ("blue", old_model)
        until(lambda: all(m[-1][0] == old_model for m in seen), timeout_s=30, what="old")
    finally:
        stop.set()
        for t in threads:
            t.join()
        for name in [*slot_apps("green").values(), "ingestion-green"]:
            serve.delete(name, _blocking=False)
    assert errors == []
    for mine in seen:
        models = [model for model, _ in mine]
        # old, then new from the switch on, then old from the rollback on: never mixed
        assert models[0] == old_model and new_model in models and models[-1] == old_model
        runs = [m for i, m in enumerate(models) if i == 0 or m != models[i - 1]]
        assert runs == [old_model, new_model, old_model]
        # the new model's answers come from its own collection: the replayed products only
        assert all(h.startswith("r") for model, hits in mine if model == new_model for h in hits)
