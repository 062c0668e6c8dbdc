"""One suite, both real Qdrant engines: Qdrant Edge (embedded) and qdrant-client (local mode).

The same assertions run against each backend, so either can stand in for the other.
"""

from __future__ import annotations

import numpy as np
import pytest

from shared.types import Condition, Filter, Range
from shared.vectorstore import Point, StoreError, open_store, point_id
from shared.vectorstore.base import DEFAULT_INDEXED_FIELDS, PointQuery, collection_name

DIM = 16


@pytest.fixture(params=["edge", "memory"])
def location(request, tmp_path) -> str:
    return f"edge:{tmp_path}" if request.param == "edge" else ":memory:"


@pytest.fixture
def store(location):
    with open_store(
        location, model_version="m1", dim=DIM, indexed_fields=DEFAULT_INDEXED_FIELDS
    ) as s:
        yield s


def _points(n: int, seed: int = 0) -> list[Point]:
    rng = np.random.default_rng(seed)
    colours = ["Red", "Blue", "Black", "White"]
    return [
        Point(
            f"sku-{i}",
            rng.normal(size=DIM).astype(np.float32),
            {"title": f"item {i}", "baseColour": colours[i % 4], "year": 2010 + i % 10},
        )
        for i in range(n)
    ]


def _exact_top(points: list[Point], query: np.ndarray, keep=lambda p: True, k=5) -> list[str]:
    kept = [p for p in points if keep(p)]
    vecs = np.stack([p.vector / np.linalg.norm(p.vector) for p in kept])
    order = np.argsort(-(vecs @ (query / np.linalg.norm(query))), kind="stable")
    return [kept[i].product_id for i in order[:k]]


def test_point_ids_are_stable_uuids():
    assert point_id("sku-1") == point_id("sku-1") != point_id("sku-2")
    assert len(point_id("sku-1")) == 36
    with pytest.raises(ValueError):
        point_id("")


def test_collection_is_named_after_the_model():
    assert collection_name("bundle-1:abc") == "products-bundle-1-abc"


def test_search_ranks_by_cosine_with_payload(store):
    points = _points(200)
    store.upsert(points)
    query = points[7].vector
    hits = store.search(query, top_k=5)
    assert [h.product_id for h in hits] == _exact_top(points, query)
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0].payload == {"title": "item 7", "baseColour": "White", "year": 2017}
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))


def test_search_batch_answers_each_query_as_search_would(store):
    """One planned batch (Edge query_batch, qdrant-client query_batch_points), same answers."""
    points = _points(200)
    store.upsert(points)
    red = Filter(must=(Condition("baseColour", "Red"),))
    queries = [
        PointQuery(points[1].vector, 5),
        PointQuery(points[2].vector, 3, red),
        PointQuery(points[3].vector, 7, None, exact=True),
    ]
    batched = store.search_batch(queries)
    single = [
        store.search(q.vector, top_k=q.top_k, filter=q.filter, exact=q.exact) for q in queries
    ]
    assert [[h.product_id for h in r] for r in batched] == [
        [h.product_id for h in r] for r in single
    ]
    assert [len(r) for r in batched] == [5, 3, 7]
    assert all(h.payload["baseColour"] == "Red" for h in batched[1])
    assert store.search_batch([]) == []
    with pytest.raises(StoreError):
        store.search_batch([PointQuery(np.ones(DIM + 1, np.float32), 3)])


@pytest.mark.parametrize(
    ("flt", "keep"),
    [
        (
            Filter(must=(Condition("baseColour", "Red"),)),
            lambda p: p.payload["baseColour"] == "Red",
        ),
        (
            Filter(must=(Condition("baseColour", ("Red", "Blue")),)),
            lambda p: p.payload["baseColour"] in ("Red", "Blue"),
        ),
        (
            Filter(must_not=(Condition("baseColour", "Red"),)),
            lambda p: p.payload["baseColour"] != "Red",
        ),
        (Filter(must=(Condition("year", 2013),)), lambda p: p.payload["year"] == 2013),
        (
            Filter(must=(Condition("year", Range(gte=2012, lt=2015)),)),
            lambda p: 2012 <= p.payload["year"] < 2015,
        ),
    ],
)
def test_filtered_search_and_count(store, flt, keep):
    points = _points(200)
    store.upsert(points)
    query = points[3].vector
    assert [h.product_id for h in store.search(query, top_k=5, filter=flt)] == _exact_top(
        points, query, keep
    )
    assert store.count(flt) == sum(map(keep, points))


def test_upsert_overwrites_and_delete_removes(store):
    points = _points(20)
    store.upsert(points)
    store.upsert(points[:5])  # a replay never duplicates
    assert store.count() == 20
    moved = Point("sku-0", points[1].vector, {"title": "moved", "baseColour": "White"})
    store.upsert([moved])
    (got,) = store.retrieve(["sku-0"], with_vectors=True)
    assert got.payload == {"title": "moved", "baseColour": "White"}
    np.testing.assert_allclose(
        got.vector, points[1].vector / np.linalg.norm(points[1].vector), atol=1e-6
    )
    store.delete(["sku-0", "sku-1", "never-there"])
    assert store.count() == 18
    assert store.retrieve(["sku-1", "sku-2", "sku-0"])[0].product_id == "sku-2"


def test_retrieve_keeps_the_requested_order(store):
    store.upsert(_points(10))
    assert [p.product_id for p in store.retrieve(["sku-9", "nope", "sku-2"])] == ["sku-9", "sku-2"]
    assert store.retrieve(["sku-9"])[0].vector is None
    bare = store.retrieve(["sku-2", "sku-9"], with_vectors=True, with_payload=False)
    assert [(p.product_id, p.payload) for p in bare] == [("sku-2", {}), ("sku-9", {})]
    assert bare[0].vector.shape == (DIM,)


def test_scroll_pages_through_every_point_once(store):
    points = _points(23)
    store.upsert(points)
    seen, offset, pages = [], None, 0
    while True:
        page, offset = store.scroll(offset, 5, with_vectors=True)
        seen += page
        pages += 1
        if offset is None:
            break
    assert pages == 5
    by_id = {p.product_id: p for p in points}
    assert sorted(p.product_id for p in seen) == sorted(by_id)
    for got in seen:
        want = by_id[got.product_id]
        assert got.payload == want.payload
        np.testing.assert_allclose(got.vector, want.vector / np.linalg.norm(want.vector), 1e-5)
    bare, _ = store.scroll(None, 3)
    assert len(bare) == 3 and bare[0].vector is None
    with pytest.raises(StoreError, match="not a point id"):
        store.scroll("sku-1", 5)


def test_info_reports_size_and_indexes(store, location):
    store.upsert(_points(10))
    info = store.info()
    assert (info.dim, info.points) == (DIM, 10)
    if location == ":memory:":  # qdrant-client's local mode builds no payload index
        assert info.indexed_fields == {}
        return
    assert info.indexed_fields["baseColour"] == "keyword"
    assert info.indexed_fields["year"] == "integer"


@pytest.mark.parametrize(
    "vector", [np.zeros(DIM + 1, np.float32), np.full(DIM, np.nan, np.float32)], ids=["dim", "nan"]
)
def test_bad_vectors_are_refused(store, vector):
    with pytest.raises(StoreError):
        store.upsert([Point("x", vector)])
    with pytest.raises(StoreError):
        store.search(vector, top_k=3)


def test_empty_store_and_empty_calls(store):
    assert store.search(np.ones(DIM, np.float32), top_k=3) == []
    store.upsert([])
    store.delete([])
    assert store.retrieve([]) == []
    assert store.count() == 0


def test_edge_store_persists_and_checks_dimension(tmp_path):
    location = f"edge:{tmp_path}"
    with open_store(location, model_version="m1", dim=DIM, indexed_fields={}) as s:
        s.upsert(_points(5))
    with open_store(location, model_version="m1", dim=DIM, indexed_fields={}) as s:
        assert s.count() == 5
    with pytest.raises(StoreError):
        open_store(location, model_version="m1", dim=DIM * 2, indexed_fields={})
    with open_store(location, model_version="m2", dim=DIM * 2, indexed_fields={}) as s:
        assert s.count() == 0  # another model's vectors live in another collection


def test_unknown_location_is_a_clear_error():
    with pytest.raises(ValueError, match="edge:PATH"):
        open_store("qdrant.example:6333", model_version="m", dim=4, indexed_fields={})


@pytest.mark.parametrize("quantization", ["int8", "binary", "turbo4"])
def test_quantized_collections_rank_by_the_original_vectors(location, tmp_path, quantization):
    """Quantized vectors are searched first and the original ones rescore the candidates, on
    both engines (qdrant-client's local mode ignores quantization and searches exactly): the
    hits' scores are the exact cosines, and the top 5 are (nearly, for 1-bit codes) exact."""
    dim, rng = 256, np.random.default_rng(3)
    points = [Point(f"q{i}", rng.normal(size=dim).astype(np.float32)) for i in range(400)]
    with open_store(
        location, model_version="q", dim=dim, indexed_fields={}, quantization=quantization
    ) as store:
        store.upsert(points)
        store.optimize()
        found = 0
        for _ in range(10):
            query = rng.normal(size=dim).astype(np.float32)
            hits = store.search(query, top_k=5)
            found += len({h.product_id for h in hits} & set(_exact_top(points, query)))
            by_id = {p.product_id: p.vector for p in points}
            for h in hits:
                v = by_id[h.product_id]
                cosine = float(v @ query / np.linalg.norm(v) / np.linalg.norm(query))
                assert h.score == pytest.approx(cosine, abs=1e-4)
    # 1-bit codes of unstructured random vectors keep about half of the top 5 (23 of 50 seen)
    assert found >= (15 if quantization == "binary" else 50)


def test_an_unknown_quantization_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="use one of none, int8, binary, turbo4"):
        open_store(
            f"edge:{tmp_path}", model_version="q", dim=DIM, indexed_fields={}, quantization="pq"
        )
