"""The Kafka consumer loop: poll a batch, process it, dead-letter what fails, commit."""

from __future__ import annotations

import logging
import threading
import time

from services.ingestion.config import IngestionSettings
from services.ingestion.metrics import IngestMetrics
from services.ingestion.processor import BatchProcessor, BatchResult
from services.ingestion.retries import with_retries
from shared.observability import tracing
from shared.serving.errors import DependencyError, dependency_status
from shared.streaming.dlq import REASON_HEADER, SOURCE_HEADER, TRANSIENT_HEADER

log = logging.getLogger(__name__)

LAG_ASK_EVERY_S = 10.0


PROGRESS_EVERY_S = 10.0


DLQ_ACK_TIMEOUT_S = 30.0


class DeadLetterError(RuntimeError):
    """Dead letters the broker has not acknowledged when the worker stops."""


class _Refused:
    """A send that failed before it left: its `get` raises the producer's error."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def get(self, timeout: float | None = None):
        raise self.error


class IngestionWorker:
    """A Kafka consumer-group member feeding a BatchProcessor; commits after the store acked.

    Poison (undecodable, invalid, or refused by the encoder) goes to the dead-letter topic with
    its original key, value and headers plus the reason; dead letters are flushed before the
    offsets that carried them are committed, so a crash never loses a record.
    """

    def __init__(
        self,
        settings: IngestionSettings,
        processor: BatchProcessor,
        metrics: IngestMetrics | None = None,
    ) -> None:
        from kafka import KafkaConsumer, KafkaProducer

        self._settings, self._processor = settings, processor
        self.metrics = metrics or IngestMetrics()
        self._consumer = KafkaConsumer(
            settings.catalog_topic,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=settings.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.batch_size,
            max_partition_fetch_bytes=settings.max_image_bytes * 2,
            fetch_max_bytes=64 * 2**20,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            # Group-join timing measured in docs/ENVIRONMENT.md (defaults waited ~23 s to join).
            max_poll_interval_ms=300_000,
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
        )
        self._dlq = KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            acks="all",
            max_request_size=settings.max_image_bytes * 2,
        )
        self.stopping = threading.Event()
        self._lag_checked = 0.0
        self._unconfirmed: list[tuple] = []  # (record, headers, send future) of this batch
        self._ends_asked = -LAG_ASK_EVERY_S
        self._progress = {"at": time.monotonic(), "records": 0}

    def run_once(self, timeout_ms: int = 1000) -> BatchResult:
        """One poll: validate, write, dead-letter the poison, then commit."""
        polled = self._consumer.poll(timeout_ms=timeout_ms)
        records = [r for batch in polled.values() for r in batch]
        result = BatchResult()
        if not records:
            self._update_lag()
            return result
        started = time.perf_counter()
        # The batch's span: a child of its one event's trace, else linked to each event's.
        traces = [tracing.extract(r.headers) for r in records] if tracing.enabled() else []
        with tracing.batch_span("ingest.batch", traces, {"batch.records": len(records)}):
            written = self._processor.process(
                records,
                retry=lambda write: with_retries(
                    write,
                    stop=self.stopping.is_set,
                    on_retry=lambda status: self.metrics.retries.labels(status.name).inc(),
                ),
            )
        for record, reason, transient in written.rejected:
            self._dead_letter(record, reason, result, transient=transient)
        self._confirm_dead_letters()  # durable before their offsets are committed
        self._commit()
        result.upserted, result.deleted = written.upserted, written.deleted
        result.updated = written.updated
        result.stale = written.stale
        self._count(result, len(records), time.perf_counter() - started)
        return result

    def _commit(self) -> None:
        from kafka.errors import CommitFailedError

        try:
            self._consumer.commit()
        except CommitFailedError as e:
            # The group rebalanced while this batch was in hand: its partitions went to another
            # member, which re-reads from the last commit. Writes are idempotent, so the replay
            # is harmless.
            log.warning("commit refused after a rebalance; the batch will be replayed: %s", e)
            return
        self.metrics.last_commit.set(time.time())
        self._update_lag()

    def _count(self, result: BatchResult, n_records: int, seconds: float) -> None:
        m = self.metrics
        m.records.labels("upserted").inc(result.upserted)
        m.records.labels("deleted").inc(result.deleted)
        m.records.labels("updated").inc(result.updated)
        m.records.labels("dead_lettered").inc(result.dead_lettered)
        m.records.labels("stale").inc(result.stale)
        m.records.labels("transient").inc(result.transient)
        m.batch_seconds.observe(seconds)
        log.debug(
            "batch: %d records, %d upserted, %d deleted, %d dead-lettered in %.3f s",
            n_records,
            result.upserted,
            result.deleted,
            result.dead_lettered,
            seconds,
        )
        progress = self._progress
        progress["records"] += n_records
        elapsed = time.monotonic() - progress["at"]
        if elapsed >= PROGRESS_EVERY_S:
            lag = sum(sample.value for metric in m.lag.collect() for sample in metric.samples)
            log.info(
                "ingested %d events in the last %.0f s (%.1f/s); lag %d",
                progress["records"],
                elapsed,
                progress["records"] / elapsed,
                lag,
            )
            self._progress = {"at": time.monotonic(), "records": 0}

    def _update_lag(self) -> None:
        """Per-partition lag for the metrics, at most once a second, from the high watermarks
        the last fetches carried: asking the broker for end offsets at every batch put two round
        trips between batches, while the encoder waited (docs/BENCHMARKS.md, "Streaming
        ingestion"). A partition not fetched yet is asked for, at most every 10 s."""
        now = time.monotonic()
        if now - self._lag_checked < 1.0:
            return
        self._lag_checked = now
        assignment = self._consumer.assignment()
        self.metrics.assigned.set(len(assignment))
        self.metrics.lag.clear()
        if not assignment:
            return
        try:
            ends = {tp: self._consumer.highwater(tp) for tp in assignment}
            unknown = [tp for tp, end in ends.items() if end is None]
            if unknown and now - self._ends_asked >= LAG_ASK_EVERY_S:
                self._ends_asked = now
                ends.update(self._consumer.end_offsets(unknown))
            for tp, end in ends.items():
                position = self._consumer.position(tp, timeout_ms=1000)
                if end is not None and position is not None:
                    self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, end - position))
        except Exception as e:  # lag is advisory; a failed lookup must not stop ingestion
            log.debug("lag lookup failed: %s", e)

    def _dead_letter(
        self, record, reason: str, result: BatchResult, *, transient: bool = False
    ) -> None:
        own = (REASON_HEADER, TRANSIENT_HEADER, SOURCE_HEADER)
        headers = [(k, v) for k, v in record.headers or [] if v is not None and k not in own] + [
            (REASON_HEADER, reason[:2000].encode()),
            (SOURCE_HEADER, f"{record.topic}/{record.partition}/{record.offset}".encode()),
        ]
        if transient:
            headers.append((TRANSIENT_HEADER, b"true"))
            result.transient += 1
        self._unconfirmed.append((record, headers, self._send_dead_letter(record, headers)))
        result.dead_lettered += 1
        result.reasons.append(reason)
        log.warning(
            "dead-lettered %s/%d/%d: %s", record.topic, record.partition, record.offset, reason
        )

    def _send_dead_letter(self, record, headers):
        """The send's future; a send refused at once (too large, no such topic) becomes a
        future that fails the same way, so it is retried like any unacknowledged send."""
        from kafka.errors import KafkaError

        try:
            return self._dlq.send(
                self._settings.dlq_topic, key=record.key, value=record.value, headers=headers
            )
        except KafkaError as e:
            return _Refused(e)

    def _confirm_dead_letters(self) -> None:
        """Waits until the broker acknowledged every dead letter of the batch, resending the
        failed ones with backoff: an unconfirmed send would lose its record once the batch's
        offsets are committed (issue 17). Gives up only when stopping, without committing.

        Raises:
            DeadLetterError: stopping while a dead letter is still unacknowledged.
        """
        from kafka.errors import KafkaError

        backoff = 0.2
        while self._unconfirmed:
            failed = []
            for record, headers, future in self._unconfirmed:
                try:
                    future.get(timeout=DLQ_ACK_TIMEOUT_S)
                except KafkaError as e:
                    failed.append((record, headers, e))
            if not failed:
                break
            record, _, error = failed[0]
            if self.stopping.is_set():
                self._unconfirmed = []
                raise DeadLetterError(f"{len(failed)} dead letters unacknowledged: {error}")
            self.metrics.retries.labels("DEAD_LETTER_SEND").inc()
            log.warning(
                "%d dead letters not acknowledged (%s: %s); resending in %.1f s, nothing is "
                "committed meanwhile",
                len(failed),
                type(error).__name__,
                error,
                backoff,
            )
            time.sleep(backoff)
            backoff = min(10.0, backoff * 2)
            self._unconfirmed = [(r, h, self._send_dead_letter(r, h)) for r, h, _ in failed]
        self._unconfirmed = []

    def run(self) -> None:
        """Until `stopping` is set; the batch in hand is finished first."""
        try:
            while not self.stopping.is_set():
                try:
                    self.run_once()
                except (DependencyError, TimeoutError) as e:
                    if not self.stopping.is_set():
                        raise
                    # Stopped while retrying an outage: nothing of this batch was committed, so
                    # the next owner of its partitions replays it.
                    status = dependency_status(e)
                    log.warning(
                        "stopped during an outage (%s); the batch will be replayed",
                        status.name if status is not None else type(e).__name__,
                    )
                except DeadLetterError as e:
                    log.warning(
                        "stopped before the dead letters were acknowledged (%s); the "
                        "batch will be replayed",
                        e,
                    )
        finally:
            self.close()

    def close(self) -> None:
        self._consumer.close()
        self._dlq.close()
