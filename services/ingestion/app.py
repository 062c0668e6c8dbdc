"""The ingestion worker process: `vitrine ingest` (or `python -m services.ingestion.app`)."""

from __future__ import annotations

import logging
import signal
import threading

from services.ingestion.config import IngestionSettings
from services.ingestion.worker import (
    REASON_HEADER,
    BatchProcessor,
    BatchResult,
    PoisonError,
    with_retries,
)

log = logging.getLogger(__name__)

# Group-join settings measured in docs ENVIRONMENT.md (defaults waited about 23 s to join).
GROUP_TIMING = {
    "max_poll_interval_ms": 300_000,
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 1000,
}


class IngestionWorker:
    """A Kafka consumer-group member feeding a BatchProcessor; commits after the store acked."""

    def __init__(self, settings: IngestionSettings, processor: BatchProcessor) -> None:
        from kafka import KafkaConsumer, KafkaProducer

        self._settings, self._processor = settings, processor
        self._consumer = KafkaConsumer(
            settings.catalog_topic,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=settings.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.batch_size,
            max_partition_fetch_bytes=settings.max_image_bytes * 2,
            fetch_max_bytes=64 * 2**20,
            **GROUP_TIMING,
        )
        self._dlq = KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            acks="all",
            max_request_size=settings.max_image_bytes * 2,
        )
        self.stopping = threading.Event()

    def run_once(self, timeout_ms: int = 1000) -> BatchResult:
        """One poll: validate, dead-letter the poison, write the rest, then commit."""
        polled = self._consumer.poll(timeout_ms=timeout_ms)
        records = [r for batch in polled.values() for r in batch]
        result = BatchResult()
        if not records:
            return result
        good = []
        for record in records:
            try:
                good.append(self._processor.validate(record.value, record.headers))
            except PoisonError as e:
                self._dead_letter(record, str(e))
                result.dead_lettered += 1
                result.reasons.append(str(e))
        if self._dead_letters_pending:
            self._dlq.flush()  # dead letters are durable before their offsets are committed
            self._dead_letters_pending = False
        written = with_retries(lambda: self._processor.write(good), stop=self.stopping.is_set)
        self._consumer.commit()
        result.upserted, result.deleted = written.upserted, written.deleted
        log.info(
            "batch: %d records, %d upserted, %d deleted, %d dead-lettered",
            len(records),
            result.upserted,
            result.deleted,
            result.dead_lettered,
        )
        return result

    _dead_letters_pending = False

    def _dead_letter(self, record, reason: str) -> None:
        headers = list(record.headers or []) + [
            (REASON_HEADER, reason.encode()),
            ("vitrine-source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
        ]
        self._dlq.send(
            self._settings.dlq_topic, key=record.key, value=record.value, headers=headers
        )
        self._dead_letters_pending = True
        log.warning(
            "dead-lettered %s/%d/%d: %s", record.topic, record.partition, record.offset, reason
        )

    def run(self) -> None:
        """Until `stopping` is set; the batch in hand is finished first."""
        while not self.stopping.is_set():
            self.run_once()
        self.close()

    def close(self) -> None:
        self._consumer.close()
        self._dlq.close()


def main() -> None:
    from shared.logs import setup_logging
    from shared.settings import load_settings_or_exit

    settings = load_settings_or_exit(IngestionSettings)
    setup_logging(settings.log_level)
    processor = grpc_processor(settings)
    worker = IngestionWorker(settings, processor)
    signal.signal(signal.SIGTERM, lambda *_: worker.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: worker.stopping.set())
    log.info("ingesting %s from %s", settings.catalog_topic, settings.kafka_bootstrap_servers)
    worker.run()


def grpc_processor(settings: IngestionSettings) -> BatchProcessor:
    """A processor calling the image encoder and the vector store over gRPC."""
    import grpc

    from shared.api.vitrine.image_encoder.v1 import image_encoder_pb2_grpc
    from shared.api.vitrine.store.v1 import store_pb2_grpc
    from shared.conversions import image_encoder as image_conv
    from shared.conversions import store as store_conv

    options = [
        ("grpc.max_send_message_length", 64 * 2**20),
        ("grpc.max_receive_message_length", 64 * 2**20),
    ]
    encoder = image_encoder_pb2_grpc.ImageEncoderServiceStub(
        grpc.insecure_channel(settings.image_encoder_address, options=options)
    )
    store = store_pb2_grpc.VectorStoreServiceStub(
        grpc.insecure_channel(settings.vector_store_address, options=options)
    )
    md = {
        "encoder": (("application", "image-encoder"),),
        "store": (("application", "vector-store"),),
    }

    def embed(images):
        reply = encoder.EmbedImages(
            image_conv.request_to_proto(images), timeout=60, metadata=md["encoder"]
        )
        return image_conv.response_from_proto(reply).vectors

    def upsert(points):
        store.UpsertPoints(
            store_conv.upsert_request_to_proto(points), timeout=60, metadata=md["store"]
        )

    def delete(ids):
        store.DeletePoints(
            store_conv.delete_request_to_proto(ids), timeout=60, metadata=md["store"]
        )

    return BatchProcessor(
        embed=embed,
        upsert=upsert,
        delete=delete,
        max_image_bytes=settings.max_image_bytes,
        image_fetch_timeout_s=settings.image_fetch_timeout_s,
    )


if __name__ == "__main__":
    main()
