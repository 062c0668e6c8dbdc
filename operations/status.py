"""Health of a running platform: the gateway answering, the Serve applications, the ingestion
worker (alive, stalled or dead from its metrics and its consumer group)."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.streaming.events import GroupLag


@dataclass(frozen=True)
class Check:
    component: str
    ok: bool
    state: str
    detail: str = ""


def check_gateway(grpc_address: str, http_url: str, *, timeout_s: float) -> list[Check]:
    """The gateway's gRPC health, then the model and catalog it serves (GET /v1/info)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    checks = []
    with grpc.insecure_channel(grpc_address) as channel:
        try:
            # types-grpcio-health-checking's HealthStub omits the methods its __init__ sets.
            reply = health_pb2_grpc.HealthStub(channel).Check(  # type: ignore[attr-defined]
                health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
            )
            state = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            checks.append(Check("gateway", state == "SERVING", state, f"gRPC {grpc_address}"))
        except grpc.RpcError as e:
            checks.append(Check("gateway", False, "DOWN", f"gRPC {grpc_address}: {e.code().name}"))
            return checks
    try:
        with urllib.request.urlopen(f"{http_url}/v1/info", timeout=timeout_s) as response:
            info = json.load(response)
    except (OSError, ValueError) as e:
        reason = e.read().decode(errors="replace") if isinstance(e, urllib.error.HTTPError) else e
        checks.append(Check("catalog", False, "UNKNOWN", f"{http_url}/v1/info: {reason}"))
        return checks
    catalog = info["catalog"]
    checks.append(
        Check(
            "catalog",
            True,
            f"{catalog['points']} products",
            f"collection {catalog['collection']} ({catalog['dimension']}-d), model "
            f"{info['model_version']}, search page {http_url}/",
        )
    )
    return checks


def check_serve() -> list[Check]:
    """Each Serve application's state, when a Ray cluster is reachable from here."""
    from operations.serve import connect_ray

    try:
        connect_ray(logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError) as e:
        return [Check("serve", False, "NO CLUSTER", str(e).splitlines()[0])]
    from ray import serve

    try:
        apps = serve.status().applications
    except Exception as e:  # Serve not started on this cluster
        return [Check("serve", False, "NOT STARTED", f"{type(e).__name__}: {e}")]
    checks = []
    for name, app in sorted(apps.items()):
        state = str(getattr(app.status, "value", app.status))
        replicas = sum(
            sum(d.replica_states.values()) if d.replica_states else 0
            for d in app.deployments.values()
        )
        detail = f"{replicas} replica(s)" + (f"; {app.message}" if app.message else "")
        checks.append(Check(f"serve {name}", state == "RUNNING", state, detail))
    return checks or [Check("serve", False, "NO APPLICATIONS", "run `vitrine serve up`")]


def _accepts(server: str, timeout_s: float) -> bool:
    import socket

    host, _, port = server.strip().rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


# A worker commits after each batch: 256 events, about 30 s at the 8 images/s of the Myntra
# run (README); an encoder outage is retried for as long as it lasts, with nothing committed.
STALL_AFTER_S = 120.0


@dataclass(frozen=True)
class WorkerMetrics:
    """What one worker's /metrics said (services/ingestion/app.py, IngestMetrics)."""

    last_commit: float  # unix time of its last commit; 0: none yet
    started: float  # unix time its metrics were created, at its start; 0: not exported


@dataclass(frozen=True)
class IngestionView:
    """What `vitrine status` saw of ingestion: the group on the broker, one worker's metrics.

    Attributes:
        lag: the group's committed offsets against the topic's ends.
        members: members of the consumer group; None when the broker did not say.
        metrics: the worker's metrics; None when not asked for or not answering.
        metrics_error: why the worker's metrics endpoint did not answer ("" if it did, or was
            not asked).
    """

    lag: GroupLag
    members: int | None = None
    metrics: WorkerMetrics | None = None
    metrics_error: str = ""


def classify_ingestion(
    view: IngestionView, *, group: str, topic: str, now: float, stall_after_s: float
) -> Check:
    """DEAD when no worker is there (no group member, or its metrics do not answer), STALLED
    when events wait and nothing was committed for `stall_after_s`; an idle worker (lag 0) is
    healthy however old its last commit."""
    lag = view.lag
    progress = f"group {group}: {lag.committed} of {lag.end} events committed"
    if view.metrics_error:
        return Check("ingestion", False, "DEAD", f"worker {view.metrics_error}; {progress}")
    if view.members == 0:
        return Check("ingestion", False, "DEAD", f"no member in group {group}; lag {lag.lag}")
    if not lag.exists:
        return Check("ingestion", True, "NO TOPIC", f"{topic} does not exist yet")
    detail = f"{progress} on {lag.partitions} partitions of {topic}"
    metrics = view.metrics
    if lag.lag > 0 and metrics is not None:
        since = max(metrics.last_commit, metrics.started)
        if since and now - since > stall_after_s:
            what = "last commit" if metrics.last_commit else "no commit since the worker started"
            return Check(
                "ingestion",
                False,
                "STALLED",
                f"lag {lag.lag}, {what} {now - since:.0f} s ago; {detail}",
            )
    return Check("ingestion", True, f"lag {lag.lag}", detail)


def scrape_worker(url: str, *, timeout_s: float) -> WorkerMetrics:
    """The worker's commit time and start time from its Prometheus text.

    Raises:
        OSError: the endpoint did not answer.
        ValueError: it answered something else than the worker's metrics.
    """
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        text = response.read().decode()
    values = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    if "vitrine_ingest_last_commit_timestamp_seconds" not in values:
        raise ValueError(f"{url} has no vitrine_ingest_* metrics")
    return WorkerMetrics(
        last_commit=values["vitrine_ingest_last_commit_timestamp_seconds"],
        # prometheus_client exports each histogram's creation time; the worker creates its
        # metrics as it starts (unless PROMETHEUS_DISABLE_CREATED_SERIES is set).
        started=values.get("vitrine_ingest_batch_seconds_created", 0.0),
    )


def group_members(bootstrap: str, group: str, *, timeout_s: float) -> int | None:
    """Members of the consumer group now; None when the broker does not say."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000) + 1000
    )
    # kafka-python 3.0.12 always asks for the group's authorized operations and fails on Tansu
    # 0.6's answer ("15 is not a valid ACLOperation"); the members are all this needs. (A private
    # method, so its stubs do not declare it.)
    admin._process_acl_operations = lambda described: described  # type: ignore[attr-defined]
    try:
        described = admin.describe_groups([group]).get(group) or {}
    except (KafkaError, ValueError):
        return None
    finally:
        admin.close()
    if described.get("error"):
        return None
    return len(described.get("members") or [])


def check_ingestion(
    bootstrap: str,
    group: str,
    topic: str,
    dlq_topic: str,
    *,
    timeout_s: float,
    worker_metrics: str = "",
    stall_after_s: float = STALL_AFTER_S,
) -> list[Check]:
    """The broker, the workers (group members, one worker's metrics, the group's lag on the
    catalog topic), and the dead letters.

    Args:
        worker_metrics: URL of a worker's /metrics ("": not asked).
    """
    from kafka.errors import KafkaError

    from shared.streaming.events import group_lag

    if not any(_accepts(server, timeout_s) for server in bootstrap.split(",")):
        # kafka-python would retry its bootstrap for half a minute before saying so.
        return [Check("broker", False, "DOWN", f"{bootstrap}: connection refused")]
    try:
        lag = group_lag(bootstrap, group, topic, timeout_s=timeout_s)
        dead = group_lag(bootstrap, group, dlq_topic, timeout_s=timeout_s)
        members = group_members(bootstrap, group, timeout_s=timeout_s)
    except (KafkaError, OSError) as e:
        return [Check("broker", False, "DOWN", f"{bootstrap}: {type(e).__name__}: {e}")]
    metrics, error = None, ""
    if worker_metrics:
        try:
            metrics = scrape_worker(worker_metrics, timeout_s=timeout_s)
        except (OSError, ValueError) as e:
            error = f"metrics {worker_metrics} not answering: {getattr(e, 'reason', e)}"
    view = IngestionView(lag, members, metrics, error)
    now = time.time()
    return [
        Check("broker", True, "UP", bootstrap),
        classify_ingestion(view, group=group, topic=topic, now=now, stall_after_s=stall_after_s),
        Check(
            "dead letters",
            True,
            str(dead.end),
            f"in {dlq_topic}; each record's vitrine-dlq-reason header says why",
        ),
    ]
