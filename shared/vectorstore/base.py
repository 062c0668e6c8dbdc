"""The vector store interface shared by every backend."""

from __future__ import annotations

import abc
import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from shared.catalogs import CATALOG_FIELD
from shared.types import Filter, Hit, SearchMode
from shared.vectorstore.query import TIE_SLACK, PointQuery, same_vector

# Point ids are UUIDv5 of the product id in this namespace: a replayed event overwrites its
# point instead of adding a second one, on every backend and every process.
POINT_ID_NAMESPACE = uuid.UUID("6f1d2a9e-3c57-4b8e-9a0f-5d2b7c1e4a93")

PRODUCT_ID_FIELD = "product_id"
# The version of the event that wrote a point (see `shared.vectorstore.versions`).
VERSION_FIELD = "version"
# Payload keys the platform writes; a feed's attributes may not use them (the ingestion worker
# dead-letters an event that tries), so an attribute can never overwrite a title, a thumbnail,
# the image a result shows, or the version that orders writes.
RESERVED_FIELDS = frozenset(
    {PRODUCT_ID_FIELD, VERSION_FIELD, CATALOG_FIELD, "title", "image_uri", "thumbnail"}
)
# Payload fields every collection indexes for the platform itself (not filter fields of a feed).
PLATFORM_INDEXES = (PRODUCT_ID_FIELD, CATALOG_FIELD)

DEFAULT_INDEXED_FIELDS: dict[str, str] = {
    "gender": "keyword",
    "masterCategory": "keyword",
    "subCategory": "keyword",
    "articleType": "keyword",
    "baseColour": "keyword",
    "season": "keyword",
    "usage": "keyword",
    "category": "keyword",
    "color": "keyword",
    "year": "integer",
    "price": "float",
}
"""Payload fields indexed for filtering by default (name -> keyword | integer | float | bool)."""

FIELD_TYPES = frozenset({"keyword", "integer", "float", "bool"})


class StoreError(RuntimeError):
    """The store refused an operation (wrong dimension, unknown collection, engine error)."""


def point_id(product_id: str) -> str:
    """The store's point id of a product: a UUIDv5 string, stable across processes."""
    if not product_id:
        raise ValueError("product_id must be non-empty")
    return str(uuid.uuid5(POINT_ID_NAMESPACE, product_id))


def product_payload(
    title: str, attributes: dict[str, Any], *, image_uri: str | None = "", thumbnail: str = ""
) -> dict[str, Any]:
    """The payload stored with a product's vector: its title and attributes (filterable), and
    where present the original image's URI and a small inline thumbnail (a data: URI) that a
    result page can show without another request."""
    payload: dict[str, Any] = {"title": title, **attributes}
    if image_uri:
        payload["image_uri"] = image_uri
    if thumbnail:
        payload["thumbnail"] = thumbnail
    return payload


@dataclass(frozen=True, eq=False)
class Point:
    """A product's vector and payload, as written to the store."""

    product_id: str
    vector: np.ndarray  # [dim] float32
    payload: dict[str, Any] = field(default_factory=dict)
    # The event's version; 0 is unversioned (always written). See `shared.vectorstore.versions`.
    version: int = 0

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Point)
            and (self.product_id, self.payload, self.version)
            == (other.product_id, other.payload, other.version)
            and same_vector(self.vector, other.vector)
        )


class Deletion(NamedTuple):
    """A delete of one product; `version` 0 is unversioned (always applied, remembers nothing)."""

    product_id: str
    version: int = 0


@dataclass(frozen=True)
class WriteResult:
    """What a write did: points written or deleted, and writes skipped as stale.

    A dataclass, not a NamedTuple: a tuple's `count` method would shadow the field.
    """

    count: int
    stale: int = 0


@dataclass(frozen=True, eq=False)
class StoredPoint:
    """A point read back from the store."""

    product_id: str
    payload: dict[str, Any]
    vector: np.ndarray | None = None

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, StoredPoint)
            and (self.product_id, self.payload) == (other.product_id, other.payload)
            and same_vector(self.vector, other.vector)
        )


@dataclass(frozen=True)
class RetrieveQuery:
    product_ids: tuple[str, ...]
    with_vectors: bool = False
    with_payload: bool = True


@dataclass(frozen=True)
class StoreInfo:
    collection: str
    dim: int
    points: int
    indexed_vectors: int
    indexed_fields: dict[str, str]
    # Whether titles are indexed for lexical and hybrid search (collections created before
    # the lexical index have none until they are rebuilt).
    lexical: bool = True


class VectorStore(abc.ABC):
    """A collection of product vectors with payload, searched by cosine similarity.

    A store is bound to one collection, named after the model bundle that produced its vectors,
    so vectors of two models never mix.
    """

    collection: str
    dim: int

    @abc.abstractmethod
    def upsert(self, points: Sequence[Point]) -> None:
        """Inserts or overwrites points (keyed by product id); durable when it returns."""

    @abc.abstractmethod
    def delete(self, product_ids: Sequence[str]) -> None:
        """Deletes points; unknown ids are ignored."""

    def search(
        self,
        vector: np.ndarray,
        *,
        top_k: int,
        filter: Filter | None = None,
        exact: bool = False,
    ) -> list[Hit]:
        """The top_k points by cosine similarity to vector [dim], best first."""
        return self.query(PointQuery(vector, top_k, filter, exact))

    def query(self, query: PointQuery) -> list[Hit]:
        """The hits of one query (any mode), best first.

        Raises:
            StoreError: a vector that does not fit, or a lexical query on a collection
                without the lexical index.
        """
        return self.search_batch([query])[0]

    def search_batch(self, queries: Sequence[PointQuery]) -> list[list[Hit]]:
        """`query` for each query, in order, planned by the engine as one batch.

        Lexical and hybrid rankings are full of equal scores (titles alike under BM25, and RRF
        gives the same score to every product at the same ranks), and an engine returns equal
        scores in no fixed order, so one page could repeat a product of the page before. For
        those modes the engine ranks the top offset + top_k + TIE_SLACK by product id only; the
        ranking is ordered by (score, product id) and sliced here, and the page's payloads
        read in one retrieve: the same query pages through one fixed order.
        """
        # (MMR's order is its own, not the scores': a diversified query keeps it.)
        stable = [q.mode is not SearchMode.DENSE and not q.diversity for q in queries]
        asked = [
            dataclasses.replace(q, top_k=q.offset + q.top_k + TIE_SLACK, offset=0) if s else q
            for q, s in zip(queries, stable, strict=True)
        ]
        found = self._query_batch(asked, ids_only=stable)
        pages = [
            sorted(hits, key=lambda h: (-h.score, h.product_id))[q.offset : q.offset + q.top_k]
            if s
            else hits
            for q, s, hits in zip(queries, stable, found, strict=True)
        ]
        wanted = [h.product_id for page, s in zip(pages, stable, strict=True) if s for h in page]
        if not wanted:
            return pages
        payloads = {p.product_id: p.payload for p in self.retrieve(list(dict.fromkeys(wanted)))}
        return [
            [Hit(h.product_id, h.score, payloads.get(h.product_id, {})) for h in page]
            if s
            else page
            for page, s in zip(pages, stable, strict=True)
        ]

    @abc.abstractmethod
    def _query_batch(
        self, queries: Sequence[PointQuery], *, ids_only: Sequence[bool]
    ) -> list[list[Hit]]:
        """The engine's answers to `queries`, in order, in one batch; with `ids_only` a hit's
        payload is left empty (only the product id is read)."""

    @abc.abstractmethod
    def retrieve(
        self, product_ids: Sequence[str], *, with_vectors: bool = False, with_payload: bool = True
    ) -> list[StoredPoint]:
        """The stored points among product_ids, in the order given; missing ids are skipped.
        Without payload their payload is empty."""

    @abc.abstractmethod
    def scroll(
        self, offset: str | None, limit: int, *, with_vectors: bool = False
    ) -> tuple[list[StoredPoint], str | None]:
        """A page of every point, in the engine's id order, from `offset` (None: the first);
        with the next page's offset, None after the last page.

        Raises:
            StoreError: an offset that is not a point id (this store gives point ids).
        """

    @abc.abstractmethod
    def count(self, filter: Filter | None = None) -> int:
        """Number of points (matching filter)."""

    @abc.abstractmethod
    def info(self) -> StoreInfo:
        """Collection name, dimension, size and payload indexes."""

    def optimize(self) -> None:  # noqa: B027 - optional for backends that index on their own
        """Builds pending indexes now (backends that index in the background do nothing)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Flushes and releases the engine (and its folder lock)."""

    def _check_vector(self, vector: np.ndarray) -> np.ndarray:
        vector = np.asarray(vector, dtype=np.float32)
        if vector.ndim != 1 or vector.shape[0] != self.dim:
            raise StoreError(
                f"collection {self.collection!r} holds {self.dim}-d vectors, got shape "
                f"{tuple(vector.shape)}"
            )
        if not np.all(np.isfinite(vector)):
            raise StoreError("vector has NaN or infinite values")
        return vector

    def _check_points(self, points: Sequence[Point]) -> list[tuple[str, list[float], dict]]:
        rows = []
        for p in points:
            vector = self._check_vector(p.vector)
            payload = {**p.payload, PRODUCT_ID_FIELD: p.product_id}
            if p.version:
                payload[VERSION_FIELD] = p.version
            rows.append((point_id(p.product_id), vector.tolist(), payload))
        return rows

    def _check_query(self, query: PointQuery, *, lexical: bool) -> np.ndarray | None:
        """The query's vector, checked; None for a lexical query.

        Raises:
            StoreError: the vector does not fit, a dense or hybrid query has none, or a
                lexical or hybrid query meets a collection without the lexical index.
        """
        if query.mode is not SearchMode.DENSE and not lexical:
            raise StoreError(
                f"collection {self.collection!r} has no lexical index (it was created before "
                f"titles were indexed): {query.mode.value} search needs it; re-index the catalog "
                "into a new collection"
            )
        examples = query.positives + query.negatives
        if query.mode is SearchMode.LEXICAL:
            if examples or query.diversity:
                raise StoreError("a lexical query takes no example vectors and no diversity")
            return None
        for example in examples:
            self._check_vector(example)
        if query.negatives and query.vector is None and not query.positives:
            raise StoreError("negative examples need a vector or a positive example")
        if query.vector is None:
            if query.positives:
                return None
            raise StoreError(f"a {query.mode.value} query needs a vector")
        return self._check_vector(query.vector)

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def collection_name(model_version: str) -> str:
    """The collection for vectors of one model bundle."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in model_version)
    return f"products-{safe}"


def validate_fields(fields: dict[str, str]) -> dict[str, str]:
    bad = {k: v for k, v in fields.items() if v not in FIELD_TYPES}
    if bad:
        raise ValueError(f"unknown payload index types {bad}; use one of {sorted(FIELD_TYPES)}")
    return dict(fields)


def _stored_payload(payload: dict[str, Any] | None) -> dict[str, Any]:
    """An engine's payload; engines type it optional, but every read here asks for one."""
    if payload is None:
        raise StoreError("the engine returned a point without the payload asked for")
    return payload


def hit_from_payload(payload: dict[str, Any] | None, score: float) -> Hit:
    """A search hit from a stored payload (which carries the product id)."""
    fields = dict(_stored_payload(payload))
    product_id = fields.pop(PRODUCT_ID_FIELD)
    return Hit(product_id=product_id, score=float(score), payload=fields)


def payload_selector(with_payload: bool) -> bool | list[str]:
    """What to ask an engine for: the whole payload, or only the product id (which maps the
    engine's records back to product ids)."""
    return True if with_payload else [PRODUCT_ID_FIELD]


def scroll_offset(offset: str | None) -> str | None:
    """A scroll offset checked: None, or a point id (a UUID, as `point_id` makes them).

    Raises:
        StoreError: anything else (it came from a caller).
    """
    if offset is None:
        return None
    try:
        return str(uuid.UUID(offset))
    except ValueError:
        raise StoreError(f"scroll offset {offset[:64]!r} is not a point id") from None


def scrolled_points(
    records: Sequence[tuple[dict[str, Any] | None, Any]], *, with_vectors: bool
) -> list[StoredPoint]:
    """Engine records (payload, vector) of a scroll page as StoredPoints, in the page's order."""
    ids = [_stored_payload(payload)[PRODUCT_ID_FIELD] for payload, _ in records]
    return ordered_points(records, ids, with_vectors=with_vectors)


def ordered_points(
    records: Sequence[tuple[dict[str, Any] | None, Any]],
    product_ids: Sequence[str],
    *,
    with_vectors: bool,
) -> list[StoredPoint]:
    """Engine records (payload, vector) as StoredPoints in the order of product_ids; ids with no
    record are skipped."""
    by_id = {}
    for payload, vector in records:
        stored = _stored_payload(payload)
        if isinstance(vector, dict):  # named vectors: the dense one is unnamed
            vector = vector.get("")
        by_id[stored[PRODUCT_ID_FIELD]] = (stored, vector)
    out = []
    for pid in product_ids:
        if pid not in by_id:
            continue
        payload, vector = by_id[pid]
        vector = np.asarray(vector, dtype=np.float32) if with_vectors else None
        payload = {k: v for k, v in payload.items() if k != PRODUCT_ID_FIELD}
        out.append(StoredPoint(pid, payload, vector))
    return out
