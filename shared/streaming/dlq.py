"""The dead-letter topic: reading it, and sending records back to the catalog topic.

The ingestion worker dead-letters a record with its original key, value and headers, plus
`vitrine-dlq-reason` (why), `vitrine-source` (topic/partition/offset) and, for failures that may
pass (a fetch that timed out, a 5xx), `vitrine-dlq-transient: true`. `replay` reads the topic
from where the last replay stopped (its own consumer group), republishes the chosen records
(transient ones by default) without those headers, waits until the broker acknowledged them,
and only then commits: a replay that dies is repeated, never lost. Versions make a repeat
harmless: an older event never overwrites a newer one in the store.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

REASON_HEADER = "vitrine-dlq-reason"
TRANSIENT_HEADER = "vitrine-dlq-transient"
SOURCE_HEADER = "vitrine-source"
REPLAYED_HEADER = "vitrine-replayed-from"
_OWN_HEADERS = frozenset({REASON_HEADER, TRANSIENT_HEADER, SOURCE_HEADER, REPLAYED_HEADER})


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @property
    def reason(self) -> str:
        return self._header(REASON_HEADER)

    @property
    def transient(self) -> bool:
        return self._header(TRANSIENT_HEADER) == "true"

    @property
    def source(self) -> str:
        return self._header(SOURCE_HEADER)

    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(k, v) for k, v in self.headers if k not in _OWN_HEADERS]

    def _header(self, name: str) -> str:
        for k, v in self.headers:
            if k == name and isinstance(v, bytes | bytearray):
                return bytes(v).decode(errors="replace")
        return ""


@dataclass
class ReplayReport:
    read: int = 0
    replayed: int = 0
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def _consumer(bootstrap_servers: str, group: str | None):
    from kafka import KafkaConsumer

    return KafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


def _read(consumer, topic: str, *, from_start: bool, timeout_s: float) -> Iterator[DeadLetter]:
    """Every record from the consumer's position to the end the topic had when called."""
    from kafka import TopicPartition

    partitions = [
        TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    if not partitions:
        return
    consumer.assign(partitions)
    if from_start:
        consumer.seek_to_beginning(*partitions)
    ends = consumer.end_offsets(partitions)
    pending = {tp for tp in partitions if consumer.position(tp) < ends[tp]}
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=500).items():
            for r in records:
                if r.offset >= ends[tp]:
                    break
                yield DeadLetter(
                    r.partition,
                    r.offset,
                    r.key,
                    r.value,
                    tuple((k, v) for k, v in r.headers or () if v is not None),
                )
            if consumer.position(tp) >= ends[tp]:
                pending.discard(tp)


def list_dead_letters(
    bootstrap_servers: str, topic: str, *, limit: int = 100, timeout_s: float = 30
) -> list[DeadLetter]:
    """The first `limit` records of the dead-letter topic (no group, nothing committed)."""
    consumer = _consumer(bootstrap_servers, None)
    try:
        out = []
        for letter in _read(consumer, topic, from_start=True, timeout_s=timeout_s):
            out.append(letter)
            if len(out) >= limit:
                break
        return out
    finally:
        consumer.close()


def replay(
    bootstrap_servers: str,
    dlq_topic: str,
    catalog_topic: str,
    *,
    group: str,
    transient_only: bool = True,
    from_start: bool = False,
    limit: int | None = None,
    timeout_s: float = 60,
) -> ReplayReport:
    """Sends dead letters back to `catalog_topic` (see the module docstring).

    Args:
        group: the replay's own consumer group (its committed offsets say where to go on).
        transient_only: only records marked transient; the others are skipped (and, like the
            replayed ones, not read again by the next replay).
        from_start: read from the topic's beginning, not from the group's last commit.
        limit: stop after this many records read.

    Raises:
        kafka.errors.KafkaError: the broker refused a record (nothing after the last
            acknowledged batch is committed).
    """
    from kafka import KafkaProducer

    consumer = _consumer(bootstrap_servers, group)
    producer = KafkaProducer(
        bootstrap_servers=bootstrap_servers, acks="all", max_request_size=32 * 2**20
    )
    report = ReplayReport()
    done: dict[int, int] = {}  # partition -> offset after the last record handled
    try:
        futures = []
        for letter in _read(consumer, dlq_topic, from_start=from_start, timeout_s=timeout_s):
            report.read += 1
            done[letter.partition] = letter.offset + 1
            reason = letter.reason.split(":", 1)[0][:80] or "unknown"
            report.reasons[reason] = report.reasons.get(reason, 0) + 1
            if transient_only and not letter.transient:
                report.skipped += 1
            else:
                futures.append(_resend(producer, letter, dlq_topic, catalog_topic))
                report.replayed += 1
            if limit is not None and report.read >= limit:
                break
        producer.flush()
        for future in futures:
            future.get(timeout=30)  # raises if the broker refused one: nothing is committed
        _commit(consumer, dlq_topic, done)
        return report
    finally:
        producer.close()
        consumer.close()


def _resend(producer, letter, dlq_topic: str, catalog_topic: str):
    """Sends a dead letter's original record back to the catalog topic, marked as replayed from
    its place in the dead-letter topic; returns the send's future."""
    headers = letter.original_headers() + [
        (REPLAYED_HEADER, f"{dlq_topic}/{letter.partition}/{letter.offset}".encode())
    ]
    return producer.send(catalog_topic, key=letter.key, value=letter.value, headers=headers)


def _commit(consumer, dlq_topic: str, done: dict[int, int]) -> None:
    """Commits the replay group's offsets: partition -> offset after the last record handled."""
    if not done:
        return
    from kafka import TopicPartition
    from kafka.structs import OffsetAndMetadata

    consumer.commit(
        {
            TopicPartition(dlq_topic, p): OffsetAndMetadata(offset, "", -1)
            for p, offset in done.items()
        }
    )
