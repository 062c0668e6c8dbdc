"""The ingestion worker process: `vitrine ingest` (or `python -m services.ingestion.app`)."""

from __future__ import annotations

import logging
import signal
import threading
import time

from services.ingestion.config import IngestionSettings
from services.ingestion.fetching import Fetcher, FetchPolicy
from services.ingestion.worker import (
    BatchProcessor,
    BatchResult,
    EventLimits,
    PoisonError,
    with_retries,
)
from shared.streaming.dlq import REASON_HEADER, SOURCE_HEADER, TRANSIENT_HEADER

log = logging.getLogger(__name__)

# Group-join settings measured in docs ENVIRONMENT.md (defaults waited about 23 s to join).
GROUP_TIMING = {
    "max_poll_interval_ms": 300_000,
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 1000,
}
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


LAG_ASK_EVERY_S = 10.0


class IngestMetrics:
    """The worker's Prometheus metrics, in a registry of its own (several workers may share a
    process in tests). Rates come from the counters: `rate(vitrine_ingest_records_total[1m])`."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.records = Counter(
            "vitrine_ingest_records",
            "Catalog events handled, by outcome (upserted, deleted, dead_lettered, stale: "
            "skipped because the store holds a newer version, transient: dead-lettered after "
            "a failure that may pass).",
            ["outcome"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "vitrine_ingest_batch_seconds",
            "Time from a batch's poll to its commit.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.retries = Counter(
            "vitrine_ingest_retries",
            "Calls retried while the encoder or the store was unavailable, by gRPC status.",
            ["code"],
            registry=r,
        )
        self.lag = Gauge(
            "vitrine_ingest_consumer_lag",
            "Records between the committed position and the end of each assigned partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.assigned = Gauge(
            "vitrine_ingest_assigned_partitions", "Partitions assigned to this worker.", registry=r
        )
        self.last_commit = Gauge(
            "vitrine_ingest_last_commit_timestamp_seconds",
            "Unix time of the last offset commit.",
            registry=r,
        )
        for outcome in ("upserted", "deleted", "dead_lettered", "stale", "transient"):
            self.records.labels(outcome)  # exported as 0 before the first event

    def serve(self, port: int, *, address: str = "127.0.0.1") -> int:
        """Serves /metrics on `address`:`port` (0: a free one) in a daemon thread; returns the
        port."""
        from prometheus_client import start_http_server

        server, _ = start_http_server(port, addr=address, registry=self.registry)
        return server.server_port


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
            **GROUP_TIMING,
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
        written = self._processor.process(
            records,
            retry=lambda write: with_retries(
                write,
                stop=self.stopping.is_set,
                on_retry=lambda e: self.metrics.retries.labels(e.code().name).inc(),
            ),
        )
        for record, reason, transient in written.rejected:
            self._dead_letter(record, reason, result, transient=transient)
        self._confirm_dead_letters()  # durable before their offsets are committed
        self._commit()
        result.upserted, result.deleted = written.upserted, written.deleted
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
            lag = sum(sample.value for sample in m.lag.collect()[0].samples)
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
        import grpc

        try:
            while not self.stopping.is_set():
                try:
                    self.run_once()
                except grpc.RpcError as e:
                    if not self.stopping.is_set():
                        raise
                    # Stopped while retrying an outage: nothing of this batch was committed, so
                    # the next owner of its partitions replays it.
                    log.warning(
                        "stopped during an outage (%s); the batch will be replayed", e.code().name
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


def connect(settings: IngestionSettings, *, wait_s: float = 60) -> None:
    """Waits for the broker (a worker may start first) and creates missing topics if asked.

    Raises:
        SystemExit: no broker answered within `wait_s`.
    """
    from kafka.errors import KafkaConnectionError, KafkaTimeoutError

    from shared.streaming.events import ensure_topics

    deadline = time.monotonic() + wait_s
    while True:
        try:
            if settings.create_topics:
                created = ensure_topics(
                    settings.kafka_bootstrap_servers,
                    {settings.catalog_topic: settings.catalog_partitions, settings.dlq_topic: 1},
                )
                for name in created:
                    log.info("created topic %s", name)
            return
        except (KafkaConnectionError, KafkaTimeoutError):
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"no Kafka broker at {settings.kafka_bootstrap_servers} after {wait_s:.0f} s "
                    "(VITRINE_KAFKA_BOOTSTRAP_SERVERS)"
                ) from None
            log.info("waiting for the broker at %s", settings.kafka_bootstrap_servers)
            time.sleep(2)


def main() -> None:
    from shared.logs import setup_logging
    from shared.settings import load_settings_or_exit

    settings = load_settings_or_exit(IngestionSettings)
    setup_logging(settings.log_level)
    if settings.log_level != "DEBUG":  # kafka-python logs every connection and rebalance step
        logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        processor = grpc_processor(settings)
    except ValueError as e:  # no internal token: every call would be refused
        raise SystemExit(f"vitrine: configuration error: {e}") from None
    connect(settings)
    metrics = IngestMetrics()
    if settings.metrics_port:
        port = metrics.serve(settings.metrics_port, address=settings.metrics_address)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_address, port)
    worker = IngestionWorker(settings, processor, metrics)
    signal.signal(signal.SIGTERM, lambda *_: worker.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: worker.stopping.set())
    log.info(
        "ingesting %s from %s as group %s; encoder %s, store %s",
        settings.catalog_topic,
        settings.kafka_bootstrap_servers,
        settings.consumer_group,
        settings.image_encoder_address,
        settings.vector_store_address,
    )
    worker.run()
    log.info("stopped")


def grpc_processor(settings: IngestionSettings) -> BatchProcessor:
    """A processor calling the image encoder and the vector store over gRPC."""
    import grpc

    from shared.api.vitrine.image_encoder.v1 import image_encoder_pb2_grpc
    from shared.api.vitrine.store.v1 import store_pb2_grpc
    from shared.conversions import image_encoder as image_conv
    from shared.conversions import store as store_conv
    from shared.serving.endpoints import INTERNAL_MAX_MESSAGE_BYTES
    from shared.serving.security import caller_internal_token

    options = [
        ("grpc.max_send_message_length", INTERNAL_MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", INTERNAL_MAX_MESSAGE_BYTES),
    ]
    encoder = image_encoder_pb2_grpc.ImageEncoderServiceStub(
        grpc.insecure_channel(settings.image_encoder_address, options=options)
    )
    store = store_pb2_grpc.VectorStoreServiceStub(
        grpc.insecure_channel(settings.vector_store_address, options=options)
    )
    token = caller_internal_token(settings, caller="the ingestion worker")
    md = {"encoder": token.metadata("image-encoder"), "store": token.metadata("vector-store")}
    timeout = settings.call_timeout_s

    def embed(images):
        try:
            reply = encoder.EmbedImages(
                image_conv.request_to_proto(images), timeout=timeout, metadata=md["encoder"]
            )
        except grpc.RpcError as e:
            if e.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED):
                raise PoisonError(e.details()) from None
            raise
        return image_conv.response_from_proto(reply).vectors

    def upsert(points):
        reply = store.UpsertPoints(
            store_conv.upsert_request_to_proto(points), timeout=timeout, metadata=md["store"]
        )
        return store_conv.write_response_from_proto(reply)

    def delete(deletions):
        reply = store.DeletePoints(
            store_conv.delete_request_to_proto(deletions), timeout=timeout, metadata=md["store"]
        )
        return store_conv.write_response_from_proto(reply)

    policy = fetch_policy(settings)
    log.info("image fetch policy: %s", policy.describe())
    return BatchProcessor(
        embed=embed,
        upsert=upsert,
        delete=delete,
        fetcher=Fetcher(policy),
        limits=EventLimits(
            max_title_chars=settings.max_title_chars,
            max_attributes=settings.max_attributes,
            max_attribute_value_chars=settings.max_attribute_value_chars,
        ),
        encode_batch=settings.encode_batch,
        encode_concurrency=settings.encode_concurrency,
        thumbnail_px=settings.thumbnail_px,
        fetch_concurrency=settings.fetch_concurrency,
        encode_max_bytes=INTERNAL_MAX_MESSAGE_BYTES * 3 // 4,
    )


def fetch_policy(settings: IngestionSettings) -> FetchPolicy:
    """The image fetch policy the settings describe.

    Raises:
        SystemExit: a bad scheme, root or network, naming the variable.
    """
    try:
        return FetchPolicy.parse(
            schemes=settings.fetch_schemes,
            hosts=settings.fetch_hosts,
            file_roots=settings.fetch_file_roots,
            allow_networks=settings.fetch_allow_networks,
            timeout_s=settings.image_fetch_timeout_s,
            attempts=settings.fetch_attempts,
            max_bytes=settings.max_image_bytes,
        )
    except ValueError as e:
        raise SystemExit(f"vitrine: configuration error: {e}") from None


if __name__ == "__main__":
    main()
