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
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from shared.conversions.catalog import (
    event_from_bytes,
    event_from_json,
    event_to_bytes,
    event_to_json,
)
from shared.observability import tracing
from shared.types import CatalogEvent, Op

if TYPE_CHECKING:
    from shared.data.catalog import Product

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


def decode(
    value: bytes | None,
    headers: Iterable[tuple[str, bytes | None]] | None,
    *,
    key: bytes | None = None,
) -> CatalogEvent:
    """The event in a record; JSON when its content-type header says so, else protobuf.

    A record with a null value is a tombstone: on the compacted catalog topic it deletes the
    product its key names, whatever its headers say. Headers with a null value are ignored.

    Raises:
        ValueError: the value is not a valid event of that format, or a tombstone has no
            product id key (the message says why).
    """
    if value is None:
        return _tombstone(key)
    present = {k: v for k, v in headers or () if isinstance(k, str) and v is not None}
    content_type = present.get(CONTENT_TYPE, PROTOBUF.encode())
    if not isinstance(content_type, bytes | bytearray):
        raise ValueError(f"the {CONTENT_TYPE} header is not bytes")
    media_type = bytes(content_type).decode(errors="replace")
    if media_type.split(";")[0].strip() == JSON:
        return event_from_json(value)
    if media_type.split(";")[0].strip() != PROTOBUF:
        raise ValueError(f"unknown content-type {media_type!r}")
    return event_from_bytes(value)


def _tombstone(key: bytes | None) -> CatalogEvent:
    try:
        product_id = key.decode() if key else ""
    except UnicodeDecodeError:
        product_id = ""
    if not product_id.strip():
        raise ValueError("a tombstone (null value) without a product id in its key")
    return CatalogEvent(product_id=product_id, op=Op.DELETE)


def product_events(
    products: Path | Iterable[Product], *, inline_images: bool = True, catalog: str = ""
) -> Iterator[CatalogEvent]:
    """Upsert events for products (or a products.jsonl) of `catalog` (default: the default
    catalog), images inline or as file:// URIs."""
    from shared.data.catalog import load_products

    now = dt.datetime.now(dt.UTC)
    for p in load_products(products) if isinstance(products, Path) else products:
        yield CatalogEvent(
            product_id=p.id,
            op=Op.UPSERT,
            image_bytes=p.image.read_bytes() if inline_images else None,
            image_uri=None if inline_images else p.image.resolve().as_uri(),
            title=p.title,
            attributes=dict(p.attributes),
            event_time=now,
            catalog=catalog,
        )


@dataclass(frozen=True)
class Published:
    """What `publish` wrote: the count, and per (topic, partition) the offset after the last
    event it wrote there (from the broker's acks, so it holds whatever the broker's reported
    end offsets say; `wait_consumed` waits for consumers to commit up to these)."""

    count: int
    next_offsets: dict[tuple[str, int], int]


class PublishError(RuntimeError):
    """The broker refused or lost some events (the message says how many and why)."""


def publish(
    events: Iterable[CatalogEvent],
    *,
    bootstrap_servers: str,
    topic: str,
    as_json: bool = False,
    total: int | None = None,
    progress: bool = True,
) -> Published:
    """Sends events to the topic (acks=all) and waits until the broker acknowledged them all.

    Raises:
        PublishError: an event was not acknowledged (none is silently dropped).
    """
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        linger_ms=5,
        max_request_size=16 * 2**20,
    )
    next_offsets: dict[tuple[str, int], int] = {}
    failures: list[str] = []

    def acked(metadata) -> None:
        key = (metadata.topic, metadata.partition)
        next_offsets[key] = max(next_offsets.get(key, 0), metadata.offset + 1)

    sent = 0
    try:
        for event in tqdm(
            events, total=total, desc="publishing", unit="event", disable=not progress
        ):
            record = encode(event, as_json=as_json)
            # Each event's trace starts here (when tracing is on) and travels in its headers.
            with tracing.span("catalog.publish", attributes={"product_id": event.product_id}):
                future = producer.send(
                    topic,
                    key=record.key,
                    value=record.value,
                    headers=list(record.headers) + tracing.kafka_headers(),
                )
            future.add_callback(acked)
            future.add_errback(lambda e, pid=event.product_id: failures.append(f"{pid}: {e}"))
            sent += 1
        producer.flush()
    finally:
        producer.close()
    if failures:
        raise PublishError(
            f"{len(failures)} of {sent} events were not acknowledged; first: {failures[0]}"
        )
    return Published(sent, next_offsets)


def ensure_topics(
    bootstrap_servers: str, topics: dict[str, int], *, replication_factor: int = 1
) -> list[str]:
    """Creates the topics that do not exist yet ({name: partitions}); returns the created ones.

    For the local broker and first runs; in production the topics are declared (Strimzi
    KafkaTopic) and this finds them all present.
    """
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    try:
        missing = [name for name in topics if name not in set(admin.list_topics())]
        created = []
        for name in missing:
            try:
                admin.create_topics([NewTopic(name, topics[name], replication_factor)])
                created.append(name)
            except TopicAlreadyExistsError:  # another worker created it meanwhile
                pass
        return created
    finally:
        admin.close()


def committed_behind(
    bootstrap_servers: str, group: str, next_offsets: dict[tuple[str, int], int]
) -> int:
    """Events before `next_offsets` that `group` has not committed yet."""
    from kafka import TopicPartition

    partitions = [TopicPartition(t, p) for t, p in next_offsets]
    committed = _committed_offsets(bootstrap_servers, group, partitions)
    return sum(max(0, next_offsets[(tp.topic, tp.partition)] - committed[tp]) for tp in partitions)


def _committed_offsets(
    bootstrap_servers: str, group: str, partitions: list, **admin_config
) -> dict:
    """The group's committed offset of each partition; 0 where it has committed nothing."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, **admin_config)
    try:
        found = admin.list_group_offsets({group: partitions}).get(group, {})
    finally:
        admin.close()
    return {
        tp: found[tp].offset if tp in found and found[tp].offset >= 0 else 0 for tp in partitions
    }


@dataclass(frozen=True)
class GroupLag:
    """How far a consumer group is behind on one topic."""

    partitions: int
    end: int  # events in the topic (sum of end offsets)
    committed: int  # events the group has committed
    lag: int  # events not committed yet

    @property
    def exists(self) -> bool:
        return self.partitions > 0


def group_lag(bootstrap_servers: str, group: str, topic: str, *, timeout_s: float = 10) -> GroupLag:
    """The group's committed offsets against the topic's end offsets.

    `end` counts from offset 0 (a topic whose old segments were deleted counts them too).

    Raises:
        kafka.errors.KafkaError: the broker is unreachable.
    """
    from kafka import KafkaConsumer, TopicPartition

    timeout_ms = int(timeout_s * 1000)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        request_timeout_ms=timeout_ms + 1000,
        enable_auto_commit=False,
    )
    try:
        ids = consumer.partitions_for_topic(topic) or set()
        partitions = [TopicPartition(topic, p) for p in sorted(ids)]
        ends = _exact_end_offsets(consumer, partitions, timeout_s) if partitions else {}
    finally:
        consumer.close()
    if not partitions:
        return GroupLag(0, 0, 0, 0)
    committed = _committed_offsets(
        bootstrap_servers, group, partitions, request_timeout_ms=timeout_ms
    )
    end_total = done_total = lag = 0
    for tp in partitions:
        done = committed[tp]
        end = max(ends.get(tp, 0), done)
        end_total, done_total, lag = end_total + end, done_total + done, lag + end - done
    return GroupLag(len(partitions), end_total, done_total, lag)


def _exact_end_offsets(consumer, partitions: list, timeout_s: float) -> dict:
    """Each partition's end offset, read past the last record batch.

    Tansu answers ListOffsets(latest) with the base offset of the last record batch plus one, so
    a batch of many records is counted as one; reading from there to the end corrects it (and
    costs one fetch per partition on a broker that answers exactly).
    """
    import time

    ends = dict(consumer.end_offsets(partitions))
    pending = {tp for tp, off in ends.items() if off > 0}
    if not pending:
        return ends
    consumer.assign(sorted(pending))
    for tp in pending:
        consumer.seek(tp, ends[tp] - 1)
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        # The broker answers with whole batches, so the first records of a partition reach its
        # end.
        for tp, records in consumer.poll(timeout_ms=200).items():
            ends[tp] = max(ends[tp], records[-1].offset + 1)
            pending.discard(tp)
    return ends


def wait_consumed(
    bootstrap_servers: str,
    group: str,
    next_offsets: dict[tuple[str, int], int],
    *,
    timeout_s: float = 600,
    progress: bool = True,
) -> int:
    """Waits until `group` has committed up to `next_offsets` (`Published.next_offsets`); the
    ingestion worker commits only after the store acknowledged, so this means searchable.

    Returns the events still behind: 0 unless the timeout struck.
    """
    import time

    behind = start = committed_behind(bootstrap_servers, group, next_offsets)
    deadline = time.monotonic() + timeout_s
    with tqdm(total=start, desc="indexing", unit="event", disable=not progress) as bar:
        while behind > 0 and time.monotonic() < deadline:
            time.sleep(0.5)
            behind = committed_behind(bootstrap_servers, group, next_offsets)
            bar.n = max(0, start - behind)
            bar.refresh()
    return behind
