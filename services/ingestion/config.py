"""Settings of the ingestion worker process (a Kafka consumer): VITRINE_INGESTION_* variables."""

from __future__ import annotations

from pydantic import Field

from shared.serving import apps
from shared.settings import SINCE_PREFIXES, InternalCallSettings, LogLevel, process_config


class IngestionSettings(InternalCallSettings):
    model_config = process_config("ingestion")

    log_level: LogLevel = "INFO"
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", min_length=1, description="host:port[,host:port]"
    )
    catalog_topic: str = Field(
        "vitrine.catalog.v1", min_length=1, description="Topic of catalog events."
    )
    dlq_topic: str = Field("vitrine.catalog.v1.dlq", min_length=1, description="Dead-letter topic.")
    consumer_group: str = Field(
        "vitrine-ingestion", min_length=1, description="Kafka consumer group."
    )
    batch_size: int = Field(
        256,
        ge=1,
        le=10_000,
        description="Most events handled per poll. The encoder waits at each batch's end (last "
        "write, commit, next poll): 256 keeps that wait under a tenth of the batch.",
    )
    max_image_bytes: int = Field(10 * 2**20, ge=1024, description="Largest image accepted.")
    image_fetch_timeout_s: float = Field(
        10.0,
        gt=0,
        le=120,
        description="Total deadline of one attempt to fetch an image URI (connect, redirects, "
        "every read).",
    )
    fetch_schemes: str = Field(
        "http,https",
        description="URI schemes image_uri may use, comma-separated (http, https, file; file "
        "also needs VITRINE_INGESTION_FETCH_FILE_ROOTS).",
    )
    fetch_hosts: str = Field(
        "",
        description="Hosts image URIs may name, comma-separated: names, *.suffix, or URL "
        "prefixes (https://cdn.example.com/img/). Empty: any host whose addresses are public.",
    )
    fetch_file_roots: str = Field(
        "", description="Folders file:// image URIs may read from, comma-separated."
    )
    fetch_allow_networks: str = Field(
        "",
        description="Networks (CIDR, comma-separated) image hosts may resolve to although not "
        "public; loopback, private, link-local (cloud metadata) and reserved addresses are "
        "refused otherwise.",
    )
    fetch_attempts: int = Field(
        3,
        ge=1,
        le=10,
        description="Tries of a fetch that failed transiently (timeout, refused, 429, 5xx) "
        "before its record is dead-lettered marked transient (vitrine dlq replay).",
    )
    fetch_concurrency: int = Field(
        16, ge=1, le=256, description="Records of a batch validated and fetched at once."
    )
    max_title_chars: int = Field(1000, ge=1, description="Longest product title accepted.")
    max_attributes: int = Field(64, ge=0, description="Most attributes a product may have.")
    max_attribute_value_chars: int = Field(
        1000, ge=1, description="Longest attribute value accepted."
    )
    metrics_port: int = Field(9102, ge=0, le=65535, description="Prometheus metrics port; 0 = off.")
    metrics_address: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Address the metrics port binds: loopback by default; 0.0.0.0 where a "
        "Prometheus on another host scrapes it (Kubernetes).",
    )
    encode_batch: int = Field(
        32, ge=1, le=1024, description="Images per call to the image encoder."
    )
    encode_concurrency: int = Field(
        2,
        ge=1,
        le=64,
        description="Encoder calls in flight at once (2 keeps the encoder busy while a reply "
        "is written).",
    )
    thumbnail_px: int = Field(
        128,
        ge=0,
        le=512,
        description="Side of the JPEG thumbnail stored in each product's payload (a few KB, "
        "shown by the web page); 0 stores none.",
    )
    call_timeout_s: float = Field(
        60.0, gt=0, description="Deadline of each call to the encoder or the store."
    )
    fetch_max_wait_ms: int = Field(
        100,
        ge=0,
        le=10_000,
        description="How long the broker may hold a fetch for new records (sets the idle "
        "part of publish-to-searchable latency).",
    )
    create_topics: bool = Field(
        True,
        description="Create the catalog and dead-letter topics at start-up when missing "
        "(for the local broker; production declares them as KafkaTopic resources).",
    )
    catalog_partitions: int = Field(
        6, ge=1, le=1000, description="Partitions of a catalog topic this worker creates."
    )
    image_encoder_address: str = Field(
        "127.0.0.1:9100",
        min_length=1,
        description="host:port of the image encoder's gRPC target (`vitrine serve status`).",
    )
    vector_store_address: str = Field(
        "127.0.0.1:9100",
        min_length=1,
        description="host:port of the vector store's gRPC target (`vitrine serve status`).",
    )
    image_encoder_app: str = Field(
        apps.IMAGE_ENCODER,
        min_length=1,
        description="Serve application of the image encoder (another slot's during a model "
        "rollout: `vitrine rollout`).",
        json_schema_extra=SINCE_PREFIXES,
    )
    vector_store_app: str = Field(
        apps.VECTOR_STORE,
        min_length=1,
        description="Serve application of the vector store (another slot's during a model "
        "rollout).",
        json_schema_extra=SINCE_PREFIXES,
    )
