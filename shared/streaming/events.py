"""Catalog events on Kafka: the record format and a publisher.

A record is keyed by product id (one product, one partition, so its events stay in order). The
value is the protobuf `vitrine.catalog.v1.CatalogEvent`, or its JSON form for feeds produced by
other tools; the `content-type` header says which.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from shared.conversions.catalog import (
    event_from_bytes,
    event_from_json,
    event_to_bytes,
    event_to_json,
)
from shared.types import CatalogEvent, Op

CONTENT_TYPE = "content-type"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"


@dataclass(frozen=True)
class Record:
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


def encode(event: CatalogEvent, *, as_json: bool = False) -> Record:
    value = event_to_json(event) if as_json else event_to_bytes(event)
    content_type = JSON if as_json else PROTOBUF
    return Record(event.product_id.encode(), value, ((CONTENT_TYPE, content_type.encode()),))


def decode(value: bytes, headers: Iterable[tuple[str, bytes]] | None) -> CatalogEvent:
    """The event in a record; JSON when its content-type header says so, else protobuf.

    Raises:
        ValueError: the value is not a valid event of that format (the message says why).
    """
    content_type = dict(headers or ()).get(CONTENT_TYPE, PROTOBUF.encode()).decode(errors="replace")
    if content_type.split(";")[0].strip() == JSON:
        return event_from_json(value)
    if content_type.split(";")[0].strip() != PROTOBUF:
        raise ValueError(f"unknown content-type {content_type!r}")
    return event_from_bytes(value)


def product_events(products_path: Path, *, inline_images: bool = True) -> Iterator[CatalogEvent]:
    """Upsert events for every product of a products.jsonl, images inline or as file:// URIs."""
    from shared.data.catalog import load_products

    now = dt.datetime.now(dt.UTC)
    for p in load_products(products_path):
        yield CatalogEvent(
            product_id=p.id,
            op=Op.UPSERT,
            image_bytes=p.image.read_bytes() if inline_images else None,
            image_uri=None if inline_images else p.image.resolve().as_uri(),
            title=p.title,
            attributes=dict(p.attributes),
            event_time=now,
        )


def publish(
    events: Iterable[CatalogEvent],
    *,
    bootstrap_servers: str,
    topic: str,
    as_json: bool = False,
    total: int | None = None,
    progress: bool = True,
) -> int:
    """Sends events to the topic (acks=all) and waits until the broker has them all.

    Returns the number of events published.
    """
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        linger_ms=5,
        max_request_size=16 * 2**20,
    )
    sent = 0
    try:
        for event in tqdm(
            events, total=total, desc="publishing", unit="event", disable=not progress
        ):
            record = encode(event, as_json=as_json)
            producer.send(topic, key=record.key, value=record.value, headers=list(record.headers))
            sent += 1
        producer.flush()
    finally:
        producer.close()
    return sent
