"""Every proto message round-trips through its converter, and every field is exercised.

Adding a field to a .proto without teaching its converter about it fails
`test_every_field_of_every_message_is_converted`, because the samples below go through the
converters, and a field the converter does not write stays unset.
"""

from __future__ import annotations

import datetime as dt
import importlib
import pkgutil

import numpy as np
import pytest
from google.protobuf.descriptor import FieldDescriptor

import shared.api
from shared.conversions import ROUND_TRIPS, catalog, fusion, search, store
from shared.types import (
    BatchingInfo,
    CatalogEvent,
    Condition,
    Embeddings,
    Facet,
    Filter,
    FusionInput,
    Hit,
    Missing,
    Op,
    Range,
    ReplicaInfo,
    SearchMode,
    SearchQuery,
    SearchResult,
    Timing,
)
from shared.vectorstore.base import (
    Deletion,
    Point,
    PointQuery,
    RetrieveQuery,
    StoredPoint,
    WriteResult,
)
from shared.vectorstore.versions import PayloadUpdate

RNG = np.random.default_rng(0)


def _vectors(n: int, d: int) -> np.ndarray:
    return RNG.standard_normal((n, d)).astype(np.float32)


FILTER = Filter(
    must=(
        Condition("articleType", "Shirts"),
        Condition("year", 2012),
        Condition("in_stock", True),
        Condition("price", Range(gt=1.0, gte=2.0, lt=100.0, lte=99.5)),
    ),
    must_not=(Condition("baseColour", ("Red", "Pink")), Condition("catalog", Missing())),
)

# Samples per message type; together they must set every field (every branch of each oneof).
SAMPLES: dict[type, list] = {
    ROUND_TRIPS[0].message: [[b"\xff\xd8jpeg", b"\x89PNG"]],
    ROUND_TRIPS[1].message: [Embeddings(_vectors(3, 8), "bundle-1")],
    ROUND_TRIPS[2].message: [["navy check shirt", "in black"]],
    ROUND_TRIPS[3].message: [Embeddings(_vectors(2, 4), "bundle-1")],
    ROUND_TRIPS[4].message: [FusionInput(_vectors(2, 4), _vectors(2, 4))],
    ROUND_TRIPS[5].message: [Embeddings(_vectors(2, 4), "bundle-2")],
    ROUND_TRIPS[6].message: [
        SearchQuery(text="in black", image=b"img", top_k=5, filter=FILTER),
        SearchQuery(text="", product_id="p-42", top_k=10),
        SearchQuery(
            text="navy shirt",
            mode=SearchMode.HYBRID,
            rrf_k=20,
            offset=10,
            page_token="abc",
            score_threshold=0.25,
            facets=("articleType", "baseColour"),
            group_by="styleId",
            group_size=2,
            adaptive_cutoff=True,
            diversity=0.5,
            positive_ids=("p-1",),
            negative_ids=("p-2", "p-3"),
            negative_text="striped",
            text_weight=0.75,
            catalog="shoes",
        ),
    ],
    ROUND_TRIPS[7].message: [
        SearchResult(
            hits=(Hit("p-1", 0.5, {"title": "Blue shirt", "price": 12.5, "tags": ["a", "b"]}),),
            model_version="bundle-1",
            timing=Timing(1.0, 2.0, 3.0, 6.5),
            next_page_token="tok",
            mode=SearchMode.LEXICAL,
            facets=(Facet("articleType", (("Shirts", 14), ("Tshirts", 6))), Facet("year", ())),
            candidates=200,
        )
    ],
    ROUND_TRIPS[8].message: [
        CatalogEvent(
            product_id="p-1",
            op=Op.UPSERT,
            image_bytes=b"\xff\xd8",
            title="Blue shirt",
            attributes={"baseColour": "Blue", "gender": "Men"},
            event_time=dt.datetime(2026, 11, 22, 12, 0, 0, 123000, tzinfo=dt.UTC),
            version=42,
        ),
        CatalogEvent(product_id="p-2", op=Op.DELETE, image_uri="file:///tmp/x.jpg"),
        CatalogEvent(
            product_id="p-3", op=Op.UPDATE, title="Renamed", attributes={"a": "b"}, catalog="shoes"
        ),
    ],
    ROUND_TRIPS[9].message: [
        PointQuery(_vectors(1, 8)[0], 10, FILTER, exact=True),
        PointQuery(_vectors(1, 8)[0], 3),
        PointQuery(None, 5, text="navy shirt", mode=SearchMode.LEXICAL, score_threshold=1.5),
        PointQuery(_vectors(1, 8)[0], 5, text="shirt", mode=SearchMode.HYBRID, rrf_k=10, offset=20),
        PointQuery(
            None,
            5,
            diversity=0.25,
            positives=tuple(_vectors(2, 8)),
            negatives=(_vectors(1, 8)[0],),
        ),
    ],
    ROUND_TRIPS[10].message: [[Hit("p-1", 0.5, {"title": "Blue shirt", "year": 2020})]],
    ROUND_TRIPS[11].message: [
        [PointQuery(_vectors(1, 8)[0], 10, FILTER, exact=True), PointQuery(_vectors(1, 8)[0], 3)]
    ],
    ROUND_TRIPS[12].message: [
        [[Hit("p-1", 0.5, {"title": "Blue shirt"})], [], [Hit("p-2", 0.25, {"year": 2020})]]
    ],
    ROUND_TRIPS[13].message: [RetrieveQuery(("p-1", "p-2"), with_vectors=True, with_payload=False)],
    ROUND_TRIPS[14].message: [
        [
            StoredPoint("p-1", {"title": "Blue shirt", "price": 12.5}, _vectors(1, 8)[0]),
            StoredPoint("p-2", {"sizes": [38, 40]}),
        ]
    ],
    ROUND_TRIPS[15].message: [
        [Point("p-1", _vectors(1, 8)[0], {"year": 2020, "title": "x"}, version=1_764_000_000)]
    ],
    ROUND_TRIPS[16].message: [
        (Deletion("p-1", 17), Deletion("p-2", 0)),
        (Deletion("p-1"), Deletion("p-2")),
    ],
    ROUND_TRIPS[17].message: [WriteResult(7, 2)],
    store.pb.ScrollPointsRequest: [
        store.ScrollQuery("6f1d2a9e-3c57-4b8e-9a0f-5d2b7c1e4a93", 10, True, True),
        store.ScrollQuery(),
    ],
    store.pb.ScrollPointsResponse: [
        ([Point("p-1", _vectors(1, 8)[0], {"title": "x"}, version=7)], "6f1d2a9e"),
        ([], None),
    ],
    ROUND_TRIPS[18].message: [None],
    ROUND_TRIPS[19].message: [
        ReplicaInfo(
            "text-encoder",
            "abc",
            "bundle-1",
            256,
            "onnxruntime (int8-dynamic)",
            1,
            0.75,
            BatchingInfo(32, 0.002, 10, 40, 4.0, 1.5, 3.25),
        ),
        ReplicaInfo("vector-store", "def", "bundle-1", 256, "qdrant-edge", 0, 0.2),
    ],
    ROUND_TRIPS[20].message: [
        (
            PayloadUpdate("p-1", "New title", {"price": "9.99", "stock": "0"}, version=5),
            PayloadUpdate("p-2", None, {}, 0),
        )
    ],
    ROUND_TRIPS[21].message: [
        [SearchQuery(text="navy shirt", top_k=3), SearchQuery(product_id="p-1", text="in black")]
    ],
    ROUND_TRIPS[22].message: [
        [
            SearchResult(hits=(Hit("p-1", 0.5, {"title": "x"}),), model_version="b"),
            SearchResult(hits=(), model_version="b", mode=SearchMode.HYBRID),
        ]
    ],
}


def _all_generated_messages():
    for mod_info in pkgutil.walk_packages(shared.api.__path__, "shared.api."):
        if mod_info.name.endswith("_pb2"):
            module = importlib.import_module(mod_info.name)
            yield from module.DESCRIPTOR.message_types_by_name.values()


def _all_fields(descriptor, seen=None) -> set[str]:
    """Full names of every field of `descriptor` and of the messages nested in it."""
    seen = set() if seen is None else seen
    if descriptor.full_name in seen or descriptor.full_name.startswith("google.protobuf"):
        return set()
    seen.add(descriptor.full_name)
    names = set()
    for field in descriptor.fields:
        names.add(field.full_name)
        if (
            field.type == FieldDescriptor.TYPE_MESSAGE
            and not field.message_type.GetOptions().map_entry
        ):
            names |= _all_fields(field.message_type, seen)
    return names


def _set_fields(message) -> set[str]:
    """Full names of the fields that are set in `message`, recursively."""
    names = set()
    for field, value in message.ListFields():
        names.add(field.full_name)
        if field.type != FieldDescriptor.TYPE_MESSAGE or field.full_name.startswith(
            "google.protobuf"
        ):
            continue
        if field.message_type.GetOptions().map_entry or field.message_type.full_name.startswith(
            "google.protobuf"
        ):
            continue
        items = value if field.is_repeated else [value]
        for item in items:
            names |= _set_fields(item)
    return names


@pytest.mark.parametrize("rt", ROUND_TRIPS, ids=lambda rt: rt.message.DESCRIPTOR.full_name)
def test_round_trip_returns_the_same_value(rt):
    for sample in SAMPLES[rt.message]:
        msg = rt.to_proto(sample)
        assert isinstance(msg, rt.message)
        wire = rt.message.FromString(msg.SerializeToString())
        assert rt.from_proto(wire) == sample


def test_every_field_of_every_message_is_converted():
    expected = set()
    for rt in ROUND_TRIPS:
        expected |= _all_fields(rt.message.DESCRIPTOR)
    covered = set()
    for rt in ROUND_TRIPS:
        for sample in SAMPLES[rt.message]:
            covered |= _set_fields(rt.to_proto(sample))
    assert expected - covered == set(), "fields that no converter writes"


def test_every_generated_message_is_reached_by_a_converter():
    reached = set()
    for rt in ROUND_TRIPS:
        reached |= {f.rsplit(".", 1)[0] for f in _all_fields(rt.message.DESCRIPTOR)}
        reached.add(rt.message.DESCRIPTOR.full_name)
    generated = {d.full_name for d in _all_generated_messages()}
    assert generated - reached == set(), "messages with no converter"


def test_embedding_byte_length_mismatch_is_a_value_error():
    msg = fusion.request_to_proto(FusionInput(_vectors(2, 4), _vectors(2, 4)))
    msg.text_embeddings.data += b"\x00\x00\x80\x3f"
    with pytest.raises(ValueError, match="text_embeddings: 36 bytes of data, but count=2 x dim=4"):
        fusion.request_from_proto(msg)


def test_fusion_count_mismatch_is_a_value_error():
    msg = fusion.request_to_proto(FusionInput(_vectors(2, 4), _vectors(3, 4)))
    with pytest.raises(ValueError, match="2 image embeddings but 3 text embeddings"):
        fusion.request_from_proto(msg)


def test_embeddings_travel_as_little_endian_float32():
    vectors = np.array([[1.0, -2.5]], dtype=np.float32)
    msg = ROUND_TRIPS[1].to_proto(Embeddings(vectors, "b"))
    assert (msg.embeddings.count, msg.embeddings.dim) == (1, 2)
    assert msg.embeddings.data == np.array([1.0, -2.5], dtype="<f4").tobytes()


def test_empty_embedding_batch_keeps_its_dimension():
    result = Embeddings(np.zeros((0, 16), np.float32), "b")
    back = ROUND_TRIPS[1].from_proto(ROUND_TRIPS[1].to_proto(result))
    assert back.vectors.shape == (0, 16)


def test_condition_without_match_is_rejected():
    msg = search.pb.SearchRequest(text="x")
    msg.filter.must.add(key="gender")
    with pytest.raises(ValueError, match="has no match value"):
        search.request_from_proto(msg)


def test_catalog_event_json_round_trip():
    event = SAMPLES[ROUND_TRIPS[8].message][0]
    assert catalog.event_from_json(catalog.event_to_json(event)) == event


def test_catalog_event_from_hand_written_json():
    raw = b'{"productId": "p-9", "op": "OP_UPSERT", "imageUri": "file:///x.jpg", "attributes": {"gender": "Women"}}'
    event = catalog.event_from_json(raw)
    assert (event.product_id, event.op, event.image_uri) == ("p-9", Op.UPSERT, "file:///x.jpg")
    assert event.attributes == {"gender": "Women"}


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\xff\xff\xff", "not a protobuf CatalogEvent"),
        (catalog.pb.CatalogEvent(op=catalog.pb.OP_UPSERT).SerializeToString(), "no product_id"),
        (catalog.pb.CatalogEvent(product_id="p").SerializeToString(), "no valid op"),
    ],
)
def test_bad_catalog_bytes_are_value_errors(data, message):
    with pytest.raises(ValueError, match=message):
        catalog.event_from_bytes(data)


def test_bad_catalog_json_is_a_value_error():
    with pytest.raises(ValueError, match="not a JSON CatalogEvent"):
        catalog.event_from_json(b'{"productId": 5, "op": "OP_NOPE"}')


def test_store_points_need_whole_float32_vectors():
    msg = store.upsert_request_to_proto([Point("p", _vectors(1, 4)[0])])
    msg.points[0].vector += b"\x00"
    with pytest.raises(ValueError, match="not a whole number of float32"):
        store.upsert_request_from_proto(msg)
    msg.points[0].vector = b""
    with pytest.raises(ValueError, match="has no vector"):
        store.upsert_request_from_proto(msg)


def test_generated_messages_pickle():
    """Ray pickles proto messages between processes; pickle finds a class by its module name,
    so the generated code must build its messages in `shared.api...` (scripts/gen_protos.sh)."""
    import pickle

    for mod_info in pkgutil.walk_packages(shared.api.__path__, "shared.api."):
        if mod_info.name.endswith("_pb2"):
            module = importlib.import_module(mod_info.name)
            for name in module.DESCRIPTOR.message_types_by_name:
                cls = getattr(module, name)
                assert cls.__module__ == mod_info.name
                assert pickle.loads(pickle.dumps(cls())) == cls()


def test_a_scroll_page_over_1024_points_is_refused():
    msg = store.scroll_request_to_proto(store.ScrollQuery(limit=1025))
    with pytest.raises(ValueError, match="more than 1024"):
        store.scroll_request_from_proto(msg)
