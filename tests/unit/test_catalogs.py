"""Several catalogs in one deployment, without Ray: keys, filters and scoping."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from services.gateway.search import Dependencies, run_search
from services.gateway.security import ApiKeys, PermissionDeniedError, scoped_queries
from services.gateway.validation import Limits, validate
from services.ingestion.processor import BatchProcessor, PoisonError
from shared.catalogs import catalog_problem, qualify, scoped, unqualify
from shared.streaming.events import encode
from shared.types import CatalogEvent, Condition, Embeddings, Filter, Hit, Missing, Op, SearchQuery
from shared.vectorstore import Point, open_store
from tests.support.tiny import png_bytes

KEY, OTHER, ALL = "s" * 20, "b" * 20, "a" * 20


def test_store_keys_are_qualified_for_named_catalogs_only():
    assert qualify("", "p1") == "p1" and unqualify("p1") == ("", "p1")
    assert unqualify(qualify("shoes", "p1")) == ("shoes", "p1") != unqualify("p1")
    assert qualify("shoes", "p1") != qualify("bags", "p1")
    for bad in ("-x", "a b", "x" * 65, "a\x1fb", "é"):
        assert catalog_problem(bad)
    assert catalog_problem("") is None and catalog_problem("shoes-2026.eu_1") is None
    flt = scoped(Filter(must=(Condition("gender", "Men"),)), "shoes")
    assert flt.must[-1] == Condition("catalog", "shoes")
    assert scoped(Filter(), "").must == (Condition("catalog", Missing()),)


@pytest.mark.parametrize("location", ["edge", "memory"])
def test_the_catalog_filter_separates_catalogs_on_both_engines(location, tmp_path):
    where = f"edge:{tmp_path}" if location == "edge" else ":memory:"
    rng = np.random.default_rng(0)
    with open_store(where, model_version="m", dim=8, indexed_fields={}) as store:
        points = []
        for catalog in ("", "shoes", "bags"):
            for i in range(5):
                payload = {"title": f"{catalog or 'default'} item"} | (
                    {"catalog": catalog} if catalog else {}
                )
                vector = rng.normal(size=8).astype(np.float32)
                points.append(Point(qualify(catalog, f"p{i}"), vector, payload))
        store.upsert(points)
        assert store.count() == 15  # the same product ids, three catalogs, no overwrite
        for catalog in ("", "shoes", "bags"):
            hits = store.search(points[0].vector, top_k=15, filter=scoped(Filter(), catalog))
            assert len(hits) == 5
            assert {unqualify(h.product_id)[0] for h in hits} == {catalog}


def test_key_options_scope_catalogs_and_rates():
    keys = ApiKeys.parse(
        f"shoes:{KEY}:search:catalogs=shoes,bags:{OTHER}:search:rate=5/s:catalogs=bags+outlet,"
        f"all:{ALL}",
        source="t",
    )
    shoes = keys.authorize([("x-api-key", KEY)], "search")
    assert shoes.catalogs == {"shoes"} and shoes.catalog_of("") == "shoes"
    with pytest.raises(PermissionDeniedError, match="not scoped to 'bags'"):
        shoes.catalog_of("bags")
    bags = keys.principal([("x-api-key", OTHER)])
    assert bags is not None and bags.rate_per_s == 5
    with pytest.raises(PermissionDeniedError, match="the default catalog"):
        bags.catalog_of("")  # two catalogs: a query must name one
    assert bags.catalog_of("outlet") == "outlet"
    everything = keys.principal([("x-api-key", ALL)])
    assert everything is not None and everything.catalog_of("bags") == "bags"
    queries = [SearchQuery(text="x"), SearchQuery(text="y", catalog="shoes")]
    assert [q.catalog for q in scoped_queries(keys, [("x-api-key", KEY)], queries)] == [
        "shoes",
        "shoes",
    ]
    assert scoped_queries(ApiKeys(), [], queries) == queries  # authentication off
    for bad, words in (
        (f"a:{KEY}:search:catalogs=-x", "not a catalog name"),
        (f"a:{KEY}:search:color=red", "not rate="),
        (f"a:{KEY}:search:rate=1/s:rate=2/s", "not rate="),
    ):
        with pytest.raises(ValueError, match=words):
            ApiKeys.parse(bad, source="t")


def test_catalog_events_are_written_under_qualified_keys_with_the_catalog_field():
    written = []
    processor = BatchProcessor(
        embed=lambda images: np.ones((len(images), 4), np.float32),
        upsert=written.extend,
        delete=lambda ds: None,
    )
    events = [
        CatalogEvent("p1", Op.UPSERT, image_bytes=png_bytes(1), title="a", catalog="shoes"),
        CatalogEvent("p1", Op.UPSERT, image_bytes=png_bytes(2), title="b"),
    ]
    processor.write([processor.validate(r.value, r.headers) for r in map(encode, events)])
    assert {(p.product_id, p.payload.get("catalog")) for p in written} == {
        (qualify("shoes", "p1"), "shoes"),
        ("p1", None),
    }
    for event, words in (
        (CatalogEvent("p1", Op.DELETE, catalog="a b"), "not a catalog name"),
        (CatalogEvent("p\x1f1", Op.DELETE), "unit separator"),
        (CatalogEvent("p1", Op.UPSERT, image_bytes=b"x", attributes={"catalog": "x"}), "reserved"),
    ):
        record = encode(event)
        with pytest.raises(PoisonError, match=words):
            processor.validate(record.value, record.headers)


class _Store:
    def __init__(self) -> None:
        self.asked: list = []

    async def vector_of(self, key, *, timeout_s=None):
        from shared.vectorstore import StoredPoint

        self.asked.append(key)
        return StoredPoint(key, {}, np.ones(4, np.float32))

    async def search(self, query, *, timeout_s=None):
        self.asked.append(query)
        return [Hit(qualify("shoes", "p9"), 0.5, {"catalog": "shoes"})]

    async def embed(self, item, *, timeout_s=None):
        return Embeddings(np.ones((1, 4), np.float32), "m")


def test_the_gateway_searches_one_catalog_and_answers_its_own_ids():
    store = _Store()
    deps = Dependencies(image=store, text=store, fusion=store, store=store)
    limits = Limits(default_top_k=10, max_top_k=50, max_text_chars=100, max_image_bytes=100)
    query = validate(SearchQuery(product_id="p1", negative_ids=("p2",), catalog="shoes"), limits)
    result = asyncio.run(run_search(query, deps, model_version="m", deadline=time.monotonic() + 5))
    assert store.asked[:2] == [qualify("shoes", "p1"), qualify("shoes", "p2")]
    asked = store.asked[-1]
    assert Condition("catalog", "shoes") in asked.filter.must
    assert [h.product_id for h in result.hits] == ["p9"]
    with pytest.raises(Exception, match="not a catalog name"):
        validate(SearchQuery(text="x", catalog="a b"), limits)
