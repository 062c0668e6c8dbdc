"""Serve application builder: `import_path: services.vector_store.app:build_app`."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from ray.serve import Application, Deployment

from services.vector_store.config import VectorStoreSettings
from services.vector_store.deployment import VectorStore
from shared.serving.auth import service_internal_token
from shared.serving.runtime import resolve_bundle
from shared.settings import load_settings


def _absolute(location: str) -> str:
    """Relative folders are resolved where the builder runs, not where the replica starts."""
    for prefix in ("edge:", "local:"):
        if location.startswith(prefix):
            return prefix + str(Path(location.removeprefix(prefix)).expanduser().resolve())
    return location


def build_app(args: dict) -> Application:
    """The vector-store application; `args` (from the Serve config) override VITRINE_* settings."""
    s = load_settings(VectorStoreSettings, **args)
    token = service_internal_token(s, service="vector store")
    embedded = s.store_location.startswith(("edge:", "local:", ":memory:"))
    # @serve.deployment made the class a Deployment; mypy ignores class decorators (mypy#3135).
    deployment = cast(Deployment, VectorStore)
    if embedded:
        deployment = deployment.options(num_replicas=1)
    return deployment.bind(
        internal_token=token,
        tracing=s.tracing(),
        bundle_path=str(resolve_bundle(s.bundle_path)),
        location=_absolute(s.store_location),
        indexed_fields=s.indexed_fields,
        api_key=s.qdrant_api_key,
        optimize_interval_s=s.optimize_interval_s,
        quantization=s.quantization,
    )
