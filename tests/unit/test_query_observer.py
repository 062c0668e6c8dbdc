"""What the gateway records of each query (services.gateway.observe) and what `vitrine status`
computes from two scrapes (operations.traffic)."""

from __future__ import annotations

import json
import logging

import pytest

from operations.traffic import grouped, histogram_quantile, query_checks
from services.gateway.observe import QueryObserver, kind_of
from shared.observability.metrics import local
from shared.serving.errors import DependencyError
from shared.types import Hit, SearchMode, SearchQuery, SearchResult, Timing


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(record.getMessage()))


@pytest.fixture
def logged():
    """The query log's lines, read at its own logger (Ray's `ray.serve` may not propagate)."""
    logger, handler = logging.getLogger("ray.serve.vitrine.queries"), _Lines()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lambda: handler.lines
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.mark.parametrize(
    ("query", "kind"),
    [
        (SearchQuery(text="red shirt"), "text"),
        (SearchQuery(image=b"png"), "image"),
        (SearchQuery(image=b"png", text="in black"), "composed"),
        (SearchQuery(product_id="p1", text="in black"), "composed"),
        (SearchQuery(product_id="p1"), "product"),
        (SearchQuery(positive_ids=("p1",)), "examples"),
        (SearchQuery(text="red shirt", mode=SearchMode.LEXICAL), "lexical"),
    ],
)
def test_query_kinds(query, kind):
    assert kind_of(query) == kind


def test_each_query_is_counted_timed_and_logged_without_its_words(logged):
    observer = QueryObserver(log_sample_ratio=1.0, metric=local)
    result = SearchResult((Hit("p1", 0.9, {}),), "m1", Timing(2.0, 1.0, 3.0, 6.0))
    for _ in range(3):
        with observer.query(SearchQuery(text="secret words"), api="grpc") as outcome:
            outcome["result"] = result
    with pytest.raises(DependencyError), observer.query(SearchQuery(image=b"x"), api="http"):
        raise DependencyError("store down")
    assert observer.requests.count(api="grpc", kind="text", code="OK") == 3
    assert observer.requests.count(api="http", kind="image", code="UNAVAILABLE") == 1
    assert observer.seconds.count(kind="text") == 3
    assert observer.stages.count(stage="encode") == 3
    assert observer.stages.count(stage="fuse") == 0  # a text query is not fused
    lines = logged()
    assert len(lines) == 4
    assert lines[0] | {"total_ms": 0} == {
        "event": "query", "trace_id": "", "api": "grpc", "kind": "text", "code": "OK",
        "total_ms": 0, "hits": 1, "mode": "", "encode_ms": 2.0, "fuse_ms": 1.0, "search_ms": 3.0,
    }  # fmt: skip
    assert "secret" not in json.dumps(lines) and lines[-1]["code"] == "UNAVAILABLE"


def test_answered_queries_are_sampled_failed_ones_always_logged(logged):
    observer = QueryObserver(log_sample_ratio=0.0, metric=local)
    with observer.query(SearchQuery(text="a"), api="grpc") as outcome:
        outcome["result"] = SearchResult((), "m1")
    with pytest.raises(TimeoutError), observer.query(SearchQuery(text="a"), api="grpc"):
        raise TimeoutError("deadline")
    assert [line["code"] for line in logged()] == ["DEADLINE_EXCEEDED"]


def test_histogram_quantile_interpolates_like_prometheus():
    # 100 observations: 50 under 0.1 s, 40 in (0.1, 0.5], 10 in (0.5, 1].
    buckets = {0.1: 50, 0.5: 90, 1.0: 100, float("inf"): 100}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.95)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.1 + 0.4 * 25 / 40)
    assert histogram_quantile(0.99, {0.1: 0, float("inf"): 0}) is None
    assert histogram_quantile(0.99, {0.1: 1, float("inf"): 10}) == pytest.approx(0.1)


def test_rates_come_from_the_increase_over_the_window():
    name = "ray_vitrine_gateway_requests_total"
    ok, bad = {"api": "grpc", "kind": "text", "code": "OK"}, {"code": "UNAVAILABLE", "kind": "text"}
    before = {name: [(ok, 100.0), (bad, 5.0)]}
    after = {name: [(ok, 150.0), (bad, 2.0)]}  # the second series restarted: 2 new
    assert grouped(before, after, name, ("code",)) == {("OK",): 50.0, ("UNAVAILABLE",): 2.0}
    queries, stages, batches = query_checks(before, after, 10.0)
    assert queries.state == "5.2/s" and "server errors 0.20/s" in queries.detail
    assert stages.detail == "no query in the window" and batches.detail == "no batch in the window"
