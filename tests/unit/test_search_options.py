"""The gateway's search modes, paging and cut-offs, without Ray: validation, page tokens, and
the pipeline against fake clients that record what reaches each service."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import numpy as np
import pytest

from services.gateway import paging, refine
from services.gateway.search import Dependencies, run_search
from services.gateway.validation import Limits, validate
from shared.serving.errors import LimitError, RequestError
from shared.types import Condition, Embeddings, Filter, Hit, SearchMode, SearchQuery

LIMITS = Limits(default_top_k=10, max_top_k=50, max_text_chars=100, max_image_bytes=100)


def test_mode_defaults_to_the_gateways_for_text_only_queries_and_to_dense_otherwise():
    assert validate(SearchQuery(text="navy shirt"), LIMITS).mode is SearchMode.HYBRID
    lexical = dataclasses.replace(LIMITS, default_mode=SearchMode.LEXICAL)
    assert validate(SearchQuery(text="navy shirt"), lexical).mode is SearchMode.LEXICAL
    for limits in (LIMITS, lexical):
        assert validate(SearchQuery(product_id="p1"), limits).mode is SearchMode.DENSE
        composed = SearchQuery(text="in black", product_id="p1")
        assert validate(composed, limits).mode is SearchMode.DENSE
    composed = SearchQuery(text="in black", product_id="p1", mode=SearchMode.HYBRID)
    assert validate(composed, LIMITS).mode is SearchMode.HYBRID
    assert validate(SearchQuery(text="x", mode=SearchMode.LEXICAL), LIMITS).rrf_k == 10


@pytest.mark.parametrize(
    ("query", "error", "words"),
    [
        (
            SearchQuery(text="x", product_id="p", mode=SearchMode.LEXICAL),
            RequestError,
            "no reference",
        ),
        (SearchQuery(product_id="p", mode=SearchMode.LEXICAL), RequestError, "lexical"),
        (SearchQuery(product_id="p", mode=SearchMode.HYBRID), RequestError, "needs a text"),
        (SearchQuery(text="x", rrf_k=10_001), RequestError, "rrf_k"),
        (SearchQuery(text="x", score_threshold=float("nan")), RequestError, "finite"),
        (SearchQuery(text="x", offset=995, top_k=10), LimitError, "deepest page"),
        (SearchQuery(text="x", offset=5, page_token="abc"), RequestError, "not both"),
        (SearchQuery(text="x", page_token="!!not-base64!!"), RequestError, "not a token"),
        (SearchQuery(text="x", page_token="a" * 300), RequestError, "not a token"),
    ],
)
def test_bad_options_are_refused_with_their_reason(query, error, words):
    with pytest.raises(error, match=words):
        validate(query, LIMITS)


def test_a_page_token_resumes_its_own_query_only():
    query = SearchQuery(text="navy shirt", mode=SearchMode.HYBRID, top_k=5)
    token = paging.encode(5, validate(query, LIMITS))
    page = validate(dataclasses.replace(query, page_token=token), LIMITS)
    assert (page.offset, page.page_token) == (5, "")
    for other in (
        dataclasses.replace(query, text="navy shirts"),
        dataclasses.replace(query, mode=SearchMode.DENSE),
        dataclasses.replace(query, filter=Filter(must=(Condition("gender", "Men"),))),
        dataclasses.replace(query, score_threshold=0.5),
    ):
        with pytest.raises(RequestError, match="another query"):
            validate(dataclasses.replace(other, page_token=token), LIMITS)
    # top_k is not part of the ranking: a token may be used with another page size.
    assert validate(dataclasses.replace(query, page_token=token, top_k=7), LIMITS).offset == 5


class _Recorder:
    """Fake clients: each records what it was asked and answers with fixed values."""

    def __init__(self, hits: int) -> None:
        self.calls: list[tuple[str, object]] = []
        self._hits = hits

    async def embed(self, item, *, timeout_s=None):
        self.calls.append(("embed", item))
        return Embeddings(np.ones((1, 4), np.float32), "m1")

    async def fuse(self, image, text, *, timeout_s=None):
        self.calls.append(("fuse", None))
        return Embeddings(np.ones((1, 4), np.float32), "m1")

    async def vector_of(self, product_id, *, timeout_s=None):
        raise AssertionError("no reference in these queries")

    async def search(self, query, *, timeout_s=None):
        self.calls.append(("search", query))
        return [Hit(f"p{i}", 1.0 / (i + 1), {}) for i in range(min(self._hits, query.top_k))]


def _run(query: SearchQuery, hits: int = 50):
    fake = _Recorder(hits)
    deps = Dependencies(image=fake, text=fake, fusion=fake, store=fake)
    result = asyncio.run(
        run_search(validate(query, LIMITS), deps, model_version="m1", deadline=time.monotonic() + 5)
    )
    return result, fake.calls


def test_lexical_queries_skip_the_text_encoder():
    result, calls = _run(SearchQuery(text="navy shirt", mode=SearchMode.LEXICAL, top_k=3))
    assert [c[0] for c in calls] == ["search"]
    asked = calls[0][1]
    assert (asked.vector, asked.text, asked.mode) == (None, "navy shirt", SearchMode.LEXICAL)
    assert result.mode is SearchMode.LEXICAL


def test_hybrid_queries_send_the_embedding_and_the_words():
    _, calls = _run(SearchQuery(text="navy shirt", mode=SearchMode.HYBRID, rrf_k=7, top_k=3))
    assert [c[0] for c in calls] == ["embed", "search"]
    asked = calls[1][1]
    assert asked.vector is not None and (asked.text, asked.rrf_k) == ("navy shirt", 7)


def test_dense_queries_send_no_words():
    _, calls = _run(SearchQuery(text="navy shirt", mode=SearchMode.DENSE, top_k=3))
    assert calls[1][1].text == "" and calls[1][1].mode is SearchMode.DENSE


def test_next_page_token_follows_full_pages_only():
    query = SearchQuery(text="navy shirt", top_k=4, score_threshold=0.1)
    first, _ = _run(query)
    assert first.next_page_token
    second, calls = _run(dataclasses.replace(query, page_token=first.next_page_token))
    assert calls[-1][1].offset == 4 and calls[-1][1].score_threshold == pytest.approx(0.1)
    last, _ = _run(query, hits=3)  # a short page is the last
    assert last.next_page_token == ""


def _hits(*scores_and_payloads) -> list[Hit]:
    return [Hit(f"p{i}", s, p) for i, (s, p) in enumerate(scores_and_payloads)]


def test_facets_count_values_over_the_candidates():
    hits = _hits(
        (0.9, {"articleType": "Shirts", "year": 2020, "tags": ["a", "b"]}),
        (0.8, {"articleType": "Shirts", "year": 2021.0, "tags": ["a"]}),
        (0.7, {"articleType": "Tshirts", "sale": True}),
        (0.6, {}),
    )
    found = {
        f.field: f.values
        for f in refine.facets(hits, ["articleType", "year", "tags", "sale", "none"])
    }
    assert found["articleType"] == (("Shirts", 2), ("Tshirts", 1))
    assert found["year"] == (("2020", 1), ("2021", 1))
    assert found["tags"] == (("a", 2), ("b", 1))
    assert found["sale"] == (("true", 1),) and found["none"] == ()


def test_grouping_keeps_the_best_per_value_in_order():
    hits = _hits(
        (0.9, {"style": "s1"}), (0.8, {"style": "s1"}), (0.7, {"style": "s2"}),
        (0.6, {}), (0.5, {"style": "s1"}), (0.4, {}),
    )  # fmt: skip
    assert [h.product_id for h in refine.grouped(hits, "style", 1)] == ["p0", "p2", "p3", "p5"]
    assert [h.product_id for h in refine.grouped(hits, "style", 2)] == [
        "p0",
        "p1",
        "p2",
        "p3",
        "p5",
    ]


def test_adaptive_cutoff_ends_at_a_standout_gap_only():
    steep = _hits((0.9, {}), (0.88, {}), (0.86, {}), (0.4, {}), (0.39, {}), (0.38, {}))
    assert [h.product_id for h in refine.cut_at_gap(steep)] == ["p0", "p1", "p2"]
    smooth = _hits(*((1.0 - 0.05 * i, {}) for i in range(8)))
    assert len(refine.cut_at_gap(smooth)) == 8


@pytest.mark.parametrize(
    ("query", "error", "words"),
    [
        (SearchQuery(text="x", facets=("a",) * 2), RequestError, "twice"),
        (SearchQuery(text="x", facets=tuple(f"f{i}" for i in range(9))), LimitError, "facet"),
        (SearchQuery(text="x", facets=("a b",)), RequestError, "not a payload field"),
        (SearchQuery(text="x", group_size=2), RequestError, "needs group_by"),
        (SearchQuery(text="x", group_by="s", group_size=101), LimitError, "group_size"),
        (SearchQuery(text="x", diversity=1.5), RequestError, "between 0 and 1"),
        (SearchQuery(text="x", diversity=0.5, adaptive_cutoff=True), RequestError, "one or"),
        (SearchQuery(negative_ids=("p1",)), RequestError, "give a text"),
        (SearchQuery(text="x", positive_ids=("",)), RequestError, "empty"),
        (
            SearchQuery(text="x", positive_ids=tuple(f"p{i}" for i in range(33))),
            LimitError,
            "example",
        ),
        (
            SearchQuery(text="x", mode=SearchMode.LEXICAL, negative_text="striped"),
            RequestError,
            "embedding",
        ),
    ],
)
def test_bad_refinements_and_examples_are_refused(query, error, words):
    with pytest.raises(error, match=words):
        validate(query, LIMITS)


class _Examples(_Recorder):
    """Also holds stored vectors for example products."""

    async def vector_of(self, product_id, *, timeout_s=None):
        from shared.vectorstore import StoredPoint

        self.calls.append(("vector_of", product_id))
        if product_id == "gone":
            return None
        return StoredPoint(product_id, {}, np.full(4, float(product_id[1:]), np.float32))


def _run_examples(query: SearchQuery):
    fake = _Examples(50)
    deps = Dependencies(image=fake, text=fake, fusion=fake, store=fake)
    return asyncio.run(
        run_search(validate(query, LIMITS), deps, model_version="m1", deadline=time.monotonic() + 5)
    ), fake.calls


def test_examples_become_positive_and_negative_vectors_and_are_never_answered():
    query = SearchQuery(
        text="shirt", mode=SearchMode.DENSE, positive_ids=("p2",), negative_ids=("p3", "p4"),
        negative_text="striped", top_k=5,
    )  # fmt: skip
    _, calls = _run_examples(query)
    asked = next(c[1] for c in calls if c[0] == "search")
    assert [v[0] for v in asked.positives] == [2.0]
    assert [v[0] for v in asked.negatives] == [3.0, 4.0]  # the example products
    assert asked.vector == pytest.approx(np.full(4, 0.5))  # moved away from the words (ones)
    (excluded,) = asked.filter.must_not
    assert (excluded.key, excluded.match) == ("product_id", ("p2", "p3", "p4"))
    only_examples, _ = _run_examples(SearchQuery(positive_ids=("p7",), top_k=3))
    assert only_examples.mode is SearchMode.DENSE


def test_an_unknown_example_is_not_found():
    from shared.serving.errors import NotFoundError

    with pytest.raises(NotFoundError, match="gone"):
        _run_examples(SearchQuery(text="x", positive_ids=("gone",)))


def test_refined_queries_page_over_the_candidates():
    query = SearchQuery(text="x", top_k=3, facets=("k",), group_by="g", mode=SearchMode.DENSE)
    result, calls = _run(query)
    asked = next(c[1] for c in calls if c[0] == "search")
    assert (asked.top_k, asked.offset) == (200, 0) and result.candidates == 50
    assert [f.field for f in result.facets] == ["k"] and len(result.hits) == 3
    assert result.next_page_token


def test_a_text_weight_replaces_the_learned_fusion_with_a_weighted_sum():
    from shared.models.weighting import weighted_sum

    image, text = np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)
    assert weighted_sum(image, text, 0.0) == pytest.approx(image)
    assert weighted_sum(image, text, 1.0) == pytest.approx(text)
    assert weighted_sum(image, text, 0.5) == pytest.approx(np.array([1, 1]) / np.sqrt(2))
    with pytest.raises(RequestError, match="composed"):
        validate(SearchQuery(text="in black", text_weight=0.5), LIMITS)
    with pytest.raises(RequestError, match="between 0 and 1"):
        validate(SearchQuery(text="in black", product_id="p", text_weight=2.0), LIMITS)
