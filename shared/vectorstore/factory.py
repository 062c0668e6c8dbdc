"""Opens the vector store a location string names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from shared.vectorstore.base import VectorStore, collection_name
from shared.vectorstore.versions import TOMBSTONE_SUFFIX, VersionedWrites

# Opens one collection of the engine: (name, dim, indexed_fields, quantization) -> store.
OpenCollection = Callable[[str, int, dict[str, str], str], VectorStore]


def open_store(
    location: str,
    *,
    model_version: str,
    dim: int,
    indexed_fields: dict[str, str],
    api_key: str | None = None,
    quantization: str = "none",
) -> VectorStore:
    """The collection for `model_version`'s vectors at `location`.

    Args:
        location: `edge:PATH` (Qdrant Edge, embedded), `http(s)://HOST:PORT` (a Qdrant server or
            cluster through qdrant-client; gRPC is preferred when the server offers it),
            `:memory:` or `local:PATH` (qdrant-client's local mode, for small tests).
        model_version: the model bundle whose vectors the collection holds.
        dim: vector dimension.
        indexed_fields: payload fields to index.
        api_key: Qdrant API key for a server.
        quantization: of a new collection's vectors (shared.vectorstore.quantization).
    """
    open_collection = _engine(location, api_key)
    return open_collection(collection_name(model_version), dim, indexed_fields, quantization)


def open_versioned_store(
    location: str,
    *,
    model_version: str,
    dim: int,
    indexed_fields: dict[str, str],
    api_key: str | None = None,
    quantization: str = "none",
) -> VersionedWrites:
    """`open_store`'s collection with its tombstone collection beside it (same engine), behind
    the writer that keeps stale events out (`.store` is the collection itself)."""
    open_collection = _engine(location, api_key)
    collection = collection_name(model_version)
    store = open_collection(collection, dim, indexed_fields, quantization)
    return VersionedWrites(store, open_collection(collection + TOMBSTONE_SUFFIX, 1, {}, "none"))


def _engine(location: str, api_key: str | None) -> OpenCollection:
    """How to open collections at `location`; every collection shares one client."""
    if location.startswith("edge:"):
        from shared.vectorstore.edge import EdgeStore

        root = Path(location.removeprefix("edge:")).expanduser()
        return lambda name, dim, fields, quantization: EdgeStore(
            root, name, dim=dim, indexed_fields=fields, quantization=quantization
        )

    from qdrant_client import QdrantClient

    from shared.vectorstore.qdrant import QdrantStore

    if location == ":memory:":
        client = QdrantClient(":memory:")
    elif location.startswith("local:"):
        client = QdrantClient(path=location.removeprefix("local:"))
    elif location.startswith(("http://", "https://")):
        client = QdrantClient(url=location, api_key=api_key, prefer_grpc=True)
    else:
        raise ValueError(
            f"vector store location {location!r}: use edge:PATH, http(s)://HOST:PORT, :memory: "
            "or local:PATH"
        )
    # One client for all: local mode locks its folder to one client.
    return lambda name, dim, fields, quantization: QdrantStore(
        client, name, dim=dim, indexed_fields=fields, quantization=quantization
    )
