"""The vector store: one interface, two real Qdrant backends (sibling modules).

- `edge.EdgeStore`: Qdrant Edge, Qdrant's Rust engine in-process (the embedded default).
- `qdrant.QdrantStore`: qdrant-client, against a Qdrant server/cluster URL or its local mode.

`open_store(location, ...)` picks one from a location string.
"""

from shared.vectorstore.base import (
    Point,
    StoredPoint,
    StoreError,
    VectorStore,
    point_id,
    product_payload,
)
from shared.vectorstore.factory import open_store

__all__ = [
    "Point",
    "StoreError",
    "StoredPoint",
    "VectorStore",
    "open_store",
    "point_id",
    "product_payload",
]
