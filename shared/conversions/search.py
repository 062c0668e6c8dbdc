"""Conversions at the gateway's public boundary (vitrine.search.v1)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from google.protobuf import json_format

from shared.api.vitrine.search.v1 import search_pb2 as pb
from shared.types import (
    Condition,
    Facet,
    Filter,
    Hit,
    MatchValue,
    Missing,
    Range,
    SearchMode,
    SearchQuery,
    SearchResult,
    Timing,
)

T = TypeVar("T")

_MODES: dict[SearchMode, Any] = {
    SearchMode.DENSE: pb.SEARCH_MODE_DENSE,
    SearchMode.LEXICAL: pb.SEARCH_MODE_LEXICAL,
    SearchMode.HYBRID: pb.SEARCH_MODE_HYBRID,
}
_MODES_BACK: dict[int, SearchMode] = {v: k for k, v in _MODES.items()}


def mode_to_proto(mode: SearchMode | None) -> Any:
    return pb.SEARCH_MODE_UNSPECIFIED if mode is None else _MODES[mode]


def mode_from_proto(value: int) -> SearchMode | None:
    """None for SEARCH_MODE_UNSPECIFIED. Raises ValueError for a value this version does not
    know (a newer client's)."""
    if value == pb.SEARCH_MODE_UNSPECIFIED:
        return None
    if value not in _MODES_BACK:
        raise ValueError(f"unknown search mode {value}")
    return _MODES_BACK[value]


def _range_to_proto(r: Range) -> pb.Range:
    return pb.Range(**{k: v for k, v in vars(r).items() if v is not None})


def _range_from_proto(msg: pb.Range) -> Range:
    return Range(**{k: getattr(msg, k) for k in ("gt", "gte", "lt", "lte") if msg.HasField(k)})


def condition_to_proto(cond: Condition) -> pb.Condition:
    msg = pb.Condition(key=cond.key)
    match = cond.match
    # bool before int: bool is a subclass of int.
    if isinstance(match, bool):
        msg.boolean = match
    elif isinstance(match, int):
        msg.integer = match
    elif isinstance(match, str):
        msg.keyword = match
    elif isinstance(match, Range):
        msg.range.CopyFrom(_range_to_proto(match))
    elif isinstance(match, tuple):
        msg.any_of.values.extend(match)
    elif isinstance(match, Missing):
        msg.missing = True
    else:
        raise TypeError(f"condition on {cond.key!r}: unsupported match {match!r}")
    return msg


def condition_from_proto(msg: pb.Condition) -> Condition:
    """Raises ValueError for a condition with no key or no match."""
    if not msg.key:
        raise ValueError("filter condition has an empty key")
    kind = msg.WhichOneof("match")
    if kind is None:
        raise ValueError(f"filter condition on {msg.key!r} has no match value")
    readers: dict[str, Callable[[], MatchValue]] = {
        "keyword": lambda: msg.keyword,
        "integer": lambda: msg.integer,
        "boolean": lambda: msg.boolean,
        "range": lambda: _range_from_proto(msg.range),
        "any_of": lambda: tuple(msg.any_of.values),
        "missing": lambda: _missing(msg),
    }
    return Condition(msg.key, readers[kind]())


def _missing(msg: pb.Condition) -> Missing:
    if not msg.missing:
        raise ValueError(f"filter condition on {msg.key!r}: missing must be true")
    return Missing()


def filter_to_proto(flt: Filter) -> pb.Filter:
    return pb.Filter(
        must=[condition_to_proto(c) for c in flt.must],
        must_not=[condition_to_proto(c) for c in flt.must_not],
    )


def filter_from_proto(msg: pb.Filter) -> Filter:
    return Filter(
        must=tuple(condition_from_proto(c) for c in msg.must),
        must_not=tuple(condition_from_proto(c) for c in msg.must_not),
    )


def request_to_proto(query: SearchQuery) -> pb.SearchRequest:
    msg = pb.SearchRequest(
        text=query.text,
        top_k=query.top_k,
        mode=mode_to_proto(query.mode),
        rrf_k=query.rrf_k,
        offset=query.offset,
        page_token=query.page_token,
    )
    if query.image is not None:
        msg.image = query.image
    elif query.product_id is not None:
        msg.product_id = query.product_id
    if not query.filter.is_empty():
        msg.filter.CopyFrom(filter_to_proto(query.filter))
    if query.score_threshold is not None:
        msg.score_threshold = query.score_threshold
    msg.facets.extend(query.facets)
    msg.group_by, msg.group_size = query.group_by, query.group_size
    msg.adaptive_cutoff, msg.diversity = query.adaptive_cutoff, query.diversity
    msg.positive_ids.extend(query.positive_ids)
    msg.negative_ids.extend(query.negative_ids)
    msg.negative_text, msg.catalog = query.negative_text, query.catalog
    if query.text_weight is not None:
        msg.text_weight = query.text_weight
    return msg


def request_from_proto(msg: pb.SearchRequest) -> SearchQuery:
    """Raises ValueError for a malformed filter or an unknown mode; semantic checks are the
    gateway's."""
    reference = msg.WhichOneof("reference")
    return SearchQuery(
        text=msg.text,
        image=msg.image if reference == "image" else None,
        product_id=msg.product_id if reference == "product_id" else None,
        top_k=msg.top_k,
        filter=filter_from_proto(msg.filter),
        mode=mode_from_proto(msg.mode),
        rrf_k=msg.rrf_k,
        offset=msg.offset,
        page_token=msg.page_token,
        score_threshold=msg.score_threshold if msg.HasField("score_threshold") else None,
        facets=tuple(msg.facets),
        group_by=msg.group_by,
        group_size=msg.group_size,
        adaptive_cutoff=msg.adaptive_cutoff,
        diversity=msg.diversity,
        positive_ids=tuple(msg.positive_ids),
        negative_ids=tuple(msg.negative_ids),
        negative_text=msg.negative_text,
        text_weight=msg.text_weight if msg.HasField("text_weight") else None,
        catalog=msg.catalog,
    )


class StructPayload(Mapping):
    """A hit's payload still in its protobuf Struct: turned into Python values only when read,
    and copied as it is into the next message. The gateway passes the store's hits to its caller
    this way: converting each payload (a thumbnail and a dozen fields) to a dict and back cost
    0.35 ms a query, a quarter of the gateway's CPU under load (docs/BENCHMARKS.md)."""

    __slots__ = ("struct", "_plain")

    def __init__(self, struct) -> None:
        self.struct = struct
        self._plain: dict | None = None

    def _values(self) -> dict:
        if self._plain is None:
            self._plain = whole_numbers(json_format.MessageToDict(self.struct))
        return self._plain

    def __getitem__(self, key):
        return self._values()[key]

    def __iter__(self):
        return iter(self._values())

    def __len__(self) -> int:
        return len(self.struct.fields)

    def __repr__(self) -> str:
        return repr(self._values())


def whole_numbers(value: Any) -> Any:
    """Struct keeps every number as a double: whole ones become ints again."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [whole_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: whole_numbers(v) for k, v in value.items()}
    return value


def hit_to_proto(hit: Hit) -> pb.Hit:
    msg = pb.Hit(product_id=hit.product_id, score=hit.score)
    if isinstance(hit.payload, StructPayload):
        msg.payload.CopyFrom(hit.payload.struct)
    else:
        msg.payload.update(hit.payload)
    return msg


def hit_from_proto(msg: pb.Hit) -> Hit:
    return Hit(msg.product_id, msg.score, StructPayload(msg.payload))


def response_to_proto(result: SearchResult) -> pb.SearchResponse:
    t = result.timing
    return pb.SearchResponse(
        hits=[hit_to_proto(h) for h in result.hits],
        model_version=result.model_version,
        timing=pb.Timing(
            encode_ms=t.encode_ms, fuse_ms=t.fuse_ms, search_ms=t.search_ms, total_ms=t.total_ms
        ),
        next_page_token=result.next_page_token,
        mode=mode_to_proto(result.mode),
        facets=[
            pb.Facet(field=f.field, values=[pb.FacetValue(value=v, count=n) for v, n in f.values])
            for f in result.facets
        ],
        candidates=result.candidates,
    )


def response_from_proto(msg: pb.SearchResponse) -> SearchResult:
    t = msg.timing
    return SearchResult(
        hits=tuple(hit_from_proto(h) for h in msg.hits),
        model_version=msg.model_version,
        timing=Timing(t.encode_ms, t.fuse_ms, t.search_ms, t.total_ms),
        next_page_token=msg.next_page_token,
        mode=mode_from_proto(msg.mode),
        facets=tuple(
            Facet(f.field, tuple((v.value, v.count) for v in f.values)) for f in msg.facets
        ),
        candidates=msg.candidates,
    )


def batch_response_to_proto(results) -> pb.SearchBatchResponse:
    return pb.SearchBatchResponse(responses=[response_to_proto(r) for r in results])


def batch_response_from_proto(msg: pb.SearchBatchResponse) -> list[SearchResult]:
    return [response_from_proto(r) for r in msg.responses]


def batch_request_to_proto(queries) -> pb.SearchBatchRequest:
    return pb.SearchBatchRequest(requests=[request_to_proto(q) for q in queries])


def each_from_proto(convert: Callable[[Any], T], messages) -> list[T]:
    """`convert` of each message, in order. Raises ValueError naming the first bad one
    (`query i: ...`)."""
    converted = []
    for i, one in enumerate(messages):
        try:
            converted.append(convert(one))
        except ValueError as e:
            raise ValueError(f"query {i}: {e}") from None
    return converted


def batch_request_from_proto(msg: pb.SearchBatchRequest) -> list[SearchQuery]:
    """Raises ValueError naming the first malformed request."""
    return each_from_proto(request_from_proto, msg.requests)
