"""Kafka record format of catalog events, without a broker."""

from __future__ import annotations

import pytest

from shared.streaming.events import decode, encode
from shared.types import CatalogEvent, Op


def test_decode_names_what_is_wrong():
    from shared.streaming.events import decode

    with pytest.raises(ValueError):
        decode(b"\xff\xfe not protobuf", None)
    with pytest.raises(ValueError):
        decode(b"{not json", [("content-type", b"application/json")])
    with pytest.raises(ValueError, match="unknown content-type"):
        decode(b"x", [("content-type", b"text/csv")])


@pytest.mark.parametrize("as_json", [False, True])
def test_encode_then_decode(as_json):
    event = CatalogEvent(
        "p-1", Op.UPSERT, image_uri="file:///x.jpg", title="t", attributes={"a": "b"}
    )
    record = encode(event, as_json=as_json)
    assert record.key == b"p-1"
    assert decode(record.value, record.headers) == event
