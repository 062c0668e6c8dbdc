from google.protobuf import struct_pb2 as _struct_pb2
from shared.api.vitrine.search.v1 import search_pb2 as _search_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Point(_message.Message):
    __slots__ = ("product_id", "vector", "payload", "version")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    vector: bytes
    payload: _struct_pb2.Struct
    version: int
    def __init__(self, product_id: _Optional[str] = ..., vector: _Optional[bytes] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., version: _Optional[int] = ...) -> None: ...

class SearchPointsRequest(_message.Message):
    __slots__ = ("vector", "top_k", "filter", "exact", "text", "mode", "rrf_k", "offset", "score_threshold", "diversity", "positives", "negatives")
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    RRF_K_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DIVERSITY_FIELD_NUMBER: _ClassVar[int]
    POSITIVES_FIELD_NUMBER: _ClassVar[int]
    NEGATIVES_FIELD_NUMBER: _ClassVar[int]
    vector: bytes
    top_k: int
    filter: _search_pb2.Filter
    exact: bool
    text: str
    mode: _search_pb2.SearchMode
    rrf_k: int
    offset: int
    score_threshold: float
    diversity: float
    positives: _containers.RepeatedScalarFieldContainer[bytes]
    negatives: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, vector: _Optional[bytes] = ..., top_k: _Optional[int] = ..., filter: _Optional[_Union[_search_pb2.Filter, _Mapping]] = ..., exact: _Optional[bool] = ..., text: _Optional[str] = ..., mode: _Optional[_Union[_search_pb2.SearchMode, str]] = ..., rrf_k: _Optional[int] = ..., offset: _Optional[int] = ..., score_threshold: _Optional[float] = ..., diversity: _Optional[float] = ..., positives: _Optional[_Iterable[bytes]] = ..., negatives: _Optional[_Iterable[bytes]] = ...) -> None: ...

class SearchPointsResponse(_message.Message):
    __slots__ = ("hits",)
    HITS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[_search_pb2.Hit]
    def __init__(self, hits: _Optional[_Iterable[_Union[_search_pb2.Hit, _Mapping]]] = ...) -> None: ...

class SearchPointsBatchRequest(_message.Message):
    __slots__ = ("queries",)
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    queries: _containers.RepeatedCompositeFieldContainer[SearchPointsRequest]
    def __init__(self, queries: _Optional[_Iterable[_Union[SearchPointsRequest, _Mapping]]] = ...) -> None: ...

class SearchPointsBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SearchPointsResponse]
    def __init__(self, results: _Optional[_Iterable[_Union[SearchPointsResponse, _Mapping]]] = ...) -> None: ...

class RetrievePointsRequest(_message.Message):
    __slots__ = ("product_ids", "with_vectors", "without_payload")
    PRODUCT_IDS_FIELD_NUMBER: _ClassVar[int]
    WITH_VECTORS_FIELD_NUMBER: _ClassVar[int]
    WITHOUT_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    product_ids: _containers.RepeatedScalarFieldContainer[str]
    with_vectors: bool
    without_payload: bool
    def __init__(self, product_ids: _Optional[_Iterable[str]] = ..., with_vectors: _Optional[bool] = ..., without_payload: _Optional[bool] = ...) -> None: ...

class RetrievePointsResponse(_message.Message):
    __slots__ = ("points",)
    POINTS_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[Point]
    def __init__(self, points: _Optional[_Iterable[_Union[Point, _Mapping]]] = ...) -> None: ...

class UpsertPointsRequest(_message.Message):
    __slots__ = ("points",)
    POINTS_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[Point]
    def __init__(self, points: _Optional[_Iterable[_Union[Point, _Mapping]]] = ...) -> None: ...

class DeletePointsRequest(_message.Message):
    __slots__ = ("product_ids", "versions")
    PRODUCT_IDS_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    product_ids: _containers.RepeatedScalarFieldContainer[str]
    versions: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, product_ids: _Optional[_Iterable[str]] = ..., versions: _Optional[_Iterable[int]] = ...) -> None: ...

class PayloadUpdate(_message.Message):
    __slots__ = ("product_id", "title", "attributes", "version")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    title: str
    attributes: _containers.ScalarMap[str, str]
    version: int
    def __init__(self, product_id: _Optional[str] = ..., title: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ..., version: _Optional[int] = ...) -> None: ...

class UpdatePayloadsRequest(_message.Message):
    __slots__ = ("updates",)
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[PayloadUpdate]
    def __init__(self, updates: _Optional[_Iterable[_Union[PayloadUpdate, _Mapping]]] = ...) -> None: ...

class ScrollPointsRequest(_message.Message):
    __slots__ = ("offset", "limit", "with_vectors", "tombstones")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    WITH_VECTORS_FIELD_NUMBER: _ClassVar[int]
    TOMBSTONES_FIELD_NUMBER: _ClassVar[int]
    offset: str
    limit: int
    with_vectors: bool
    tombstones: bool
    def __init__(self, offset: _Optional[str] = ..., limit: _Optional[int] = ..., with_vectors: _Optional[bool] = ..., tombstones: _Optional[bool] = ...) -> None: ...

class ScrollPointsResponse(_message.Message):
    __slots__ = ("points", "next_offset")
    POINTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[Point]
    next_offset: str
    def __init__(self, points: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., next_offset: _Optional[str] = ...) -> None: ...

class WriteResponse(_message.Message):
    __slots__ = ("count", "stale")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    count: int
    stale: int
    def __init__(self, count: _Optional[int] = ..., stale: _Optional[int] = ...) -> None: ...
