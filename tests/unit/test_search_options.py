"""The gateway's search modes, paging and cut-offs, without Ray: validation, page tokens, and
the pipeline against fake clients that record what reaches each service."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import numpy as np
import pytest

from services.gateway import paging
from services.gateway.search import Dependencies, Limits, run_search, validate
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
