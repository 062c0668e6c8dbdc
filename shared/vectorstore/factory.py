"""Opens the vector store a location string names."""

from __future__ import annotations

from pathlib import Path

from shared.vectorstore.base import VectorStore, collection_name
from shared.vectorstore.versions import TOMBSTONE_SUFFIX, VersionedWrites


def open_store(
    location: str,
    *,
    model_version: str,
    dim: int,
    indexed_fields: dict[str, str],
    api_key: str | None = None,
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
    """
    return _open(location, model_version, dim, indexed_fields, api_key, versioned=False)


def open_versioned_store(
    location: str,
    *,
    model_version: str,
    dim: int,
    indexed_fields: dict[str, str],
    api_key: str | None = None,
) -> VersionedWrites:
    """`open_store`'s collection with its tombstone collection beside it (same engine), behind
    the writer that keeps stale events out (`.store` is the collection itself)."""
    return _open(location, model_version, dim, indexed_fields, api_key, versioned=True)


def _open(location, model_version, dim, indexed_fields, api_key, *, versioned):
    collection = collection_name(model_version)
    if location.startswith("edge:"):
        from shared.vectorstore.edge import EdgeStore

        root = Path(location.removeprefix("edge:")).expanduser()
        store = EdgeStore(root, collection, dim=dim, indexed_fields=indexed_fields)
        if not versioned:
            return store
        tombstones = EdgeStore(root, collection + TOMBSTONE_SUFFIX, dim=1, indexed_fields={})
        return VersionedWrites(store, tombstones)

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
    store = QdrantStore(client, collection, dim=dim, indexed_fields=indexed_fields)
    if not versioned:
        return store
    # The same client: local mode locks its folder to one client.
    tombstones = QdrantStore(client, collection + TOMBSTONE_SUFFIX, dim=1, indexed_fields={})
    return VersionedWrites(store, tombstones)
