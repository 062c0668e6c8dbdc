"""The gateway's query validation and error mapping, without Ray."""

from __future__ import annotations

import grpc
import pytest

from services.gateway.validation import Limits, validate
from shared.serving.errors import (
    DependencyError,
    LimitError,
    NotFoundError,
    RequestError,
    status_of,
)
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
        (  # found by tests/integration/test_fuzz.py: the store's JSON-path parser refused it
            SearchQuery(text="a", filter=Filter(must=(Condition("a[]\U0005d1e3", "x"),))),
            RequestError,
            "not a field name",
        ),
        (
            SearchQuery(
                text="a", filter=Filter(must_not=(Condition("y", Range(gt=float("nan"))),))
            ),
            RequestError,
            "not a finite number",
        ),
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


def test_published_targets_are_read_per_protocol_and_app():
    from ray.serve.schema import Target, TargetGroup

    from shared.serving.endpoints import _grpc_addresses

    def group(protocol, app, *ports):
        targets = [Target(ip="10.0.0.1", port=p, instance_id=str(p), name=str(p)) for p in ports]
        return TargetGroup(targets=targets, route_prefix="/", protocol=protocol, app_name=app)

    groups = [
        group("gRPC", "fusion", 40001, 40002),
        group("HTTP", "fusion", 30001),
        group("gRPC", "other", 40009),
    ]
    assert _grpc_addresses(groups, "fusion") == ["10.0.0.1:40001", "10.0.0.1:40002"]
    proxies = group("gRPC", "", 9100)
    for direct in (True, False):  # replicas of its own win over the proxies
        assert _grpc_addresses([*groups, proxies], "fusion", direct_ingress=direct) == [
            "10.0.0.1:40001",
            "10.0.0.1:40002",
        ]
    # No replica (one just died): under direct ingress nothing, so the caller hears UNAVAILABLE
    # at once; a proxy would hold the call until a new replica starts.
    assert _grpc_addresses([proxies], "fusion", direct_ingress=True) == []
    assert _grpc_addresses([proxies], "fusion", direct_ingress=False) == ["10.0.0.1:9100"]


class _RpcError(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, RequestError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, LimitError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, TimeoutError),
        (grpc.StatusCode.UNAVAILABLE, DependencyError),
        (grpc.StatusCode.INTERNAL, DependencyError),
        (grpc.StatusCode.NOT_FOUND, DependencyError),  # Serve's proxy: the application is gone
    ],
)
def test_downstream_statuses_become_the_gateways_errors(code, expected):
    from shared.serving.clients import exception_of

    error = exception_of("text-encoder", _RpcError(code, "text 0 is empty"))
    assert isinstance(error, expected)
    if expected is RequestError:
        assert str(error) == "text 0 is empty"  # the caller sees the encoder's own words
    if expected is DependencyError:  # what the dependency answered, for callers that retry
        assert error.status == code
