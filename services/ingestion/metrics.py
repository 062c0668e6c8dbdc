"""The ingestion worker's Prometheus metrics and the HTTP endpoint that serves them."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class IngestMetrics:
    """The worker's Prometheus metrics, in a registry of its own (several workers may share a
    process in tests). Rates come from the counters: `rate(vitrine_ingest_records_total[1m])`."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.records = Counter(
            "vitrine_ingest_records",
            "Catalog events handled, by outcome (upserted, deleted, dead_lettered, stale: "
            "skipped because the store holds a newer version, transient: dead-lettered after "
            "a failure that may pass).",
            ["outcome"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "vitrine_ingest_batch_seconds",
            "Time from a batch's poll to its commit.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.retries = Counter(
            "vitrine_ingest_retries",
            "Calls retried while the encoder or the store was unavailable, by gRPC status.",
            ["code"],
            registry=r,
        )
        self.lag = Gauge(
            "vitrine_ingest_consumer_lag",
            "Records between the committed position and the end of each assigned partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.assigned = Gauge(
            "vitrine_ingest_assigned_partitions", "Partitions assigned to this worker.", registry=r
        )
        self.last_commit = Gauge(
            "vitrine_ingest_last_commit_timestamp_seconds",
            "Unix time of the last offset commit.",
            registry=r,
        )
        for outcome in ("upserted", "deleted", "dead_lettered", "stale", "transient"):
            self.records.labels(outcome)  # exported as 0 before the first event

    def serve(self, port: int, *, address: str = "127.0.0.1") -> int:
        """Serves /metrics on `address`:`port` (0: a free one) in a daemon thread; returns the
        port."""
        from prometheus_client import start_http_server

        server, _ = start_http_server(port, addr=address, registry=self.registry)
        return server.server_port
