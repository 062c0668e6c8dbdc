"""The local Kafka-protocol broker (Tansu) with kafka-python: topics, keyed produce, a
consumer group that commits, and a clean stop."""

from __future__ import annotations

import socket

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from operations.broker import LocalBroker

pytestmark = pytest.mark.integration

# Group-join settings measured in docs ENVIRONMENT.md (defaults waited about 23 s to join).
GROUP = {"max_poll_interval_ms": 3000, "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


def test_broker_round_trip_and_stop(tmp_path):
    with LocalBroker(log_path=tmp_path / "broker.log") as broker:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        admin.create_topics([NewTopic("events", num_partitions=3, replication_factor=1)])
        admin.close()
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
        for i in range(60):
            producer.send("events", key=f"p{i % 7}".encode(), value=f"v{i}".encode())
        producer.flush()
        producer.close()

        consumer = KafkaConsumer(
            "events",
            bootstrap_servers=broker.bootstrap_servers,
            group_id="g1",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=15000,
            **GROUP,
        )
        seen = {}
        for record in consumer:
            seen.setdefault(record.key, []).append(record.value)
            if sum(map(len, seen.values())) == 60:
                break
        consumer.commit()
        consumer.close()
        assert sum(map(len, seen.values())) == 60
        # One key, one partition: each key's values arrive in the order they were sent.
        for key, values in seen.items():
            k = int(key[1:])
            assert values == [f"v{i}".encode() for i in range(60) if i % 7 == k]

        producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
        producer.send("events", key=b"p0", value=b"v60")
        producer.close()
        again = KafkaConsumer(
            "events",
            bootstrap_servers=broker.bootstrap_servers,
            group_id="g1",
            enable_auto_commit=False,
            consumer_timeout_ms=15000,
            **GROUP,
        )
        # The group resumes at its committed offsets: only the new record, nothing twice.
        first = next(iter(again))
        assert first.value == b"v60"
        assert again.poll(timeout_ms=2000) == {}
        again.close()
        port = broker.port
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # stopped


def test_publish_a_catalog_then_read_it_back(tmp_path):
    from shared.data.catalog import load_products
    from shared.streaming.events import decode, product_events, publish
    from tests.support.tiny import write_catalog

    catalog = write_catalog(tmp_path / "catalog", n=9)
    products = {p.id: p for p in load_products(catalog)}
    with LocalBroker() as broker:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        admin.create_topics([NewTopic("catalog", num_partitions=3, replication_factor=1)])
        admin.close()
        first = publish(
            product_events(catalog),
            bootstrap_servers=broker.bootstrap_servers,
            topic="catalog",
            progress=False,
        )
        second = publish(
            product_events(catalog, inline_images=False),
            as_json=True,
            bootstrap_servers=broker.bootstrap_servers,
            topic="catalog",
            progress=False,
        )
        assert first.count + second.count == 18
        # The acks' offsets: the second publish ends where all 18 events end.
        assert sum(first.next_offsets.values()) == 9
        assert sum(second.next_offsets.values()) == 18
        consumer = KafkaConsumer(
            "catalog",
            bootstrap_servers=broker.bootstrap_servers,
            auto_offset_reset="earliest",
            consumer_timeout_ms=10000,
        )
        events = []
        for record in consumer:
            event = decode(record.value, record.headers)
            assert record.key.decode() == event.product_id
            events.append(event)
            if len(events) == 18:
                break
        consumer.close()
    inline = [e for e in events if e.image_bytes]
    by_uri = [e for e in events if e.image_uri]
    assert len(inline) == len(by_uri) == 9
    for e in inline:
        assert e.image_bytes == products[e.product_id].image.read_bytes()
        assert e.title == products[e.product_id].title
    for e in by_uri:
        assert e.image_uri == products[e.product_id].image.resolve().as_uri()


def test_vitrine_publish_command(tmp_path):
    import subprocess
    import sys

    from tests.support.tiny import write_catalog

    catalog = write_catalog(tmp_path / "catalog", n=4)
    with LocalBroker() as broker:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "cli.app",
                "publish",
                str(catalog),
                "--json",
                "--topic",
                "c",
                "--bootstrap-servers",
                broker.bootstrap_servers,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert "published 4 events" in proc.stdout
        consumer = KafkaConsumer(
            "c",
            bootstrap_servers=broker.bootstrap_servers,
            auto_offset_reset="earliest",
            consumer_timeout_ms=10000,
        )
        keys = set()
        for record in consumer:
            assert dict(record.headers)["content-type"] == b"application/json"
            keys.add(record.key)
            if len(keys) == 4:
                break
        consumer.close()
    assert keys == {b"p0", b"p1", b"p2", b"p3"}


def test_wait_consumed_follows_the_group_commits(tmp_path):
    from shared.streaming.events import (
        committed_behind,
        ensure_topics,
        product_events,
        publish,
        wait_consumed,
    )
    from tests.support.tiny import write_catalog

    catalog = write_catalog(tmp_path / "catalog", n=7)
    with LocalBroker() as broker:
        assert ensure_topics(broker.bootstrap_servers, {"w": 2, "w.dlq": 1}) == ["w", "w.dlq"]
        assert ensure_topics(broker.bootstrap_servers, {"w": 2}) == []  # idempotent
        published = publish(
            product_events(catalog),
            bootstrap_servers=broker.bootstrap_servers,
            topic="w",
            progress=False,
        )
        assert committed_behind(broker.bootstrap_servers, "g", published.next_offsets) == 7
        assert (
            wait_consumed(
                broker.bootstrap_servers, "g", published.next_offsets, timeout_s=1, progress=False
            )
            == 7
        )  # nobody consumes: the timeout strikes and says how many are behind
        consumer = KafkaConsumer(
            "w",
            bootstrap_servers=broker.bootstrap_servers,
            group_id="g",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
        )
        seen = 0
        for _ in range(60):
            seen += sum(len(b) for b in consumer.poll(timeout_ms=500).values())
            if seen == 7:
                break
        consumer.commit()
        consumer.close()
        assert (
            wait_consumed(
                broker.bootstrap_servers, "g", published.next_offsets, timeout_s=30, progress=False
            )
            == 0
        )
