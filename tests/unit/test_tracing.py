"""Tracing helpers (shared.observability.tracing): off costs nothing and changes nothing; on,
trace context crosses gRPC metadata and Kafka headers, and batches link their requests."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from shared.observability import tracing
from shared.observability.span_files import read_spans
from shared.serving.batching import BatchConfig, Batcher
from shared.serving.coalescing import Coalescer


@pytest.fixture
def spans(tmp_path):
    """Tracing on for the test, every root kept, spans in tmp_path; off again after it."""
    assert tracing.setup("unit", tracing.TracingConfig(f"file:{tmp_path}", sample_ratio=1.0))
    yield lambda: read_spans(tmp_path)
    tracing.shutdown()


def _parent(sampled: bool = True) -> tuple[str, tuple[tuple[str, str], ...]]:
    trace_id = secrets.token_hex(16)
    flags = "01" if sampled else "00"
    return trace_id, (("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-{flags}"),)


def test_off_by_default_every_helper_is_a_no_op():
    assert not tracing.enabled()
    metadata = (("application", "x"),)
    assert tracing.inject(metadata) is metadata
    assert tracing.kafka_headers() == []
    assert tracing.extract([("traceparent", "00-" + "1" * 32 + "-" + "2" * 16 + "-01")]) is None
    with tracing.span("x") as s:
        assert s is None
    assert tracing.trace_id() == ""


def test_config_refuses_unknown_exporters_and_ratios():
    with pytest.raises(ValueError, match="exporter"):
        tracing.TracingConfig("jaeger")
    with pytest.raises(ValueError, match="ratio"):
        tracing.TracingConfig("otlp", sample_ratio=1.5)


def test_context_crosses_grpc_metadata_and_kafka_headers(spans):
    trace_id, metadata = _parent()
    with tracing.span("server", parent=tracing.extract(metadata)):
        out = dict(tracing.inject((("application", "x"),)))
        headers = dict(tracing.kafka_headers())
        assert tracing.trace_id() == trace_id
    assert out["traceparent"].split("-")[1] == trace_id
    assert headers["traceparent"].decode().split("-")[1] == trace_id
    (recorded,) = spans()
    assert recorded["trace_id"] == trace_id and recorded["parent_span_id"]


def test_a_malformed_traceparent_starts_a_new_trace(spans):
    bad = [("traceparent", "00-not-hex-01"), (b"tracestate", b"\xff" * 9000)]
    with tracing.span("server", parent=tracing.extract(bad)):
        pass
    (recorded,) = spans()
    assert recorded["parent_span_id"] == ""


def test_a_batch_of_one_request_is_its_child_of_several_a_linked_root(spans):
    one, two = _parent(), _parent()
    a, b = tracing.extract(one[1]), tracing.extract(two[1])
    with tracing.batch_span("single", [a, a]):
        pass
    with tracing.batch_span("shared", [a, b, None]):
        pass
    got = {s["name"]: s for s in spans()}
    assert got["single"]["trace_id"] == one[0] and not got["single"]["links"]
    shared = got["shared"]
    assert shared["parent_span_id"] == "" and shared["trace_id"] not in (one[0], two[0])
    assert {link["trace_id"] for link in shared["links"]} == {one[0], two[0]}


def test_a_root_is_kept_when_a_request_it_links_was_kept(tmp_path):
    tracing.setup("unit", tracing.TracingConfig(f"file:{tmp_path}", sample_ratio=0.0))
    try:
        kept, dropped = _parent(True), _parent(False)
        with tracing.span("new root"):  # ratio 0: not kept
            pass
        with tracing.batch_span("drops", [tracing.extract(dropped[1]), None]):
            pass
        with tracing.batch_span("keeps", [tracing.extract(kept[1]), tracing.extract(dropped[1])]):
            pass
        assert [s["name"] for s in read_spans(tmp_path)] == ["keeps"]
    finally:
        tracing.shutdown()


def test_batcher_and_coalescer_spans_link_the_requests_they_carry(spans):
    async def main():
        batcher = Batcher(lambda xs: [x * 2 for x in xs], config=BatchConfig(), name="double")
        coalescer = Coalescer(
            lambda items, _timeout: batcher.submit(items),
            max_items=8,
            max_in_flight=1,
            name="client",
        )

        async def request(i):
            _, metadata = _parent()
            with tracing.span(f"request {i}", parent=tracing.extract(metadata)):
                return await coalescer.call(i)

        results = await asyncio.gather(*(request(i) for i in range(5)))
        batcher.close()
        return results

    assert asyncio.run(main()) == [0, 2, 4, 6, 8]
    recorded = spans()
    requests = {s["span_id"]: s["trace_id"] for s in recorded if s["name"].startswith("request")}
    carried = set()
    for s in recorded:
        if s["name"] in ("client", "double.batch"):
            parents = {s["parent_span_id"]} & requests.keys()
            carried |= parents | {link["span_id"] for link in s["links"]}
    assert carried == set(requests)  # every request is the parent of, or linked from, a batch
