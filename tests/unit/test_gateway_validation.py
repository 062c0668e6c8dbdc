"""The gateway's query validation and error mapping, without Ray."""

from __future__ import annotations

import grpc
import pytest

from services.gateway.search import Limits, validate
from shared.serving.errors import LimitError, NotFoundError, RequestError, status_of
from shared.types import Condition, Filter, Range, SearchQuery

LIMITS = Limits(default_top_k=10, max_top_k=50, max_text_chars=20, max_image_bytes=100)


def test_default_top_k_is_applied():
    assert validate(SearchQuery(text="red"), LIMITS).top_k == 10
    assert validate(SearchQuery(text="red", top_k=3), LIMITS).top_k == 3


@pytest.mark.parametrize(
    ("query", "error", "words"),
    [
        (SearchQuery(), RequestError, "give a text"),
        (SearchQuery(text="   "), RequestError, "give a text"),
        (SearchQuery(image=b""), RequestError, "image is empty"),
        (SearchQuery(product_id=" "), RequestError, "product_id is empty"),
        (SearchQuery(text="x" * 21), LimitError, "characters"),
        (SearchQuery(image=b"x" * 101), LimitError, "bytes"),
        (SearchQuery(text="red", top_k=51), LimitError, "top_k"),
        (SearchQuery(text="a", filter=Filter(must=(Condition("", "x"),))), RequestError, "no key"),
        (
            SearchQuery(text="a", filter=Filter(must=(Condition("y", Range()),))),
            RequestError,
            "no bound",
        ),
        (
            SearchQuery(text="a", filter=Filter(must_not=(Condition("c", ()),))),
            RequestError,
            "no values",
        ),
        (
            SearchQuery(
                text="a", filter=Filter(must=tuple(Condition("c", "v") for _ in range(33)))
            ),
            LimitError,
            "conditions",
        ),
    ],
)
def test_bad_queries_are_named(query, error, words):
    with pytest.raises(error, match=words):
        validate(query, LIMITS)


def test_composed_query_is_valid():
    q = validate(SearchQuery(text="in black", product_id="p1"), LIMITS)
    assert (q.text, q.product_id) == ("in black", "p1")


def test_status_codes():
    assert status_of(RequestError("x"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert status_of(LimitError("x"))[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status_of(NotFoundError("x"))[0] == grpc.StatusCode.NOT_FOUND
    code, message = status_of(KeyError("secret detail"))
    assert code == grpc.StatusCode.INTERNAL and "secret" not in message
