"""The benchmarks' own arithmetic: what `bench load` reports from its runs, and which runtime
`bench runtimes` picks as the default."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.load import LoadResult, Served, build_section
from bench.runtimes import Variant, _pick

KINDS, CLIENTS = ("text",), (1, 32)


def _result(clients: int, qps: float, latency_ms: float) -> LoadResult:
    seconds = 10.0
    n = int(qps * seconds)
    return LoadResult(
        "text",
        clients,
        seconds,
        [latency_ms] * (n - 1) + [2 * latency_ms],
        Counter(),
        1.0,
        {"text-encoder": 0.5},
    )


def test_load_report_is_ratios_of_medians_against_the_limit():
    results = {
        ("text", 1): [_result(1, 90, 11.0), _result(1, 100, 10.0), _result(1, 110, 9.0)],
        ("text", 32): [_result(32, 380, 80.0), _result(32, 400, 78.0), _result(32, 500, 60.0)],
    }
    limit = {"text": 800.0, "stage:text": 2.0, "stage:search": 0.5}
    limits = [limit, {**limit, "text": 700.0}, {**limit, "text": 900.0}]
    served = Served("m", 100, 1, "onnxruntime", {"text": 32, "image": 16, "fusion": 64})
    rows = {
        r.name: r
        for r in build_section(
            results, limits, served, kinds=KINDS, clients=CLIENTS, seconds=10
        ).rows
    }
    at32 = rows["text queries, 32 clients"]
    assert (at32.value, at32.baseline_value) == (400.0, 800.0)  # medians of three rounds
    assert at32.ratio == pytest.approx(0.5)
    assert "load generator 0.10 cores" in at32.note and "text-encoder 0.50" in at32.note
    assert rows["text: throughput at 32 clients vs 1"].ratio == pytest.approx(4.0)
    one = rows["text: one client's p50"]
    assert one.baseline_value == pytest.approx(2.5) and one.value == pytest.approx(10.0)


def _variant(name: str, rate: float, *, tower: str = "image", threads: int = 1) -> Variant:
    return Variant(tower, name, lambda: None, threads=threads, rates=[rate])


def test_the_default_runtime_is_fast_within_the_quality_rule():
    variants = [
        _variant("torch fp32", 20),
        _variant("onnxruntime fp32", 90),
        _variant("onnxruntime int8-dynamic", 95),  # within 10% of speed, loses some R@10
        _variant("lossy", 300),  # faster, but drops R@10 by more than 0.01
        _variant("two threads", 500, threads=2),  # not the replicas' budget
    ]
    base = {"text_to_image_own": 0.74, "text_to_image_attribute": 0.58, "composed": 0.60}
    scores = {
        "image torch fp32": base,
        "image onnxruntime fp32": base,
        "image onnxruntime int8-dynamic": {**base, "text_to_image_own": 0.736},
        "image lossy": {**base, "composed": 0.58},
        "image two threads": base,
    }
    assert _pick(variants, scores, "image").name == "onnxruntime fp32"
    scores["image onnxruntime fp32"] = {**base, "composed": 0.585}  # now out of the rule
    assert _pick(variants, scores, "image").name == "onnxruntime int8-dynamic"


def test_modes_report_is_each_modes_median_against_dense_at_the_same_concurrency():
    from bench.modes import build_section as modes_section

    def runs(latencies: list[float]) -> list[LoadResult]:
        return [_result(1, 50, ms) for ms in latencies]

    results = {
        ("dense", 1): runs([10.0, 12.0, 30.0]),
        ("lexical", 1): runs([5.0, 6.0, 7.0]),
        ("hybrid", 1): runs([11.0, 15.0, 13.0]),
    }
    rows = {r.name: r for r in modes_section(results, clients=(1,), seconds=10).rows}
    lexical = rows["lexical p50, 1 client"]
    assert (lexical.value, lexical.baseline_value) == (6.0, 12.0)
    assert lexical.ratio == pytest.approx(0.5) and lexical.note == "0 errors"
    assert rows["hybrid p50, 1 client"].ratio == pytest.approx(13.0 / 12.0)
    assert rows["hybrid throughput, 1 client"].ratio == pytest.approx(1.0)
