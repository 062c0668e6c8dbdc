import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Op(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OP_UNSPECIFIED: _ClassVar[Op]
    OP_UPSERT: _ClassVar[Op]
    OP_DELETE: _ClassVar[Op]
    OP_UPDATE: _ClassVar[Op]
OP_UNSPECIFIED: Op
OP_UPSERT: Op
OP_DELETE: Op
OP_UPDATE: Op

class CatalogEvent(_message.Message):
    __slots__ = ("schema_version", "product_id", "op", "image_bytes", "image_uri", "title", "attributes", "event_time", "version", "catalog")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    IMAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_URI_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CATALOG_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    product_id: str
    op: Op
    image_bytes: bytes
    image_uri: str
    title: str
    attributes: _containers.ScalarMap[str, str]
    event_time: _timestamp_pb2.Timestamp
    version: int
    catalog: str
    def __init__(self, schema_version: _Optional[int] = ..., product_id: _Optional[str] = ..., op: _Optional[_Union[Op, str]] = ..., image_bytes: _Optional[bytes] = ..., image_uri: _Optional[str] = ..., title: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., version: _Optional[int] = ..., catalog: _Optional[str] = ...) -> None: ...
