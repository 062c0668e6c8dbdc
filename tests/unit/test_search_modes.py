"""Dense, lexical (BM25 over titles) and hybrid (RRF) search, paging and score cut-offs: the
same assertions on both real Qdrant engines (Edge, and qdrant-client's local mode)."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import qdrant_edge as qe
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from shared.types import Condition, Filter, SearchMode
from shared.vectorstore import Point, StoreError, open_store
from shared.vectorstore.base import DEFAULT_INDEXED_FIELDS, PointQuery, collection_name
from shared.vectorstore.edge import EdgeStore
from shared.vectorstore.qdrant import QdrantStore

DIM = 16
TITLES = [
    "Men Navy Blue Checked Shirt",
    "Women Black Running Shoes",
    "Men Black Casual Shirt",
    "Navy Blue Slim Jeans",
    "Women Red Floral Dress",
    "Men White Sports Shoes",
    "Girls Pink Printed Top",
    "Men Navy Blue Polo T-Shirt",
]


@pytest.fixture(params=["edge", "memory"])
def store(request, tmp_path):
    location = f"edge:{tmp_path}" if request.param == "edge" else ":memory:"
    with open_store(
        location, model_version="m1", dim=DIM, indexed_fields=DEFAULT_INDEXED_FIELDS
    ) as s:
        yield s


def _title(i: int) -> str:
    """Eight kinds of title, each product's of another length: no two titles score alike for a
    query (equal scores come in any order, which would make the orders compared here
    arbitrary)."""
    return " ".join([TITLES[i % len(TITLES)], *(f"w{j}" for j in range(i))])


def _catalog(n: int = 40, seed: int = 0) -> list[Point]:
    rng = np.random.default_rng(seed)
    return [
        Point(
            f"sku-{i}",
            rng.normal(size=DIM).astype(np.float32),
            {"title": _title(i), "gender": "Men" if i % 2 else "Women"},
        )
        for i in range(n)
    ]


def _ids(hits) -> list[str]:
    return [h.product_id for h in hits]


def _lexical(text: str, top_k: int = 10, **kw) -> PointQuery:
    return PointQuery(None, top_k, text=text, mode=SearchMode.LEXICAL, **kw)


def test_lexical_ranks_titles_with_the_query_words_first(store):
    points = _catalog()
    store.upsert(points)
    hits = store.query(_lexical("navy blue shirt", top_k=40))
    words = [set(re.findall(r"[a-z]+", h.payload["title"].lower())) for h in hits]
    assert {"navy", "blue", "shirt"} <= words[0]
    # Every hit shares a word with the query; no other product is a hit.
    assert all(w & {"navy", "blue", "shirt"} for w in words)
    sharing = [p for p in points if re.search(r"Navy|Blue|Shirt", p.payload["title"])]
    assert len(hits) == len(sharing)
    assert all(a.score >= b.score > 0 for a, b in zip(hits, hits[1:], strict=False))


def test_lexical_query_without_indexable_words_finds_nothing(store):
    store.upsert(_catalog(10))
    assert store.query(_lexical("the of and")) == []
    assert store.query(_lexical("   ")) == []


def test_lexical_scores_are_the_same_on_both_engines(tmp_path):
    points = _catalog()
    stores = [
        open_store(f"edge:{tmp_path}", model_version="m1", dim=DIM, indexed_fields={}),
        open_store(":memory:", model_version="m1", dim=DIM, indexed_fields={}),
    ]
    answers = []
    for s in stores:
        with s:
            s.upsert(points)
            answers.append(
                [(h.product_id, round(h.score, 4)) for h in s.query(_lexical("men shoes"))]
            )
    assert answers[0] == answers[1]


def _rrf(rankings: list[list[str]], k: int) -> dict[str, float]:
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, pid in enumerate(ranking):
            # Qdrant counts ranks from 0.
            scores[pid] = scores.get(pid, 0.0) + 1.0 / (k + rank)
    return scores


def test_hybrid_is_the_reciprocal_rank_fusion_of_dense_and_lexical(store):
    points = _catalog()
    store.upsert(points)
    vector, text, k = points[3].vector, "black shirt", 10
    dense = _ids(store.query(PointQuery(vector, 100, exact=True)))
    words = _ids(store.query(_lexical(text, top_k=100)))
    hybrid = store.query(
        PointQuery(vector, 10, exact=True, text=text, mode=SearchMode.HYBRID, rrf_k=k)
    )
    expected = _rrf([dense, words], k)
    for hit in hybrid:
        assert hit.score == pytest.approx(expected[hit.product_id], rel=1e-4)
    best = sorted(expected.values(), reverse=True)[:10]
    assert [h.score for h in hybrid] == pytest.approx(best, rel=1e-4)


def test_hybrid_without_indexable_words_is_dense(store):
    points = _catalog()
    store.upsert(points)
    q = PointQuery(points[5].vector, 5, exact=True, text="the", mode=SearchMode.HYBRID)
    assert _ids(store.query(q)) == _ids(store.search(points[5].vector, top_k=5, exact=True))


@pytest.mark.parametrize("mode", list(SearchMode))
def test_filters_hold_in_every_mode(store, mode):
    points = _catalog()
    store.upsert(points)
    men = Filter(must=(Condition("gender", "Men"),))
    q = PointQuery(points[0].vector, 20, men, True, text="navy shirt", mode=mode)
    hits = store.query(q)
    assert hits and all(h.payload["gender"] == "Men" for h in hits)


@pytest.mark.parametrize("mode", list(SearchMode))
def test_offset_pages_through_one_ranking(store, mode):
    points = _catalog()
    store.upsert(points)

    def page(offset: int, top_k: int):
        q = PointQuery(
            points[9].vector, top_k, exact=True, text="men shirt", mode=mode, offset=offset
        )
        return _ids(store.query(q))

    whole = page(0, 12)
    assert page(0, 4) + page(4, 4) + page(8, 4) == whole
    assert len(set(whole)) == len(whole) == 12


@pytest.mark.parametrize("mode", list(SearchMode))
def test_score_threshold_cuts_the_ranking(store, mode):
    points = _catalog()
    store.upsert(points)
    q = PointQuery(points[2].vector, 30, exact=True, text="navy blue shirt", mode=mode)
    hits = store.query(q)
    middle = len(hits) // 2
    assert hits[middle - 1].score > hits[middle].score
    cut = (hits[middle - 1].score + hits[middle].score) / 2
    kept = store.query(
        PointQuery(
            points[2].vector, 30, exact=True, text="navy blue shirt", mode=mode,
            score_threshold=cut,
        )
    )  # fmt: skip
    assert [h.product_id for h in kept] == [h.product_id for h in hits[:middle]]


def test_batch_mixes_modes_in_order(store):
    points = _catalog()
    store.upsert(points)
    queries = [
        _lexical("shoes"),
        PointQuery(points[1].vector, 3, exact=True),
        _lexical("the"),
        PointQuery(points[1].vector, 4, text="red dress", mode=SearchMode.HYBRID),
    ]
    answers = store.search_batch(queries)
    assert [len(a) for a in answers] == [10, 3, 0, 4]
    assert answers == [store.query(q) for q in queries]


def test_retrieve_returns_the_dense_vector(store):
    points = _catalog(5)
    store.upsert(points)
    (got,) = store.retrieve(["sku-2"], with_vectors=True)
    np.testing.assert_allclose(
        got.vector, points[2].vector / np.linalg.norm(points[2].vector), rtol=1e-5
    )
    assert store.info().lexical


def _old_edge(tmp_path) -> EdgeStore:
    """A shard created the way collections were before titles were indexed."""
    name = collection_name("m1")
    shard = qe.EdgeShard.create(
        str(tmp_path / name),
        qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine)),
    )
    shard.close()
    return EdgeStore(tmp_path, name, dim=DIM, indexed_fields={})


def _old_qdrant(_tmp_path) -> QdrantStore:
    client, name = QdrantClient(":memory:"), collection_name("m1")
    client.create_collection(
        name, vectors_config=qm.VectorParams(size=DIM, distance=qm.Distance.COSINE)
    )
    return QdrantStore(client, name, dim=DIM, indexed_fields={})


@pytest.mark.parametrize("open_old", [_old_edge, _old_qdrant])
def test_a_collection_without_the_lexical_index_still_searches_dense(tmp_path, open_old):
    with open_old(tmp_path) as store:
        points = _catalog(20)
        store.upsert(points)
        assert not store.info().lexical
        assert _ids(store.search(points[0].vector, top_k=1)) == ["sku-0"]
        with pytest.raises(StoreError, match="no lexical index"):
            store.query(_lexical("shirt"))
        with pytest.raises(StoreError, match="no lexical index"):
            store.query(PointQuery(points[0].vector, 3, text="shirt", mode=SearchMode.HYBRID))


def test_equal_scores_page_in_product_id_order(store):
    """Many titles alike: BM25 ties them, and pages still walk one fixed order."""
    rng = np.random.default_rng(3)
    store.upsert(
        [
            Point(f"p{i:02d}", rng.normal(size=DIM).astype(np.float32), {"title": "navy shirt"})
            for i in range(30)
        ]
    )
    pages = [_ids(store.query(_lexical("navy", top_k=7, offset=o))) for o in (0, 7, 14, 21, 28)]
    assert sum(pages, []) == [f"p{i:02d}" for i in range(30)]
    hits = store.query(_lexical("navy", top_k=3))
    assert all(h.payload == {"title": "navy shirt"} for h in hits)


def _colours(store, query: PointQuery) -> int:
    return len({h.payload["baseColour"] for h in store.query(query)})


def test_diversity_spreads_the_top_hits(store):
    """MMR: at 0 the plain ranking; raised, the top 5 span more colours (clusters here)."""
    rng = np.random.default_rng(7)
    centres = {c: rng.normal(size=DIM) for c in ("Red", "Blue", "Black", "White")}
    points = [
        Point(
            f"{c}-{i}",
            (centres[c] + 0.05 * rng.normal(size=DIM)).astype(np.float32),
            {"title": f"{c} shirt", "baseColour": c},
        )
        for c in centres
        for i in range(10)
    ]
    store.upsert(points)
    vector = (centres["Red"] + 0.3 * centres["Blue"]).astype(np.float32)
    plain = PointQuery(vector, 5, exact=True)
    assert _ids(store.query(dataclasses.replace(plain, diversity=0.0))) == _ids(store.query(plain))
    assert _colours(store, plain) == 1
    assert _colours(store, dataclasses.replace(plain, diversity=0.9)) >= 3
    hybrid = PointQuery(vector, 5, exact=True, text="shirt", mode=SearchMode.HYBRID)
    assert _colours(store, dataclasses.replace(hybrid, diversity=0.9)) > _colours(store, hybrid)


def test_examples_pull_towards_positives_and_away_from_negatives(store):
    rng = np.random.default_rng(11)
    a, b = rng.normal(size=DIM), rng.normal(size=DIM)
    points = [
        Point(f"a{i}", (a + 0.2 * rng.normal(size=DIM)).astype(np.float32), {"k": "a"})
        for i in range(10)
    ] + [
        Point(f"b{i}", (b + 0.2 * rng.normal(size=DIM)).astype(np.float32), {"k": "b"})
        for i in range(10)
    ]
    store.upsert(points)
    between = ((a + b) / 2).astype(np.float32)
    towards_a = store.query(PointQuery(None, 5, exact=True, positives=(points[0].vector,)))
    assert {h.payload["k"] for h in towards_a} == {"a"}
    away_from_a = store.query(PointQuery(between, 5, exact=True, negatives=(points[0].vector,)))
    assert {h.payload["k"] for h in away_from_a} == {"b"}
    with pytest.raises(StoreError, match="lexical"):
        store.query(_lexical("x", positives=(points[0].vector,)))


@pytest.mark.parametrize("mode", list(SearchMode))
def test_a_page_is_the_slice_of_the_ranking_as_it_stands_when_asked(store, mode):
    """What a page token promises under a live feed: each page is offset..offset+top_k of the
    ranking at the time that page is asked for. A product written between two pages shifts the
    positions after it (here one lands at the top, so the first page's last hit comes again)."""
    points = _catalog()
    store.upsert(points)
    query = PointQuery(points[4].vector, 4, exact=True, text="men shirt", mode=mode)
    first = _ids(store.query(query))
    newcomer = Point(
        "new-1", points[4].vector, {"title": "Men Shirt", "gender": "Men"}
    )  # as near as can be, and holding both words
    store.upsert([newcomer])
    second = _ids(store.query(dataclasses.replace(query, offset=4)))
    now = _ids(store.query(dataclasses.replace(query, top_k=8)))
    assert second == now[4:8]
    assert now[0] == "new-1" and now[1:4] == first[:3] and second[0] == first[3]


def test_facets_and_groups_agree_on_both_engines(tmp_path):
    from services.gateway import refine

    points = _catalog()
    answers = []
    for location in (f"edge:{tmp_path}", ":memory:"):
        with open_store(location, model_version="m1", dim=DIM, indexed_fields={}) as s:
            s.upsert(points)
            pool = s.query(PointQuery(points[0].vector, 40, exact=True, mode=SearchMode.DENSE))
            answers.append(
                (
                    refine.facets(pool, ["gender"]),
                    _ids(refine.grouped(pool, "gender", 2)),
                    _ids(refine.cut_at_gap(pool)),
                )
            )
    assert answers[0] == answers[1]
    assert answers[0][0][0].values == (("Men", 20), ("Women", 20))
