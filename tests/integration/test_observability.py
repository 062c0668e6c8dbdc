"""Traces and metrics of the real platform: one trace per query across the gateway, the encoders,
fusion and the store; one per catalog event from `vitrine publish` through the worker to the
store write; metric counts that match the traffic sent (docs/OBSERVABILITY.md)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from operations.broker import LocalBroker
from operations.traffic import grouped, scrape
from shared.api.vitrine.search.v1 import search_pb2 as pb
from shared.api.vitrine.search.v1 import search_pb2_grpc as pb_grpc
from shared.data.catalog import load_products
from shared.observability.metrics import exported_names
from shared.observability.span_files import read_spans
from shared.serving.endpoints import grpc_targets_sync
from tests.support.platform import deploy_platform, wait_serving
from tests.support.workers import WorkerProcess, until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def spans_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("spans")


@pytest.fixture(scope="module")
def traced(ray_cluster, tmp_path_factory, spans_dir):
    """The platform with every replica exporting spans to `spans_dir`, keeping only traces whose
    caller sent a sampled traceparent (sample ratio 0): the test's own."""
    tracing = {"tracing_exporter": f"file:{spans_dir}", "tracing_sample_ratio": 0.0}
    every_query = {"query_log_sample_ratio": 1.0}
    yield from deploy_platform(tmp_path_factory, all_args=tracing, gateway_args=every_query)


@pytest.fixture(scope="module")
def stub(traced):
    with grpc.insecure_channel(traced.gateway) as channel:
        wait_serving(channel, timeout_s=120)
        yield pb_grpc.SearchServiceStub(channel)


def _traceparent() -> tuple[str, str]:
    """(trace id, a sampled W3C traceparent of a span of that trace)."""
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


def _joined(spans: list[dict], trace_id: str) -> list[dict]:
    """The spans of the trace, and of every trace whose span links to one of them (batches that
    carried this request beside others), transitively."""
    traces = {trace_id}
    while True:
        ids = {s["span_id"] for s in spans if s["trace_id"] in traces}
        more = {s["trace_id"] for s in spans if any(link["span_id"] in ids for link in s["links"])}
        if more <= traces:
            return [s for s in spans if s["trace_id"] in traces]
        traces |= more


def _wait_for_spans(spans_dir: Path, trace_id: str, wanted: set[str]) -> list[dict]:
    """The trace's joined spans once they name every (service, span name) in `wanted`."""
    deadline = time.monotonic() + 60
    while True:
        joined = _joined(read_spans(spans_dir), trace_id)
        seen = {(s["service"], s["name"]) for s in joined}
        if wanted <= seen or time.monotonic() > deadline:
            assert wanted <= seen, f"missing {wanted - seen}; got {sorted(seen)}"
            return joined
        time.sleep(0.5)


QUERY_PATH = {
    ("gateway", "vitrine.Search"),
    ("vector-store", "VectorStore.SearchPointsBatch"),
}
TEXT = {("text-encoder", "TextEncoder.EmbedTexts"), ("text-encoder", "text-batch.batch")}
IMAGE = {("image-encoder", "ImageEncoder.EmbedImages"), ("image-encoder", "image-batch.batch")}
FUSION = {("fusion", "Fusion.Fuse"), ("fusion", "fusion-batch.batch")}


@pytest.mark.parametrize("kind", ["text", "image", "composed"])
def test_each_query_is_one_trace_through_every_service(stub, traced, spans_dir, kind):
    image = load_products(traced.catalog)[3].image.read_bytes()
    request = {
        "text": pb.SearchRequest(text="red shirt", top_k=3),
        "image": pb.SearchRequest(image=image, top_k=3),
        "composed": pb.SearchRequest(image=image, text="in black", top_k=3),
    }[kind]
    trace_id, parent = _traceparent()
    stub.Search(request, timeout=30, metadata=(("traceparent", parent),))
    wanted = (
        QUERY_PATH
        | {
            "text": TEXT,
            "image": IMAGE,
            "composed": TEXT | IMAGE | FUSION,
        }[kind]
    )
    joined = _wait_for_spans(spans_dir, trace_id, wanted)
    (root,) = [s for s in joined if s["name"] == "vitrine.Search"]
    assert root["trace_id"] == trace_id  # the caller's trace continues at the gateway
    assert root["attributes"]["kind"] == kind and root["attributes"]["code"] == "OK"
    stages = {s["name"] for s in joined if s["service"] == "gateway"}
    assert {"encode", "search"} <= stages
    assert ("fuse" in stages) == (kind == "composed")
    # Its line in the gateway's query log, found by the trace id, without the query's words.
    line = _query_log_line(trace_id)
    assert line["kind"] == kind and line["code"] == "OK" and line["hits"] == 3
    assert "red shirt" not in json.dumps(line) and "in black" not in json.dumps(line)


def _query_log_line(trace_id: str) -> dict:
    """The gateway replicas' query log line of a trace (Serve writes replica logs under the
    session's log folder, which only Ray's private node object names)."""
    import ray

    logs = Path(ray._private.worker._global_node.get_logs_dir_path()) / "serve"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for path in logs.glob("replica_gateway_*.log"):
            for text in path.read_text(errors="replace").splitlines():
                if f'"trace_id": "{trace_id}"' in text:
                    return json.loads(text[text.index("{") :])
        time.sleep(0.5)
    raise AssertionError(f"no query log line with trace id {trace_id} under {logs}")


def test_a_query_without_a_sampled_traceparent_leaves_no_span(stub, spans_dir):
    before = len(read_spans(spans_dir))
    stub.Search(pb.SearchRequest(text="blue jeans", top_k=3), timeout=30)
    time.sleep(2)
    assert len(read_spans(spans_dir)) == before  # sample ratio 0: only callers' traces


@pytest.fixture(scope="module")
def broker():
    with LocalBroker() as b:
        admin = KafkaAdminClient(bootstrap_servers=b.bootstrap_servers)
        admin.create_topics([NewTopic("catalog", num_partitions=1, replication_factor=1)])
        admin.close()
        yield b


def test_a_catalog_event_is_one_trace_from_publish_to_the_store(
    traced, broker, spans_dir, tmp_path
):
    tracing = {"VITRINE_TRACING_EXPORTER": f"file:{spans_dir}"}
    worker = WorkerProcess(
        tmp_path / "worker.log",
        kafka_bootstrap_servers=broker.bootstrap_servers,
        catalog_topic="catalog",
        dlq_topic="catalog.dlq",
        consumer_group="traced",
        image_encoder_address=grpc_targets_sync("image-encoder")[0],
        vector_store_address=grpc_targets_sync("vector-store")[0],
        tracing_exporter=f"file:{spans_dir}",
        tracing_sample_ratio=0.0,  # the worker keeps what the publisher kept
    )
    try:
        env = {**os.environ, **tracing, "VITRINE_TRACING_SAMPLE_RATIO": "1"}
        subprocess.run(
            [sys.executable, "-m", "cli.app", "publish", str(traced.catalog), "--topic",
             "catalog", "--bootstrap-servers", broker.bootstrap_servers],
            cwd=REPO, env=env, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        products = load_products(traced.catalog)
        until(lambda: worker.upserted() >= len(products), timeout_s=120, what="ingested",
              workers=[worker])  # fmt: skip
        assert worker.upserted() == len(products)  # its own metrics count what was sent
    finally:
        worker.stop()
    published = [s for s in read_spans(spans_dir) if s["name"] == "catalog.publish"]
    assert len(published) == len(products)
    for event in published:
        wanted = {
            ("publish", "catalog.publish"),
            ("ingestion", "ingest.batch"),
            ("image-encoder", "ImageEncoder.EmbedImages"),
            ("vector-store", "VectorStore.UpsertPoints"),
        }
        _wait_for_spans(spans_dir, event["trace_id"], wanted)


def _scrape(cluster) -> dict[str, list[tuple[dict, float]]]:
    """Sample name -> [(labels, value)] of every node's Ray metrics agent in the session's
    cluster (each exports the processes of its own node)."""
    merged: dict[str, list[tuple[dict, float]]] = {}
    for port in cluster.metrics_ports.values():
        for name, samples in scrape(f"http://127.0.0.1:{port}/metrics", timeout_s=5).items():
            merged.setdefault(name, []).extend(samples)
    return merged


def _settled(cluster, name: str) -> dict:
    """A scrape once two in a row, more than Ray's report interval (1 s) apart, agree on `name`:
    every call made before it has been reported."""
    last = _scrape(cluster)
    for _ in range(30):
        time.sleep(1.5)
        scraped = _scrape(cluster)
        if _total(scraped, name) == _total(last, name):
            return scraped
        last = scraped
    raise AssertionError(f"{name} never settled")


def _total(scraped: dict, name: str, **labels: str) -> float:
    return sum(v for got, v in scraped.get(name, ()) if labels.items() <= got.items())


def test_metrics_count_the_queries_sent(stub, ray_cluster):
    requests = "ray_vitrine_gateway_requests_total"
    before = _settled(ray_cluster, requests)  # the earlier tests' queries reported
    n = 7
    for i in range(n):
        stub.Search(pb.SearchRequest(text=f"green dress {i}", top_k=3), timeout=30)
    with pytest.raises(grpc.RpcError) as refused:
        stub.Search(pb.SearchRequest(top_k=3), timeout=30)  # nothing to search by
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    def increase(scraped, name, **labels):
        # Per series: a replica of an earlier test module that is gone drops out of the
        # agent's output, and must not count as a decrease.
        return sum(grouped(before, scraped, name, **labels).values())

    def observed(scraped) -> dict[str, float]:
        return {
            "answered": increase(scraped, requests, api="grpc", kind="text", code="OK"),
            "refused": increase(scraped, requests, api="grpc", code="INVALID_ARGUMENT"),
            "timed": increase(
                scraped, "ray_vitrine_gateway_request_seconds_count", api="grpc", kind="text"
            ),
            # the refused query had no words: not of kind "text", but timed as "examples"
            "timed refused": increase(
                scraped, "ray_vitrine_gateway_request_seconds_count", kind="examples"
            ),
        }

    expected = {"answered": n, "refused": 1, "timed": n, "timed refused": 1}
    deadline = time.monotonic() + 60
    while (got := observed(after := _scrape(ray_cluster))) != expected:
        if time.monotonic() > deadline:  # Ray's agent reports every second here
            break
        time.sleep(1)
    assert got == expected
    assert _total(after, "ray_vitrine_batch_size_count", model="text") >= 1
    assert _total(after, "ray_vitrine_store_requests_total", method="SearchPointsBatch") >= n
    assert _total(after, "ray_vitrine_store_points") > 0
    up = {labels["dependency"]: v for labels, v in after["ray_vitrine_gateway_dependency_up"]}
    assert set(up) == {"image-encoder", "text-encoder", "fusion", "vector-store"}
    assert set(up.values()) == {1.0}
    replicas = {labels["application"] for labels, _ in after["ray_vitrine_replica_up"]}
    assert replicas == {"gateway", "image-encoder", "text-encoder", "fusion", "vector-store"}
    # Every series the dashboard and the alerts may name is exported once traffic passed.
    missing = exported_names(failures=False) - set(after)
    assert not missing, f"not exported: {sorted(missing)}"
