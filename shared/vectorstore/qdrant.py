"""qdrant-client backend: a Qdrant server or cluster by URL (production), or the client's
pure-Python local mode (`:memory:` or a folder) for small tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qdrant_client import QdrantClient
from qdrant_client import models as qm

from shared.catalogs import CATALOG_FIELD
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

_SCHEMA = {
    "keyword": qm.PayloadSchemaType.KEYWORD,
    "integer": qm.PayloadSchemaType.INTEGER,
    "float": qm.PayloadSchemaType.FLOAT,
    "bool": qm.PayloadSchemaType.BOOL,
}
_SCHEMA_NAMES = {v.value: k for k, v in _SCHEMA.items()}


def _condition(c: Condition) -> qm.FieldCondition | qm.IsEmptyCondition:
    m = c.match
    if isinstance(m, Missing):
        return qm.IsEmptyCondition(is_empty=qm.PayloadField(key=c.key))
    if isinstance(m, Range):
        return qm.FieldCondition(key=c.key, range=qm.Range(gt=m.gt, gte=m.gte, lt=m.lt, lte=m.lte))
    if isinstance(m, tuple):
        return qm.FieldCondition(key=c.key, match=qm.MatchAny(any=list(m)))
    return qm.FieldCondition(key=c.key, match=qm.MatchValue(value=m))


def qdrant_filter(f: Filter | None) -> qm.Filter | None:
    if f is None or f.is_empty():
        return None
    return qm.Filter(
        must=[_condition(c) for c in f.must] or None,
        must_not=[_condition(c) for c in f.must_not] or None,
    )


def _dense_query(q: PointQuery, vector) -> Any:
    """Nearest to the vector, or, with examples, near a positive and far from the negatives."""
    if not (q.positives or q.negatives):
        return vector.tolist() if vector is not None else None
    positives = [v.tolist() for v in ((vector,) if vector is not None else ()) + q.positives]
    return qm.RecommendQuery(
        recommend=qm.RecommendInput(
            positive=positives,
            negative=[v.tolist() for v in q.negatives],
            strategy=qm.RecommendStrategy.BEST_SCORE,
        )
    )


class QdrantStore(VectorStore):
    """A collection reached through qdrant-client.

    Args:
        client: a connected client (`QdrantClient(url=...)`, `QdrantClient(":memory:")`, ...).
        collection: the collection; created when missing.
        dim: vector dimension; must match an existing collection.
        indexed_fields: payload fields to index, name -> keyword | integer | float | bool.
        hnsw_ef: HNSW search beam width.
    """

    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        *,
        dim: int,
        indexed_fields: dict[str, str],
        hnsw_ef: int = 64,
        quantization: str = "none",
    ) -> None:
        self._client, self.collection, self.dim = client, collection, dim
        self._quantization = quantizing.check(quantization)
        self._fields = validate_fields(indexed_fields)
        self._hnsw_ef = hnsw_ef
        # Local mode is brute force and ignores payload indexes and search params (it warns).
        self._local = type(client._client).__name__ == "QdrantLocal"
        try:
            self._ensure_collection()
        except StoreError:
            raise
        except Exception as e:
            raise StoreError(f"cannot open Qdrant collection {collection!r}: {e}") from e

    def _ensure_collection(self) -> None:
        if not self._client.collection_exists(self.collection):
            self._client.create_collection(
                self.collection,
                vectors_config=qm.VectorParams(size=self.dim, distance=qm.Distance.COSINE),
                quantization_config=quantizing.qdrant_config(self._quantization),
                sparse_vectors_config={
                    lexical.LEXICAL_VECTOR: qm.SparseVectorParams(modifier=qm.Modifier.IDF)
                },
            )
        config = self._client.get_collection(self.collection).config.params
        # A collection created before titles were indexed has no sparse vector: dense only.
        self.lexical = lexical.LEXICAL_VECTOR in (config.sparse_vectors or {})
        params = config.vectors
        if not isinstance(params, qm.VectorParams):  # named vectors, or none
            raise StoreError(f"collection {self.collection!r} has no single vector: {params!r}")
        if params.size != self.dim:
            raise StoreError(
                f"collection {self.collection!r} holds {params.size}-d vectors, not {self.dim}-d"
            )
        if self._local:
            return
        for name, kind in {**self._fields, PRODUCT_ID_FIELD: "keyword"}.items():
            self._client.create_payload_index(self.collection, name, _SCHEMA[kind], wait=True)
        # The catalog is a tenant index: a Qdrant server keeps each catalog's points together.
        self._client.create_payload_index(
            self.collection,
            CATALOG_FIELD,
            qm.KeywordIndexParams(type=qm.KeywordIndexType.KEYWORD, is_tenant=True),
            wait=True,
        )

    def upsert(self, points):
        rows = self._check_points(points)
        if rows:
            self._client.upsert(
                self.collection,
                [
                    qm.PointStruct(id=pid, vector=self._vectors(vec, payload), payload=payload)
                    for pid, vec, payload in rows
                ],
                wait=True,
            )

    def _vectors(self, vector: list[float], payload: dict):
        if not self.lexical:
            return vector
        indices, values = lexical.document_vector(payload)
        return {"": vector, lexical.LEXICAL_VECTOR: qm.SparseVector(indices=indices, values=values)}

    def delete(self, product_ids: Sequence[str]) -> None:
        if product_ids:
            self._client.delete(
                self.collection,
                qm.PointIdsList(points=[point_id(p) for p in product_ids]),
                wait=True,
            )

    def _params(self, limit: int, exact: bool) -> qm.SearchParams | None:
        if self._local:
            return None
        return qm.SearchParams(
            hnsw_ef=max(self._hnsw_ef, limit),
            exact=exact,
            quantization=quantizing.qdrant_search(self._quantization),
        )

    def _request(self, q: PointQuery, *, ids_only: bool = False) -> qm.QueryRequest | None:
        """The engine's request for `q`; None when it cannot match anything (a lexical query
        with no indexable word)."""
        vector = self._check_query(q, lexical=self.lexical)
        indices, values = (
            lexical.query_vector(q.text) if q.mode is not SearchMode.DENSE else ([], [])
        )
        flt = qdrant_filter(q.filter)
        params = self._params(q.offset + q.top_k, q.exact)
        sparse = qm.SparseVector(indices=indices, values=values) if indices else None
        dense = _dense_query(q, vector)
        query: Any = None
        prefetch: Any = None
        using = None
        if dense is not None and sparse is not None:  # hybrid
            prefetch = [
                qm.Prefetch(query=dense, limit=q.candidates, filter=flt, params=params),
                qm.Prefetch(
                    query=sparse, using=lexical.LEXICAL_VECTOR, limit=q.candidates, filter=flt
                ),
            ]
            query = qm.RrfQuery(rrf=qm.Rrf(k=q.rrf_k))
        elif dense is not None:
            query = dense
        elif sparse is not None:
            query, using = sparse, lexical.LEXICAL_VECTOR
        else:
            return None
        if q.diversity and (mmr := q.mmr_vector) is not None:
            # Maximal Marginal Relevance over the ranking's top candidates.
            prefetch = qm.Prefetch(
                query=query, using=using, prefetch=prefetch, limit=q.candidates, filter=flt
            )
            query = qm.NearestQuery(
                nearest=mmr.tolist(),
                mmr=qm.Mmr(diversity=q.diversity, candidates_limit=q.candidates),
            )
            using = None
        return qm.QueryRequest(
            query=query,
            using=using,
            prefetch=prefetch,
            limit=q.top_k,
            offset=q.offset or None,
            filter=flt,
            with_payload=payload_selector(not ids_only),
            score_threshold=q.score_threshold,
            params=None if prefetch else params,
        )

    def _query_batch(self, queries, *, ids_only):
        requests = [self._request(q, ids_only=i) for q, i in zip(queries, ids_only, strict=True)]
        asked = [r for r in requests if r is not None]
        found = iter(self._client.query_batch_points(self.collection, asked) if asked else [])
        return [
            [hit_from_payload(p.payload, p.score) for p in next(found).points]
            if r is not None
            else []
            for r in requests
        ]

    def retrieve(self, product_ids, *, with_vectors=False, with_payload=True):
        if not product_ids:
            return []
        records = self._client.retrieve(
            self.collection,
            [point_id(p) for p in product_ids],
            with_payload=payload_selector(with_payload),
            with_vectors=with_vectors,
        )
        return ordered_points(
            [(r.payload, r.vector) for r in records], product_ids, with_vectors=with_vectors
        )

    def scroll(self, offset, limit, *, with_vectors=False):
        records, following = self._client.scroll(
            self.collection,
            offset=scroll_offset(offset),
            limit=limit,
            with_payload=True,
            with_vectors=with_vectors,
        )
        points = scrolled_points(
            [(r.payload, r.vector) for r in records], with_vectors=with_vectors
        )
        return points, None if following is None else str(following)

    def count(self, filter=None):
        return self._client.count(
            self.collection, count_filter=qdrant_filter(filter), exact=True
        ).count

    def info(self):
        info = self._client.get_collection(self.collection)
        fields = {
            k: _SCHEMA_NAMES.get(str(getattr(v.data_type, "value", v.data_type)), "keyword")
            for k, v in (info.payload_schema or {}).items()
            if k not in PLATFORM_INDEXES
        }
        return StoreInfo(
            self.collection,
            self.dim,
            info.points_count or 0,
            info.indexed_vectors_count or 0,
            fields,
            self.lexical,
        )

    def close(self):
        self._client.close()
