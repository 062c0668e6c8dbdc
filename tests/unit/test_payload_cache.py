"""The Edge store's payload cache (shared.vectorstore.payload_cache): searches answer the same
with and without it, a write is seen by the next search, and a read that raced a write is not
kept."""

from __future__ import annotations

import numpy as np
import pytest

from shared.types import Condition, Filter, SearchMode
from shared.vectorstore import Point
from shared.vectorstore.base import PointQuery
from shared.vectorstore.edge import EdgeStore
from shared.vectorstore.payload_cache import PayloadCache

DIM = 16
FIELDS = {"baseColour": "keyword"}


def _points(n: int) -> list[Point]:
    rng = np.random.default_rng(0)
    colours = ["Red", "Blue", "Black", "White"]
    return [
        Point(
            f"sku-{i}",
            rng.normal(size=DIM).astype(np.float32),
            {"title": f"{colours[i % 4].lower()} shirt {i}", "baseColour": colours[i % 4]},
            version=i + 1,
        )
        for i in range(n)
    ]


def _queries() -> list[PointQuery]:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(4, DIM)).astype(np.float32)
    blue = Filter(must=(Condition("baseColour", match="Blue"),))
    return [
        PointQuery(vectors[0], top_k=5),
        PointQuery(vectors[1], top_k=3, filter=blue),
        PointQuery(vectors[2], top_k=4, offset=2),
        PointQuery(None, top_k=5, text="black shirt", mode=SearchMode.LEXICAL),
        PointQuery(vectors[3], top_k=5, text="red shirt", mode=SearchMode.HYBRID),
    ]


def _answers(store: EdgeStore) -> list[list[tuple]]:
    return [
        [(h.product_id, round(h.score, 5), sorted(h.payload.items())) for h in hits]
        for hits in store.search_batch(_queries())
    ]


def test_cached_and_uncached_stores_answer_the_same(tmp_path):
    # One shard, opened without then with the cache (two shards of the same points may order
    # a hybrid ranking's ties differently).
    plain = EdgeStore(tmp_path, "c", dim=DIM, indexed_fields=FIELDS, payload_cache_points=0)
    plain.upsert(_points(40))
    want = _answers(plain)
    assert all(want) and len(plain._payloads) == 0  # noqa: SLF001
    plain.close()
    cached = EdgeStore(tmp_path, "c", dim=DIM, indexed_fields=FIELDS)
    assert _answers(cached) == want  # filled from the engine
    assert len(cached._payloads) > 0  # noqa: SLF001
    assert _answers(cached) == want  # from the cache
    cached.close()


def test_a_write_is_seen_by_the_next_search(tmp_path):
    store = EdgeStore(tmp_path, "c", dim=DIM, indexed_fields=FIELDS)
    points = _points(10)
    store.upsert(points)
    query = [PointQuery(points[3].vector, top_k=1)]
    (hit,) = store.search_batch(query)[0]
    assert hit.product_id == "sku-3" and hit.payload["title"] == "white shirt 3"
    store.upsert([Point("sku-3", points[3].vector, {"title": "renamed", "baseColour": "Red"})])
    (hit,) = store.search_batch(query)[0]
    assert hit.payload == {"title": "renamed", "baseColour": "Red"}
    held = len(store._payloads)  # noqa: SLF001
    store.delete(["sku-3"])  # by its id's text, where the engine's hits carry a UUID
    assert len(store._payloads) == held - 1  # noqa: SLF001
    assert all(h.product_id != "sku-3" for h in store.search_batch(query)[0])
    store.close()


def test_a_fill_that_raced_a_write_is_not_kept():
    cache = PayloadCache(10)
    generation = cache.generation()  # a search reads the engine ...
    cache.written(["p"])  # ... a write lands meanwhile ...
    assert not cache.fill([("p", {"title": "old"})], generation)  # ... what it read may be old
    assert cache.get(["p"]) == [None]
    assert cache.fill([("p", {"title": "new"})], cache.generation())
    assert cache.get(["p"]) == [{"title": "new"}]


def test_the_least_recently_used_go_first_and_zero_keeps_nothing():
    cache = PayloadCache(2)
    cache.fill([("a", {}), ("b", {})], cache.generation())
    cache.get(["a"])  # used: b is now the oldest
    cache.fill([("c", {})], cache.generation())
    assert cache.get(["a", "b", "c"]) == [{}, None, {}]
    off = PayloadCache(0)
    assert not off.fill([("a", {})], off.generation()) and len(off) == 0
    with pytest.raises(ValueError, match=">= 0"):
        PayloadCache(-1)
