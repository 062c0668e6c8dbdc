"""The producer example of services/ingestion/README.md, run as written (a third-party Kafka
client, confluent-kafka) against the local broker; the record it sends must be the JSON catalog
event the worker decodes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from operations.broker import LocalBroker
from shared.streaming.events import decode, ensure_topics
from shared.types import Op

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[2] / "services" / "ingestion" / "README.md"
TOPIC = "vitrine.catalog.v1"


def readme_example() -> str:
    """The ```python block of the README's "The event" section."""
    section = README.read_text().split("## The event", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block, "services/ingestion/README.md shows no ```python producer example"
    return block.group(1)


def test_readme_producer_example_sends_a_catalog_event(tmp_path):
    script = tmp_path / "produce.py"
    script.write_text(readme_example())
    with LocalBroker() as broker:
        ensure_topics(broker.bootstrap_servers, {TOPIC: 1})
        env = {**os.environ, "VITRINE_INGESTION_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers}
        proc = subprocess.run(
            [sys.executable, str(script)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == f"delivered to {TOPIC} at 0", proc
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers)
        partition = TopicPartition(TOPIC, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        records = []
        for _ in range(30):  # up to 30 s; the first polls may only look up positions
            records += consumer.poll(timeout_ms=1000).get(partition, [])
            if records:
                break
        consumer.close()
    [record] = records
    assert record.key == b"sku-1"
    event = decode(record.value, record.headers, key=record.key)
    assert (event.product_id, event.op, event.title) == ("sku-1", Op.UPSERT, "navy check shirt")
    assert event.image_uri == "file:///data/sku-1.jpg"
    assert event.attributes == {"baseColour": "Navy"}
