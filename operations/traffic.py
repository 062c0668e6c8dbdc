"""Live traffic of a running platform for `vitrine status`: query rate, errors and latency
percentiles, stage latencies, batch sizes and the ingestion rate, from two scrapes of the
metrics endpoints a window apart (Ray's metrics agent for the Serve replicas, the ingestion
worker's own). The percentiles are computed from the histogram buckets as Prometheus's
histogram_quantile does, over the window only."""

from __future__ import annotations

import math
import time
import urllib.request
from collections import defaultdict

from operations.status import Check

Samples = dict[str, list[tuple[dict[str, str], float]]]

REQUESTS = "ray_vitrine_gateway_requests_total"
LATENCY = "ray_vitrine_gateway_request_seconds_bucket"
STAGES = "ray_vitrine_gateway_stage_seconds_bucket"
SERVER_ERRORS = {"UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED", "UNKNOWN", "CANCELLED"}


def scrape(url: str, *, timeout_s: float) -> Samples:
    """Sample name -> [(labels, value)].

    Raises:
        OSError: the endpoint did not answer.
    """
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - our URL
        text = response.read().decode()
    out: Samples = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name].append((dict(sample.labels), sample.value))
    return out


def grouped(
    before: Samples, after: Samples, name: str, by: tuple[str, ...] = (), **where: str
) -> dict[tuple[str, ...], float]:
    """The increase of `name` over the window, summed by the labels `by`, over the samples whose
    labels match `where` (a series that restarted counts from zero)."""

    def key(labels: dict[str, str]) -> tuple:
        return tuple(sorted(labels.items()))

    old = {key(labels): v for labels, v in before.get(name, ())}
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for labels, value in after.get(name, ()):
        if where.items() <= labels.items():
            start = old.get(key(labels), 0.0)
            out[tuple(labels.get(b, "") for b in by)] += value - start if value >= start else value
    return dict(out)


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The q-quantile of cumulative bucket counts {upper bound: count}, interpolated linearly
    inside its bucket (Prometheus's histogram_quantile); None without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # in the overflow bucket: its lower bound, as Prometheus says
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return bounds[-1]


def quantile_by(
    before: Samples, after: Samples, name: str, q: float, by: tuple[str, ...] = ()
) -> dict[tuple[str, ...], float | None]:
    """histogram_quantile(q) of a histogram's increase over the window, by the labels `by`."""
    per = grouped(before, after, name, (*by, "le"))
    tables: dict[tuple[str, ...], dict[float, float]] = defaultdict(dict)
    for labels, count in per.items():
        tables[labels[:-1]][float(labels[-1])] = count
    return {k: histogram_quantile(q, table) for k, table in tables.items()}


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def query_checks(before: Samples, after: Samples, window_s: float) -> list[Check]:
    """The "queries", "stages" and "batches" lines of `vitrine status`."""
    by_code = grouped(before, after, REQUESTS, ("code",))
    total = sum(by_code.values())
    errors = sum(v for (code,), v in by_code.items() if code in SERVER_ERRORS)
    kinds = grouped(before, after, REQUESTS, ("kind",))
    p50 = quantile_by(before, after, LATENCY, 0.5).get((), None)
    p99 = quantile_by(before, after, LATENCY, 0.99).get((), None)
    mix = ", ".join(f"{k} {v / window_s:.1f}/s" for (k,), v in sorted(kinds.items()) if v)
    queries = Check(
        "queries",
        True,
        f"{total / window_s:.1f}/s" if total else "idle",
        f"p50 {_ms(p50)}, p99 {_ms(p99)}, server errors {errors / window_s:.2f}/s"
        + (f"; {mix}" if mix else "")
        + f" (last {window_s:.0f} s)",
    )
    stage99 = quantile_by(before, after, STAGES, 0.99, ("stage",))
    stages = Check(
        "stages",
        True,
        "p99",
        ", ".join(
            f"{s} {_ms(stage99[(s,)])}" for s in ("encode", "fuse", "search") if (s,) in stage99
        )
        or "no query in the window",
    )
    sizes = grouped(before, after, "ray_vitrine_batch_items_total", ("model",))
    counts = grouped(before, after, "ray_vitrine_batch_size_count", ("model",))
    batches = Check(
        "batches",
        True,
        "mean size",
        ", ".join(f"{m} {sizes[(m,)] / n:.1f}" for (m,), n in sorted(counts.items()) if n)
        or "no batch in the window",
    )
    return [queries, stages, batches]


def ingest_check(before: Samples, after: Samples, window_s: float) -> Check:
    outcomes = grouped(before, after, "vitrine_ingest_records_total", ("outcome",))
    total = sum(outcomes.values())
    detail = ", ".join(f"{o} {v / window_s:.1f}/s" for (o,), v in sorted(outcomes.items()) if v)
    return Check("ingest rate", True, f"{total / window_s:.1f}/s", detail or "no event")


def check_traffic(
    ray_metrics: str, worker_metrics: str, *, window_s: float, timeout_s: float
) -> list[Check]:
    """Two scrapes `window_s` apart of the replicas' metrics (and the worker's, when given)."""
    urls = {"replicas": ray_metrics, "worker": worker_metrics}
    first: dict[str, Samples] = {}
    checks: list[Check] = []
    for what, url in urls.items():
        if not url:
            continue
        try:
            first[what] = scrape(url, timeout_s=timeout_s)
        except OSError as e:
            checks.append(Check(f"{what} metrics", False, "DOWN", f"{url}: {e}"))
    started = time.monotonic()
    time.sleep(window_s)
    for what, before in first.items():
        try:
            after = scrape(urls[what], timeout_s=timeout_s)
        except OSError as e:
            checks.append(Check(f"{what} metrics", False, "DOWN", f"{urls[what]}: {e}"))
            continue
        elapsed = time.monotonic() - started
        if what == "replicas":
            checks += query_checks(before, after, elapsed)
        else:
            checks.append(ingest_check(before, after, elapsed))
    return checks
