"""The ingestion worker process: `vitrine ingest` (or `python -m services.ingestion.app`)."""

from __future__ import annotations

import logging
import signal
import time

from services.ingestion.config import IngestionSettings
from services.ingestion.consumer import IngestionWorker
from services.ingestion.fetch_policy import FetchPolicy
from services.ingestion.fetching import Fetcher
from services.ingestion.metrics import IngestMetrics
from services.ingestion.processor import BatchProcessor, PoisonError
from services.ingestion.validation import EventLimits
from shared.serving.auth import InternalToken, caller_internal_token
from shared.serving.clients import ImageEncoderClient, VectorStoreClient, shared_loop
from shared.serving.endpoints import INTERNAL_MAX_MESSAGE_BYTES
from shared.serving.errors import RequestError

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
    from shared.observability import tracing
    from shared.settings import load_settings_or_exit

    settings = load_settings_or_exit(IngestionSettings)
    setup_logging(settings.log_level)
    tracing.setup("ingestion", settings.tracing())
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


def grpc_processor(
    settings: IngestionSettings, *, token: InternalToken | None = None
) -> BatchProcessor:
    """The batch processor of the worker and of `vitrine index`: it calls the image encoder and
    the vector store through their clients (shared.serving.clients) at the settings' addresses.

    Args:
        token: the internal token the calls carry; None: the settings'.

    Raises:
        ValueError: no internal token.
        SystemExit: a bad fetch policy setting.
    """
    token = token or caller_internal_token(settings, caller="the ingestion worker")
    # Synchronous calls (the processor's threads) into the async clients, on one loop thread.
    run, timeout = shared_loop().run, settings.call_timeout_s
    encoder = ImageEncoderClient(
        settings.image_encoder_app, targets=[settings.image_encoder_address], internal_token=token
    )
    store = VectorStoreClient(
        settings.vector_store_app, targets=[settings.vector_store_address], internal_token=token
    )

    def embed(images: list[bytes]):
        try:
            return run(encoder.embed_many(images, timeout_s=timeout)).vectors
        except RequestError as e:  # INVALID_ARGUMENT, RESOURCE_EXHAUSTED: these images' fault
            raise PoisonError(str(e)) from None

    policy = fetch_policy(settings)
    log.info("image fetch policy: %s", policy.describe())
    return BatchProcessor(
        embed=embed,
        upsert=lambda points: run(store.upsert(points, timeout_s=timeout)),
        delete=lambda deletions: run(store.delete(deletions, timeout_s=timeout)),
        update=lambda updates: run(store.update(updates, timeout_s=timeout)),
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
