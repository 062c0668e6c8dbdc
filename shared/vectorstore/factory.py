"""Opens the vector store a location string names."""

from __future__ import annotations

from pathlib import Path

from shared.vectorstore.base import VectorStore, collection_name


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
    collection = collection_name(model_version)
    if location.startswith("edge:"):
        from shared.vectorstore.edge import EdgeStore

        root = Path(location.removeprefix("edge:")).expanduser()
        return EdgeStore(root, collection, dim=dim, indexed_fields=indexed_fields)

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
    return QdrantStore(client, collection, dim=dim, indexed_fields=indexed_fields)
