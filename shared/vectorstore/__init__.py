"""The vector store: one interface, two real Qdrant backends (sibling modules).

- `edge.EdgeStore`: Qdrant Edge, Qdrant's Rust engine in-process (the embedded default).
- `qdrant.QdrantStore`: qdrant-client, against a Qdrant server/cluster URL or its local mode.

`open_store(location, ...)` picks one from a location string.
"""

from shared.vectorstore.base import (
    Deletion,
    Point,
    StoredPoint,
    StoreError,
    VectorStore,
    WriteResult,
    point_id,
    product_payload,
)
from shared.vectorstore.factory import open_store, open_versioned_store
from shared.vectorstore.versions import VersionedWrites

__all__ = [
    "Deletion",
    "Point",
    "StoreError",
    "StoredPoint",
    "VectorStore",
    "VersionedWrites",
    "WriteResult",
    "open_store",
    "open_versioned_store",
    "point_id",
    "product_payload",
]
