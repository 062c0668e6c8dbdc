"""Conversions at the vector store's boundary (vitrine.store.v1).

Vectors travel as float32 little-endian bytes. Payloads travel as `google.protobuf.Struct`,
whose numbers are doubles: integral values are read back as ints, so `{"year": 2020}` survives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from google.protobuf import json_format

from shared.api.vitrine.store.v1 import store_pb2 as pb
from shared.conversions.search import (
    each_from_proto,
    filter_from_proto,
    filter_to_proto,
    hit_from_proto,
    hit_to_proto,
    mode_from_proto,
    mode_to_proto,
    whole_numbers,
)
from shared.types import Hit, SearchMode
from shared.vectorstore.base import (
    Deletion,
    Point,
    PointQuery,
    RetrieveQuery,
    StoredPoint,
    WriteResult,
)
from shared.vectorstore.lexical import DEFAULT_RRF_K
from shared.vectorstore.versions import PayloadUpdate

_F32_LE = np.dtype("<f4")


def _vector_bytes(vector: np.ndarray | None) -> bytes:
    return b"" if vector is None else np.ascontiguousarray(vector, dtype=_F32_LE).tobytes()


def _vector(data: bytes, *, name: str) -> np.ndarray:
    if len(data) % _F32_LE.itemsize:
        raise ValueError(f"{name}: {len(data)} bytes is not a whole number of float32 values")
    return np.frombuffer(data, dtype=_F32_LE)


def payload_from_struct(struct) -> dict[str, Any]:
    return whole_numbers(json_format.MessageToDict(struct))


def _point_to_proto(
    product_id: str, vector: np.ndarray | None, payload: dict, version: int = 0
) -> pb.Point:
    msg = pb.Point(product_id=product_id, vector=_vector_bytes(vector), version=version)
    msg.payload.update(payload)
    return msg


def search_request_to_proto(query: PointQuery) -> pb.SearchPointsRequest:
    msg = pb.SearchPointsRequest(
        vector=_vector_bytes(query.vector),
        top_k=query.top_k,
        exact=query.exact,
        text=query.text,
        mode=mode_to_proto(query.mode),
        rrf_k=query.rrf_k,
        offset=query.offset,
        diversity=query.diversity,
        positives=[_vector_bytes(v) for v in query.positives],
        negatives=[_vector_bytes(v) for v in query.negatives],
    )
    if query.filter is not None:
        msg.filter.CopyFrom(filter_to_proto(query.filter))
    if query.score_threshold is not None:
        msg.score_threshold = query.score_threshold
    return msg


def search_request_from_proto(msg: pb.SearchPointsRequest) -> PointQuery:
    """Raises ValueError for a malformed vector, filter or mode."""
    flt = filter_from_proto(msg.filter) if msg.HasField("filter") else None
    if flt is not None and flt.is_empty():
        flt = None
    mode = mode_from_proto(msg.mode) or SearchMode.DENSE
    # No vector: a lexical query, or one by example vectors only (the store checks which).
    vector = _vector(msg.vector, name="vector") if msg.vector else None
    return PointQuery(
        vector,
        msg.top_k,
        flt,
        msg.exact,
        text=msg.text,
        mode=mode,
        rrf_k=msg.rrf_k or DEFAULT_RRF_K,
        offset=msg.offset,
        score_threshold=msg.score_threshold if msg.HasField("score_threshold") else None,
        diversity=msg.diversity,
        positives=tuple(_vector(v, name="positive") for v in msg.positives),
        negatives=tuple(_vector(v, name="negative") for v in msg.negatives),
    )


def search_response_to_proto(hits: Sequence[Hit]) -> pb.SearchPointsResponse:
    return pb.SearchPointsResponse(hits=[hit_to_proto(h) for h in hits])


def search_response_from_proto(msg: pb.SearchPointsResponse) -> list[Hit]:
    """Hits whose payloads stay in their Structs until read (StructPayload)."""
    return [hit_from_proto(h) for h in msg.hits]


def search_batch_request_to_proto(queries: Sequence[PointQuery]) -> pb.SearchPointsBatchRequest:
    return pb.SearchPointsBatchRequest(queries=[search_request_to_proto(q) for q in queries])


def search_batch_request_from_proto(msg: pb.SearchPointsBatchRequest) -> list[PointQuery]:
    """Raises ValueError for a malformed vector or filter in any query (naming which)."""
    return each_from_proto(search_request_from_proto, msg.queries)


def search_batch_response_to_proto(
    results: Sequence[Sequence[Hit]],
) -> pb.SearchPointsBatchResponse:
    return pb.SearchPointsBatchResponse(results=[search_response_to_proto(r) for r in results])


def search_batch_response_from_proto(msg: pb.SearchPointsBatchResponse) -> list[list[Hit]]:
    return [search_response_from_proto(r) for r in msg.results]


def retrieve_request_to_proto(query: RetrieveQuery) -> pb.RetrievePointsRequest:
    return pb.RetrievePointsRequest(
        product_ids=list(query.product_ids),
        with_vectors=query.with_vectors,
        without_payload=not query.with_payload,
    )


def retrieve_request_from_proto(msg: pb.RetrievePointsRequest) -> RetrieveQuery:
    return RetrieveQuery(tuple(msg.product_ids), msg.with_vectors, not msg.without_payload)


def retrieve_response_to_proto(points: Sequence[StoredPoint]) -> pb.RetrievePointsResponse:
    return pb.RetrievePointsResponse(
        points=[_point_to_proto(p.product_id, p.vector, p.payload) for p in points]
    )


def retrieve_response_from_proto(msg: pb.RetrievePointsResponse) -> list[StoredPoint]:
    return [
        StoredPoint(
            p.product_id,
            payload_from_struct(p.payload),
            _vector(p.vector, name=f"point {p.product_id!r}") if p.vector else None,
        )
        for p in msg.points
    ]


def upsert_request_to_proto(points: Sequence[Point]) -> pb.UpsertPointsRequest:
    return pb.UpsertPointsRequest(
        points=[_point_to_proto(p.product_id, p.vector, p.payload, p.version) for p in points]
    )


def upsert_request_from_proto(msg: pb.UpsertPointsRequest) -> list[Point]:
    """Raises ValueError for a point without a vector or with a malformed one."""
    points = []
    for p in msg.points:
        if not p.vector:
            raise ValueError(f"point {p.product_id!r} has no vector")
        vector = _vector(p.vector, name=f"point {p.product_id!r}")
        points.append(Point(p.product_id, vector, payload_from_struct(p.payload), p.version))
    return points


def delete_request_to_proto(deletions: Sequence[Deletion]) -> pb.DeletePointsRequest:
    """Versions travel only when some delete has one."""
    msg = pb.DeletePointsRequest(product_ids=[d.product_id for d in deletions])
    if any(d.version for d in deletions):
        msg.versions.extend(d.version for d in deletions)
    return msg


def delete_request_from_proto(msg: pb.DeletePointsRequest) -> tuple[Deletion, ...]:
    """Raises ValueError when versions are given but not one per product id."""
    if msg.versions and len(msg.versions) != len(msg.product_ids):
        raise ValueError(
            f"{len(msg.versions)} versions for {len(msg.product_ids)} product ids; give one "
            "per product id or none"
        )
    versions = msg.versions or [0] * len(msg.product_ids)
    return tuple(Deletion(pid, v) for pid, v in zip(msg.product_ids, versions, strict=True))


def update_request_to_proto(updates: Sequence[PayloadUpdate]) -> pb.UpdatePayloadsRequest:
    msg = pb.UpdatePayloadsRequest()
    for u in updates:
        one = msg.updates.add(product_id=u.product_id, version=u.version)
        if u.title is not None:
            one.title = u.title
        one.attributes.update(u.attributes)
    return msg


def update_request_from_proto(msg: pb.UpdatePayloadsRequest) -> tuple[PayloadUpdate, ...]:
    return tuple(
        PayloadUpdate(
            u.product_id,
            u.title if u.HasField("title") else None,
            dict(u.attributes),
            u.version,
        )
        for u in msg.updates
    )


MAX_SCROLL_LIMIT = 1024
DEFAULT_SCROLL_LIMIT = 256


@dataclass(frozen=True)
class ScrollQuery:
    offset: str | None = None
    limit: int = DEFAULT_SCROLL_LIMIT
    with_vectors: bool = False
    tombstones: bool = False


def scroll_request_to_proto(query: ScrollQuery) -> pb.ScrollPointsRequest:
    return pb.ScrollPointsRequest(
        offset=query.offset or "",
        limit=query.limit,
        with_vectors=query.with_vectors,
        tombstones=query.tombstones,
    )


def scroll_request_from_proto(msg: pb.ScrollPointsRequest) -> ScrollQuery:
    """Raises ValueError for a limit over MAX_SCROLL_LIMIT."""
    if msg.limit > MAX_SCROLL_LIMIT:
        raise ValueError(f"limit {msg.limit} is more than {MAX_SCROLL_LIMIT} points a page")
    return ScrollQuery(
        msg.offset or None, msg.limit or DEFAULT_SCROLL_LIMIT, msg.with_vectors, msg.tombstones
    )


def scroll_response_to_proto(
    page: tuple[Sequence[Point], str | None],
) -> pb.ScrollPointsResponse:
    """`page`: (its points, the next page's offset or None)."""
    points, next_offset = page
    return pb.ScrollPointsResponse(
        points=[_point_to_proto(p.product_id, p.vector, p.payload, p.version) for p in points],
        next_offset=next_offset or "",
    )


def scroll_response_from_proto(msg: pb.ScrollPointsResponse) -> tuple[list[Point], str | None]:
    """(the page's points, the next page's offset or None); a point read without its vector
    has an empty one."""
    points = [
        Point(
            p.product_id,
            _vector(p.vector, name=f"point {p.product_id!r}"),
            payload_from_struct(p.payload),
            p.version,
        )
        for p in msg.points
    ]
    return points, msg.next_offset or None


def write_response_to_proto(result: WriteResult) -> pb.WriteResponse:
    return pb.WriteResponse(count=result.count, stale=result.stale)


def write_response_from_proto(msg: pb.WriteResponse) -> WriteResult:
    return WriteResult(msg.count, msg.stale)
