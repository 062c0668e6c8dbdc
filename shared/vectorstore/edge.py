"""Qdrant Edge backend: Qdrant's Rust engine in this process, persisted in a folder.

The engine locks its folder, so exactly one process owns a store (the vector-store service
in the embedded default). HNSW indexes are built by `optimize()`, which the owner calls after
writes; until then new points are searched exactly (correct, slower).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import qdrant_edge as qe

from shared.types import Condition, Filter, Range
from shared.vectorstore.base import (
    PRODUCT_ID_FIELD,
    StoreError,
    StoreInfo,
    VectorStore,
    hit_from_payload,
    ordered_points,
    payload_selector,
    point_id,
    validate_fields,
)

log = logging.getLogger(__name__)

_SCHEMA = {
    "keyword": qe.PayloadSchemaType.Keyword,
    "integer": qe.PayloadSchemaType.Integer,
    "float": qe.PayloadSchemaType.Float,
    "bool": qe.PayloadSchemaType.Bool,
}
_SCHEMA_NAMES = {v: k for k, v in _SCHEMA.items()}

# Below this many kilobytes of matching vectors a filtered query scans them exactly; above, it
# walks the HNSW graph with the per-value payload links. Qdrant's default (10 MB, about 10k
# 256-d vectors) made a 10%-selective filter at 100k points an exact scan of 5 ms; at 1 MB the
# graph answers in about a millisecond with the same recall (bench/vectorstore.py).
FULL_SCAN_THRESHOLD_KB = 1000


def _condition(c: Condition) -> qe.FieldCondition:
    m = c.match
    if isinstance(m, Range):
        return qe.FieldCondition(
            key=c.key, range=qe.RangeFloat(gt=m.gt, gte=m.gte, lt=m.lt, lte=m.lte)
        )
    if isinstance(m, tuple):
        return qe.FieldCondition(key=c.key, match=qe.MatchAny(list(m)))
    return qe.FieldCondition(key=c.key, match=qe.MatchValue(m))


def edge_filter(f: Filter | None) -> qe.Filter | None:
    if f is None or f.is_empty():
        return None
    return qe.Filter(
        must=[_condition(c) for c in f.must] or None,
        must_not=[_condition(c) for c in f.must_not] or None,
    )


class EdgeStore(VectorStore):
    """A collection in a Qdrant Edge shard folder `root/collection`.

    Args:
        root: folder holding one shard folder per collection.
        collection: the collection (see `collection_name`).
        dim: vector dimension; must match an existing shard.
        indexed_fields: payload fields to index, name -> keyword | integer | float | bool.
        hnsw_ef: HNSW search beam width.
    """

    def __init__(
        self,
        root: Path,
        collection: str,
        *,
        dim: int,
        indexed_fields: dict[str, str],
        hnsw_ef: int = 64,
    ) -> None:
        self.collection, self.dim = collection, dim
        self._fields = validate_fields(indexed_fields)
        self._hnsw_ef = hnsw_ef
        self._lock = threading.Lock()  # serialises writes and optimize against each other
        path = Path(root) / collection
        config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine),
            hnsw_config=qe.HnswIndexConfig(
                m=16, ef_construct=128, full_scan_threshold=FULL_SCAN_THRESHOLD_KB
            ),
            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=10_000),
        )
        self._shard: qe.EdgeShard | None = None  # None once closed
        try:
            if path.exists() and any(path.iterdir()):
                self._shard = qe.EdgeShard.load(str(path), config)
            else:
                path.mkdir(parents=True, exist_ok=True)
                self._shard = qe.EdgeShard.create(str(path), config)
        except Exception as e:  # the engine raises plain Exceptions with its message
            raise StoreError(f"cannot open Qdrant Edge shard at {path}: {e}") from e
        self._ensure_indexes()

    @property
    def _open_shard(self) -> qe.EdgeShard:
        if self._shard is None:
            raise StoreError(f"collection {self.collection!r} is closed")
        return self._shard

    def _ensure_indexes(self) -> None:
        # Payload indexes must exist before HNSW is built: Qdrant then adds per-value links
        # (payload_m) so filtered HNSW search keeps its recall.
        existing = self._open_shard.info().payload_schema
        for name, kind in self._fields.items():
            if name not in existing:
                self._open_shard.update(qe.UpdateOperation.create_field_index(name, _SCHEMA[kind]))
        if PRODUCT_ID_FIELD not in existing:
            self._open_shard.update(
                qe.UpdateOperation.create_field_index(
                    PRODUCT_ID_FIELD, qe.PayloadSchemaType.Keyword
                )
            )

    def upsert(self, points):
        rows = self._check_points(points)
        if not rows:
            return
        batch = [qe.Point(pid, vec, payload) for pid, vec, payload in rows]
        with self._lock:
            self._open_shard.update(qe.UpdateOperation.upsert_points(batch))
            self._open_shard.flush()

    def delete(self, product_ids: Sequence[str]) -> None:
        if not product_ids:
            return
        with self._lock:
            self._open_shard.update(
                qe.UpdateOperation.delete_points([point_id(p) for p in product_ids])
            )
            self._open_shard.flush()

    def _request(self, vector, top_k: int, filter: Filter | None, exact: bool) -> qe.QueryRequest:
        vector = self._check_vector(vector)
        return qe.QueryRequest(
            limit=top_k,
            query=qe.Query.Nearest(vector.tolist()),
            filter=edge_filter(filter),
            with_payload=True,
            params=qe.SearchParams(hnsw_ef=max(self._hnsw_ef, top_k), exact=exact),
        )

    def search(self, vector, *, top_k, filter=None, exact=False):
        request = self._request(vector, top_k, filter, exact)
        return [hit_from_payload(p.payload, p.score) for p in self._open_shard.query(request)]

    def search_batch(self, queries):
        if not queries:
            return []
        requests = [self._request(q.vector, q.top_k, q.filter, q.exact) for q in queries]
        found = self._open_shard.query_batch(qe.QueryBatchRequest(requests))
        return [[hit_from_payload(p.payload, p.score) for p in points] for points in found]

    def retrieve(self, product_ids, *, with_vectors=False, with_payload=True):
        if not product_ids:
            return []
        records = self._open_shard.retrieve(
            [point_id(p) for p in product_ids],
            with_payload=payload_selector(with_payload),
            with_vector=with_vectors,
        )
        return ordered_points(
            [(r.payload, r.vector) for r in records], product_ids, with_vectors=with_vectors
        )

    def count(self, filter=None):
        return self._open_shard.count(qe.CountRequest(exact=True, filter=edge_filter(filter)))

    def info(self):
        info = self._open_shard.info()
        fields = {
            k: _SCHEMA_NAMES.get(v.data_type, str(v.data_type))
            for k, v in info.payload_schema.items()
            if k != PRODUCT_ID_FIELD
        }
        return StoreInfo(
            self.collection, self.dim, info.points_count, info.indexed_vectors_count, fields
        )

    def optimize(self) -> None:
        with self._lock:
            if self._open_shard.optimize():
                log.info("collection %s: indexes rebuilt", self.collection)

    def close(self):
        with self._lock:
            shard, self._shard = self._shard, None
            if shard is not None:
                shard.flush()
                shard.close()
