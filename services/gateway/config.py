"""Settings of the gateway process (the public search API): VITRINE_GATEWAY_* variables."""

from __future__ import annotations

from pydantic import Field, SecretStr

from shared.serving import apps
from shared.settings import SINCE_PREFIXES, InternalCallSettings, process_config
from shared.types import SearchMode


class GatewaySettings(InternalCallSettings):
    model_config = process_config("gateway")

    grpc_port: int = Field(9000, ge=1, le=65535, description="Port of the public gRPC API.")
    http_port: int = Field(
        8000, ge=1, le=65535, description="Port of the HTTP/JSON API and web page."
    )
    default_top_k: int = Field(10, ge=1, description="Hits returned when a request sets no top_k.")
    max_top_k: int = Field(100, ge=1, description="Largest top_k accepted.")
    max_depth: int = Field(
        1000,
        ge=1,
        le=10_000,
        description="Deepest hit a page may reach (offset + top_k); deeper pages are refused.",
        json_schema_extra=SINCE_PREFIXES,
    )
    facet_candidates: int = Field(
        200,
        ge=1,
        le=1000,
        description="Top hits of a query that facets, group_by and the adaptive cut-off look at "
        "(more costs the store and the gateway more per such query).",
        json_schema_extra=SINCE_PREFIXES,
    )
    default_mode: SearchMode = Field(
        SearchMode.HYBRID,
        description="How a text-only query that names no mode is matched: dense (the text "
        "embedding), lexical (BM25 over titles) or hybrid (both, fused by RRF; R@10 0.82 "
        "against dense 0.58 on shopper-worded queries, docs/QUALITY.md). Image and composed "
        "queries that name no mode are dense.",
        json_schema_extra=SINCE_PREFIXES,
    )
    max_request_bytes: int = Field(8 * 2**20, ge=1024, description="Largest request accepted.")
    request_timeout_s: float = Field(10.0, gt=0, description="Deadline when the caller sets none.")
    max_text_chars: int = Field(1000, ge=1, description="Longest query text accepted.")
    max_image_bytes: int = Field(
        8 * 2**20, ge=1024, description="Largest reference image accepted, in bytes."
    )
    max_query_pixels: int = Field(
        40_000_000,
        ge=1,
        description="Most pixels (width*height) of a query's reference image, read from its "
        "header before it is sent on or decoded: RESOURCE_EXHAUSTED past it.",
    )
    http_read_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Time an HTTP request may take to arrive, headers and body, from its first "
        "byte (or the connection's opening); a slower one's connection is closed (slowloris).",
    )
    http_max_connections: int = Field(
        1024,
        ge=1,
        description="HTTP connections served at once; a request arriving past it gets 503.",
    )
    api_keys: SecretStr | None = Field(
        None,
        description="API keys, `NAME:KEY[:SCOPE+SCOPE]` separated by commas (scopes: search, "
        "info); with none here or in api_keys_file every caller is let in (refused in "
        "production unless allow_unauthenticated). A secret: set it from the environment or a "
        "Kubernetes Secret, never in the Serve config.",
    )
    api_keys_file: str | None = Field(
        None, description="A file of API key entries, one per line (a mounted Secret)."
    )
    allow_unauthenticated: bool = Field(
        False,
        description="With environment=production, start without API keys (every caller let "
        "in) on purpose; without it such a gateway refuses to start.",
    )
    tls_cert_file: str | None = Field(
        None, description="PEM certificate chain: with tls_key_file, gRPC and HTTP use TLS."
    )
    tls_key_file: str | None = Field(None, description="PEM private key of tls_cert_file.")
    tls_client_ca_file: str | None = Field(
        None, description="PEM CA of client certificates: set, every client needs one (mTLS)."
    )
    calls_per_target: int = Field(
        2,
        ge=1,
        le=64,
        description="Coalesced calls the gateway keeps out at once to each replica of a "
        "dependency; queries that arrive meanwhile share the next call.",
    )
    # The applications this gateway calls: the platform's own (shared/serving/apps.py) unless a
    # Serve config's `args` point a second gateway elsewhere (the degraded-mode tests do).
    query_log_sample_ratio: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Share of answered queries written as a JSON line to the gateway's log "
        "(trace id, kind, hits, stage timings, status; never the query's words, image or key). "
        "Failed queries are always logged.",
        json_schema_extra=SINCE_PREFIXES,
    )
    image_encoder_app: str = Field(apps.IMAGE_ENCODER, description="Serve application name.")
    text_encoder_app: str = Field(apps.TEXT_ENCODER, description="Serve application name.")
    fusion_app: str = Field(apps.FUSION, description="Serve application name.")
    vector_store_app: str = Field(apps.VECTOR_STORE, description="Serve application name.")
