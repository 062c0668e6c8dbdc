"""Settings of the vector-store service (a Ray Serve application): VITRINE_VECTOR_STORE_*
variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from shared.settings import SINCE_PREFIXES, BundleSettings, process_config
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
    quantization: Literal["none", "int8", "binary", "turbo4"] = Field(
        "int8",
        description="Quantization of a new collection's vectors (kept in RAM, searched first, "
        "the best candidates rescored with the originals): none, int8 (scalar), binary, turbo4 "
        "(TurboQuant 4-bit). An existing collection keeps its own. int8 is the cheapest with "
        "recall@10 >= 0.95 with and without filters at 1M vectors (docs/BENCHMARKS.md).",
        json_schema_extra=SINCE_PREFIXES,
    )
