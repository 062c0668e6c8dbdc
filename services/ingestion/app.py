"""The ingestion worker process: `vitrine ingest` (or `python -m services.ingestion.app`)."""

from __future__ import annotations

import logging
import signal
import time

from services.ingestion.config import IngestionSettings
from services.ingestion.consumer import IngestionWorker
from services.ingestion.fetching import Fetcher, FetchPolicy
from services.ingestion.metrics import IngestMetrics
from services.ingestion.processor import (
    BatchProcessor,
    EventLimits,
    PoisonError,
)

log = logging.getLogger(__name__)


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
                    "(VITRINE_INGESTION_KAFKA_BOOTSTRAP_SERVERS)"
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
    from shared.serving.auth import caller_internal_token
    from shared.serving.endpoints import INTERNAL_MAX_MESSAGE_BYTES

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
