"""Conversions for the catalog event carried on Kafka (vitrine.catalog.v1), binary and JSON."""

from __future__ import annotations

import datetime as dt

from google.protobuf import json_format

from shared.api.vitrine.catalog.v1 import catalog_pb2 as pb
from shared.types import CatalogEvent, Op

_OP_TO_PROTO = {Op.UPSERT: pb.OP_UPSERT, Op.DELETE: pb.OP_DELETE, Op.UPDATE: pb.OP_UPDATE}
_OP_FROM_PROTO = {v: k for k, v in _OP_TO_PROTO.items()}


def event_to_proto(event: CatalogEvent) -> pb.CatalogEvent:
    msg = pb.CatalogEvent(
        schema_version=event.schema_version,
        version=event.version,
        catalog=event.catalog,
        product_id=event.product_id,
        op=_OP_TO_PROTO[event.op],
        title=event.title,
        attributes=event.attributes,
    )
    if event.image_bytes is not None:
        msg.image_bytes = event.image_bytes
    elif event.image_uri is not None:
        msg.image_uri = event.image_uri
    if event.event_time is not None:
        msg.event_time.FromDatetime(event.event_time.astimezone(dt.UTC))
    return msg


def event_from_proto(msg: pb.CatalogEvent) -> CatalogEvent:
    """Raises ValueError for an event without product id or op."""
    if not msg.product_id:
        raise ValueError("catalog event has no product_id")
    if msg.op not in _OP_FROM_PROTO:
        raise ValueError(f"catalog event {msg.product_id!r} has no valid op (got {msg.op})")
    image = msg.WhichOneof("image")
    return CatalogEvent(
        product_id=msg.product_id,
        op=_OP_FROM_PROTO[msg.op],
        image_bytes=msg.image_bytes if image == "image_bytes" else None,
        image_uri=msg.image_uri if image == "image_uri" else None,
        title=msg.title,
        attributes=dict(msg.attributes),
        event_time=msg.event_time.ToDatetime(dt.UTC) if msg.HasField("event_time") else None,
        schema_version=msg.schema_version,
        version=msg.version,
        catalog=msg.catalog,
    )


def event_to_bytes(event: CatalogEvent) -> bytes:
    return event_to_proto(event).SerializeToString()


def event_from_bytes(data: bytes) -> CatalogEvent:
    """Decodes a binary protobuf event. Raises ValueError for bytes that do not parse."""
    msg = pb.CatalogEvent()
    try:
        msg.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError, a private subclass of Exception
        raise ValueError(f"not a protobuf CatalogEvent: {exc}") from exc
    return event_from_proto(msg)


def event_to_json(event: CatalogEvent) -> bytes:
    return json_format.MessageToJson(event_to_proto(event), indent=None).encode()


def event_from_json(data: bytes) -> CatalogEvent:
    """Decodes a JSON event (protobuf JSON mapping). Raises ValueError for invalid JSON."""
    msg = pb.CatalogEvent()
    try:
        json_format.Parse(data, msg)
    except json_format.ParseError as exc:
        raise ValueError(f"not a JSON CatalogEvent: {exc}") from exc
    return event_from_proto(msg)
