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
from typing import Any

import qdrant_edge as qe

from shared.types import Condition, Filter, Missing, Range, SearchMode
from shared.vectorstore import lexical
from shared.vectorstore import quantization as quantizing
from shared.vectorstore.base import (
    PLATFORM_INDEXES,
    PRODUCT_ID_FIELD,
    PointQuery,
    StoreError,
    StoreInfo,
    VectorStore,
    hit_from_payload,
    ordered_points,
    payload_selector,
    point_id,
    scroll_offset,
    scrolled_points,
    validate_fields,
)
from shared.vectorstore.payload_cache import DEFAULT_POINTS, PayloadCache

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


def _condition(c: Condition) -> qe.FieldCondition | qe.IsEmptyCondition:
    m = c.match
    if isinstance(m, Missing):
        return qe.IsEmptyCondition(key=c.key)
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


lexical_name = lexical.LEXICAL_VECTOR


def _config(dim: int, *, lexical: bool, quantization: str = "none") -> qe.EdgeConfig:
    sparse = {lexical_name: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}
    return qe.EdgeConfig(
        vectors=qe.EdgeVectorParams(
            size=dim,
            distance=qe.Distance.Cosine,
            quantization_config=quantizing.edge_config(quantization),
        ),
        sparse_vectors=sparse if lexical else None,
        hnsw_config=qe.HnswIndexConfig(
            m=16, ef_construct=128, full_scan_threshold=FULL_SCAN_THRESHOLD_KB
        ),
        optimizers=qe.EdgeOptimizersConfig(indexing_threshold=10_000),
    )


def _open_shard(path: Path, dim: int, quantization: str) -> tuple[qe.EdgeShard, bool]:
    """The shard at `path` (created when missing, with `quantization`; an existing shard keeps
    the quantization it was created with) and whether it has the lexical index: a shard
    written before titles were indexed opens without it (lexical queries are refused)."""
    try:
        if not (path.exists() and any(path.iterdir())):
            path.mkdir(parents=True, exist_ok=True)
            config = _config(dim, lexical=True, quantization=quantization)
            return qe.EdgeShard.create(str(path), config), True
        try:
            return qe.EdgeShard.load(str(path), _config(dim, lexical=True)), True
        except Exception as e:  # the engine raises plain Exceptions with its message
            if "incompatible" not in str(e).lower():
                raise
            log.warning("%s has no lexical index (created before it); dense search only", path)
            return qe.EdgeShard.load(str(path), _config(dim, lexical=False)), False
    except Exception as e:
        raise StoreError(f"cannot open Qdrant Edge shard at {path}: {e}") from e


def _dense_query(q: PointQuery, vector) -> qe.Query | None:
    """Nearest to the vector, or, with examples, near a positive and far from the negatives."""
    if not (q.positives or q.negatives):
        return qe.Query.Nearest(vector.tolist()) if vector is not None else None
    positives = [v.tolist() for v in ((vector,) if vector is not None else ()) + q.positives]
    examples = qe.RecommendQuery(positives=positives, negatives=[v.tolist() for v in q.negatives])
    return qe.Query.RecommendBestScore(examples)


def _id_only(payload: dict) -> dict:
    return {PRODUCT_ID_FIELD: payload[PRODUCT_ID_FIELD]}


class EdgeStore(VectorStore):
    """A collection in a Qdrant Edge shard folder `root/collection`.

    Args:
        root: folder holding one shard folder per collection.
        collection: the collection (see `collection_name`).
        dim: vector dimension; must match an existing shard.
        indexed_fields: payload fields to index, name -> keyword | integer | float | bool.
        hnsw_ef: HNSW search beam width.
        quantization: of a new shard's vectors (shared.vectorstore.quantization).
        payload_cache_points: payloads kept in memory for search hits (`PayloadCache`); 0
            reads every hit's payload from the engine.
    """

    def __init__(
        self,
        root: Path,
        collection: str,
        *,
        dim: int,
        indexed_fields: dict[str, str],
        hnsw_ef: int = 64,
        quantization: str = "none",
        payload_cache_points: int = DEFAULT_POINTS,
    ) -> None:
        self.collection, self.dim = collection, dim
        self._payloads = PayloadCache(payload_cache_points)
        self._quantization = quantizing.edge_search(quantizing.check(quantization))
        self._fields = validate_fields(indexed_fields)
        self._hnsw_ef = hnsw_ef
        self._lock = threading.Lock()  # serialises writes and optimize against each other
        self._shard: qe.EdgeShard | None = None  # None once closed
        self._shard, self.lexical = _open_shard(Path(root) / collection, dim, quantization)
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
        for name in PLATFORM_INDEXES:
            if name not in existing:
                self._open_shard.update(
                    qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword)
                )

    def upsert(self, points):
        rows = self._check_points(points)
        if not rows:
            return
        batch = [qe.Point(pid, self._vectors(vec, payload), payload) for pid, vec, payload in rows]
        with self._lock:
            try:
                self._open_shard.update(qe.UpdateOperation.upsert_points(batch))
                self._open_shard.flush()
            finally:
                self._payloads.written([p.id for p in batch])

    def _vectors(self, vector: list[float], payload: dict):
        if not self.lexical:
            return vector
        return {"": vector, lexical_name: qe.SparseVector(*lexical.document_vector(payload))}

    def delete(self, product_ids: Sequence[str]) -> None:
        if not product_ids:
            return
        ids: list[Any] = [point_id(p) for p in product_ids]
        with self._lock:
            try:
                self._open_shard.update(qe.UpdateOperation.delete_points(ids))
                self._open_shard.flush()
            finally:
                self._payloads.written(ids)

    def _request(
        self, q: PointQuery, *, ids_only: bool = False, with_payload: bool = True
    ) -> qe.QueryRequest | None:
        """The engine's request for `q`; None when it cannot match anything (a lexical query
        with no indexable word)."""
        vector = self._check_query(q, lexical=self.lexical)
        words = lexical.query_vector(q.text) if q.mode is not SearchMode.DENSE else ([], [])
        flt = edge_filter(q.filter)
        params = qe.SearchParams(
            hnsw_ef=max(self._hnsw_ef, q.offset + q.top_k),
            exact=q.exact,
            quantization=self._quantization,
        )
        dense = _dense_query(q, vector)
        sparse = qe.Query.Nearest(qe.SparseVector(*words), using=lexical_name) if words[0] else None
        # The stub types a fusion as qe.Fusion, whose Rrf is a nested class.
        query: Any = dense or sparse
        prefetches = None
        if dense is not None and sparse is not None:  # hybrid
            prefetches = [
                qe.Prefetch(limit=q.candidates, query=branch, filter=flt, params=params)
                for branch in (dense, sparse)
            ]
            query = qe.Fusion.Rrf(k=q.rrf_k)
        if query is None:
            return None
        if q.diversity and (mmr := q.mmr_vector) is not None:
            # Maximal Marginal Relevance over the ranking's top candidates.
            inner = qe.Prefetch(
                limit=q.candidates, query=query, prefetches=prefetches, filter=flt, params=params
            )
            query = qe.Mmr(mmr.tolist(), 1.0 - q.diversity, q.candidates)
            prefetches = [inner]
        return qe.QueryRequest(
            limit=q.top_k,
            offset=q.offset or None,
            query=query,
            prefetches=prefetches,
            filter=flt,
            with_payload=payload_selector(not ids_only) if with_payload else False,
            score_threshold=q.score_threshold,
            params=None if prefetches else params,
        )

    def _query_batch(self, queries, *, ids_only):
        cached = self._payloads.points > 0
        requests = [
            self._request(q, ids_only=i, with_payload=not cached)
            for q, i in zip(queries, ids_only, strict=True)
        ]
        asked = [r for r in requests if r is not None]
        found = self._open_shard.query_batch(qe.QueryBatchRequest(asked)) if asked else []
        payloads = self._hit_payloads(found) if cached else None
        rankings = iter(found)
        hits = []
        for r, only_id in zip(requests, ids_only, strict=True):
            scored = next(rankings) if r is not None else []
            if payloads is None:
                hits.append([hit_from_payload(p.payload, p.score) for p in scored])
                continue
            hits.append(
                [
                    hit_from_payload(_id_only(stored) if only_id else stored, p.score)
                    for p in scored
                    if (stored := payloads.get(p.id)) is not None  # deleted since it was found
                ]
            )
        return hits

    def _hit_payloads(self, rankings) -> dict[Any, dict]:
        """The stored payload of every point in `rankings`: from the cache, the rest read from
        the engine in one call (and cached)."""
        ids = list({p.id: None for ranking in rankings for p in ranking})
        payloads = {
            i: p for i, p in zip(ids, self._payloads.get(ids), strict=True) if p is not None
        }
        missing = [i for i in ids if i not in payloads]
        if missing:
            generation = self._payloads.generation()
            read: list[tuple[Any, dict]] = [
                (r.id, r.payload)
                for r in self._open_shard.retrieve(missing, with_payload=True, with_vector=False)
                if r.payload is not None
            ]
            self._payloads.fill(read, generation)
            payloads.update(read)
        return payloads

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

    def scroll(self, offset, limit, *, with_vectors=False):
        records, following = self._open_shard.scroll(
            qe.ScrollRequest(
                offset=scroll_offset(offset),
                limit=limit,
                with_payload=True,
                with_vector=with_vectors,
            )
        )
        points = scrolled_points(
            [(r.payload, r.vector) for r in records], with_vectors=with_vectors
        )
        return points, None if following is None else str(following)

    def count(self, filter=None):
        return self._open_shard.count(qe.CountRequest(exact=True, filter=edge_filter(filter)))

    def info(self):
        info = self._open_shard.info()
        fields = {
            k: _SCHEMA_NAMES.get(v.data_type, str(v.data_type))
            for k, v in info.payload_schema.items()
            if k not in PLATFORM_INDEXES
        }
        return StoreInfo(
            self.collection,
            self.dim,
            info.points_count,
            info.indexed_vectors_count,
            fields,
            self.lexical,
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
