"""Catalog events through the real broker and the real Serve applications into the store."""

from __future__ import annotations

import datetime as dt

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from services.ingestion.app import IngestionWorker, grpc_processor
from services.ingestion.config import IngestionSettings
from services.ingestion.worker import REASON_HEADER
from shared.serving.endpoints import grpc_targets_sync
from shared.streaming.broker import LocalBroker
from shared.streaming.events import encode, product_events, publish
from shared.types import CatalogEvent, Op
from tests.tiny import write_catalog

pytestmark = [pytest.mark.integration, pytest.mark.slow]


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
def worker(platform, broker):
    settings = IngestionSettings(
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


def _store_count() -> int:
    import asyncio

    from ray import serve

    from shared.serving.endpoints import release_handles

    async def count() -> int:
        n = await serve.get_deployment_handle("VectorStore", "vector-store").count.remote()
        await release_handles()
        return n

    return asyncio.run(count())


def _drain(worker, expected_records: int):
    """Runs the worker until it has handled `expected_records` records."""
    seen = upserted = deleted = dead = 0
    reasons = []
    for _ in range(60):
        result = worker.run_once(timeout_ms=1000)
        upserted += result.upserted
        deleted += result.deleted
        dead += result.dead_lettered
        reasons += result.reasons
        seen = upserted + deleted + dead
        if seen >= expected_records:
            break
    return upserted, deleted, dead, reasons


def test_publish_replay_delete(worker, broker, tmp_path):
    catalog = write_catalog(tmp_path / "c", n=10, prefix="k")
    before = _store_count()
    publish(
        product_events(catalog),
        bootstrap_servers=broker.bootstrap_servers,
        topic="catalog",
        progress=False,
    )
    assert _drain(worker, 10)[0] == 10
    assert _store_count() == before + 10
    # A replay (JSON this time, URIs instead of bytes) overwrites: same count.
    publish(
        product_events(catalog, inline_images=False),
        as_json=True,
        bootstrap_servers=broker.bootstrap_servers,
        topic="catalog",
        progress=False,
    )
    _drain(worker, 10)
    assert _store_count() == before + 10
    record = encode(CatalogEvent("k3", Op.DELETE, event_time=dt.datetime.now(dt.UTC)))
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    producer.send("catalog", key=record.key, value=record.value, headers=list(record.headers))
    producer.close()
    assert _drain(worker, 1)[1] == 1
    assert _store_count() == before + 9


def test_poison_goes_to_the_dead_letter_topic(worker, broker, tmp_path):
    catalog = write_catalog(tmp_path / "c", n=3, prefix="good")
    before = _store_count()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    poison = [
        (b"x1", b"\xff\xfe garbage", [("content-type", b"application/x-protobuf")]),
        (b"x2", b"{broken json", [("content-type", b"application/json")]),
        (b"x3", encode(CatalogEvent("x3", Op.UPSERT, image_bytes=b"not an image")).value, []),
        (b"x4", encode(CatalogEvent("x4", Op.UPSERT)).value, []),
    ]
    for key, value, headers in poison:
        producer.send("catalog", key=key, value=value, headers=headers)
    producer.close()
    publish(
        product_events(catalog),
        bootstrap_servers=broker.bootstrap_servers,
        topic="catalog",
        progress=False,
    )
    upserted, _, dead, reasons = _drain(worker, 7)
    assert (upserted, dead) == (3, 4)
    assert _store_count() == before + 3
    consumer = KafkaConsumer(
        "catalog.dlq",
        bootstrap_servers=broker.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10000,
    )
    letters = {}
    for r in consumer:
        letters[r.key] = (r.value, dict(r.headers)[REASON_HEADER].decode())
        if len(letters) == 4:
            break
    consumer.close()
    assert letters[b"x1"][0] == b"\xff\xfe garbage"  # the original bytes travel with the reason
    assert "not a catalog event" in letters[b"x1"][1]
    assert "image" in letters[b"x3"][1]
    assert "needs image_bytes or image_uri" in letters[b"x4"][1]
