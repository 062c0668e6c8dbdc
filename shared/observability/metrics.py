"""The Serve replicas' metrics, through Ray's metrics API (`ray.serve.metrics`).

Each node's Ray metrics agent serves every replica's metrics on one Prometheus endpoint (`ray
start --metrics-export-port`; KubeRay's pods expose it as port 8080), with the replica's
deployment, replica id and application as labels. Ray prefixes each name with `ray_` and a
counter's with `_total`: `vitrine_gateway_requests` is scraped as
`ray_vitrine_gateway_requests_total`. Ray aggregates a histogram's observations into its buckets
and exports `_sum` as if each sat at its bucket's midpoint: the buckets and `_count` are exact,
`_sum` is not, so an exact mean has a counter of its own (`vitrine_batch_items`). `EXPORTED` lists every series this module makes, which
the dashboard and the alert rules are checked against (tests/unit/test_observability_assets.py).

Outside Ray (unit tests, a benchmark's in-process gateway) the metrics are kept in this process
(`LocalMetric`), with the same interface, so tests can read what was recorded.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from typing import Any

# Seconds; the query path's stages run from well under a millisecond to seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

# name -> (kind, description, label names). The one list of the replicas' metrics.
DEFINITIONS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "vitrine_gateway_requests": (
        "counter",
        "Queries answered by the gateway, by API (grpc, grpc_batch, http, http_batch), query "
        "kind (text, image, composed, product, examples, lexical) and status code (OK, "
        "INVALID_ARGUMENT, UNAVAILABLE, ...).",
        ("api", "kind", "code"),
    ),
    "vitrine_gateway_request_seconds": (
        "histogram",
        "Time the gateway spent on a query, from its arrival to its answer, by API and kind.",
        ("api", "kind"),
    ),
    "vitrine_gateway_stage_seconds": (
        "histogram",
        "Time of each stage of an answered query (encode, fuse, search), by query kind.",
        ("stage", "kind"),
    ),
    "vitrine_replica_up": (
        "gauge",
        "1 while a replica runs, set every second: counted by application it is the number of "
        "replicas (a replica that is gone drops out within two report intervals).",
        (),
    ),
    "vitrine_gateway_dependency_up": (
        "gauge",
        "1 when the gateway's last check of a dependency (image-encoder, text-encoder, fusion, "
        "vector-store) got an answer, else 0; set every second.",
        ("dependency",),
    ),
    "vitrine_batch_size": (
        "histogram",
        "Items in each batch a model replica computed (text, image, fusion).",
        ("model",),
    ),
    "vitrine_batch_items": (
        "counter",
        "Items computed by a model replica's batches: its rate over the rate of "
        "vitrine_batch_size_count is the mean batch size (Ray's histogram _sum is approximate).",
        ("model",),
    ),
    "vitrine_batch_queue_wait_seconds": (
        "histogram",
        "Time an item waited in a model replica's queue before its batch started.",
        ("model",),
    ),
    "vitrine_batch_compute_seconds": (
        "histogram",
        "Compute time of each batch of a model replica.",
        ("model",),
    ),
    "vitrine_batch_failures": (
        "counter",
        "Batches whose computation raised (every item of the batch failed).",
        ("model",),
    ),
    "vitrine_store_requests": (
        "counter",
        "Calls the vector store answered, by method and status code.",
        ("method", "code"),
    ),
    "vitrine_store_request_seconds": (
        "histogram",
        "Time the vector store spent on a call, by method.",
        ("method",),
    ),
    "vitrine_store_points": ("gauge", "Points in the served collection.", ()),
    "vitrine_store_indexed_vectors": (
        "gauge",
        "Vectors of the collection in its HNSW index; points minus this is the optimizer's "
        "backlog (searched exactly until indexed).",
        (),
    ),
    "vitrine_store_index_failures": (
        "counter",
        "Background index builds that failed (retried after the next write).",
        (),
    ),
}

# The series Prometheus scrapes of a metric of each kind (prometheus-client names them alike).
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
}


# Counters of failures: Ray exports a counter from its first increment (it refuses inc(0)), so
# these appear once something failed; a rule over them reads `or vector(0)`.
ON_FAILURE = {"vitrine_batch_failures", "vitrine_store_index_failures"}


def exported_names(*, failures: bool = True) -> set[str]:
    """Every series name Prometheus scrapes from the replicas' metrics (without the ON_FAILURE
    counters when `failures` is False)."""
    return {
        f"ray_{name}{suffix}"
        for name, (kind, _, _) in DEFINITIONS.items()
        if failures or name not in ON_FAILURE
        for suffix in SUFFIXES[kind]
    }


class LocalMetric:
    """A metric kept in this process: counter (`inc`), gauge (`set`) or histogram (`observe`,
    counting observations per label set; `values` holds the sums)."""

    def __init__(self, kind: str, boundaries: Sequence[float] = ()) -> None:
        self.kind, self.boundaries = kind, tuple(boundaries)
        self.values: dict[tuple[tuple[str, str], ...], float] = {}
        self.counts: dict[tuple[tuple[str, str], ...], list[int]] = {}
        self._lock = threading.Lock()

    def _key(self, tags: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((tags or {}).items()))

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        with self._lock:
            key = self._key(tags)
            self.values[key] = self.values.get(key, 0.0) + value

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        with self._lock:
            self.values[self._key(tags)] = value

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        with self._lock:
            key = self._key(tags)
            self.values[key] = self.values.get(key, 0.0) + value
            counts = self.counts.setdefault(key, [0] * (len(self.boundaries) + 1))
            counts[bisect.bisect_left(self.boundaries, value)] += 1

    def count(self, **tags: str) -> float:
        """A counter's value, or a histogram's number of observations, with these labels (summed
        over the labels not named)."""
        with self._lock:
            if self.kind == "histogram":
                return float(
                    sum(sum(c) for k, c in self.counts.items() if tags.items() <= dict(k).items())
                )
            return sum(v for k, v in self.values.items() if tags.items() <= dict(k).items())


def local(name: str) -> LocalMetric:
    """The metric `name` of DEFINITIONS kept in this process (what `make` gives outside Ray)."""
    kind = DEFINITIONS[name][0]
    return LocalMetric(kind, _boundaries(name) if kind == "histogram" else ())


def _boundaries(name: str) -> tuple[float, ...]:
    return SIZE_BUCKETS if name == "vitrine_batch_size" else LATENCY_BUCKETS


def make(name: str) -> Any:
    """The metric `name` of DEFINITIONS, for this process: Ray's inside Ray, else a LocalMetric.
    Make it in the replica's constructor (Serve's labels come from the replica's context)."""
    kind, description, labels = DEFINITIONS[name]
    boundaries = _boundaries(name) if kind == "histogram" else ()
    import ray

    if not ray.is_initialized():
        return local(name)
    from ray.serve import metrics

    tag_keys: Any = labels or None  # Ray's stubs say tuple[str]; any tuple of names works
    if kind == "counter":
        return metrics.Counter(name, description=description, tag_keys=tag_keys)
    if kind == "gauge":
        return metrics.Gauge(name, description=description, tag_keys=tag_keys)
    return metrics.Histogram(
        name, description=description, boundaries=list(boundaries), tag_keys=tag_keys
    )


class BatchMetrics:
    """A model replica's batches: sizes formed, queue waits, compute times, failures."""

    def __init__(self, model: str) -> None:
        self._tags = {"model": model}
        self.size = make("vitrine_batch_size")
        self.items = make("vitrine_batch_items")
        self.wait = make("vitrine_batch_queue_wait_seconds")
        self.compute = make("vitrine_batch_compute_seconds")
        self.failures = make("vitrine_batch_failures")

    def record(self, size: int, waits: Sequence[float], compute_s: float, *, failed: bool) -> None:
        tags = self._tags
        self.size.observe(size, tags=tags)
        self.items.inc(size, tags=tags)
        for wait in waits:
            self.wait.observe(wait, tags=tags)
        self.compute.observe(compute_s, tags=tags)
        if failed:
            self.failures.inc(tags=tags)


class RpcMetrics:
    """An internal service's gRPC methods: calls by method and status code, and their time."""

    def __init__(self, requests: str, seconds: str) -> None:
        self.requests, self.seconds = make(requests), make(seconds)

    def record(self, method: str, code: str, seconds: float) -> None:
        self.requests.inc(tags={"method": method, "code": code})
        self.seconds.observe(seconds, tags={"method": method})
