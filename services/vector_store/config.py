"""Settings of the vector-store service (a Ray Serve application): VITRINE_VECTOR_STORE_*
variables."""

from __future__ import annotations

from pydantic import Field, SecretStr

from shared.settings import BundleSettings, process_config
from shared.vectorstore.base import DEFAULT_INDEXED_FIELDS


class VectorStoreSettings(BundleSettings):
    model_config = process_config("vector-store")

    store_location: str = Field(
        "edge:artifacts/store",
        description="edge:PATH (embedded Qdrant Edge), http(s)://HOST:PORT (Qdrant server), "
        ":memory: or local:PATH (qdrant-client local mode, small tests only).",
    )
    qdrant_api_key: SecretStr | None = Field(
        None, description="API key of a Qdrant server (a secret: from the environment only)."
    )
    indexed_fields: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_INDEXED_FIELDS),
        description="Payload fields indexed for filters: name -> keyword|integer|float|bool (JSON).",
    )
    optimize_interval_s: float = Field(
        5.0, gt=0, description="How often pending writes are indexed (HNSW) in the embedded engine."
    )
