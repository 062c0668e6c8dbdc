"""`vitrine status`: is the platform up, how big is the catalog, how far behind is ingestion."""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass


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
            reply = health_pb2_grpc.HealthStub(channel).Check(
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
    from services.cli.serve_commands import connect_ray

    try:
        connect_ray(logging_level="ERROR")
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


def check_ingestion(bootstrap: str, group: str, topic: str, dlq_topic: str, *, timeout_s: float):
    """The broker, the group's lag on the catalog topic, and the dead letters."""
    from kafka.errors import KafkaError

    from shared.streaming.events import group_lag

    if not any(_accepts(server, timeout_s) for server in bootstrap.split(",")):
        # kafka-python would retry its bootstrap for half a minute before saying so.
        return [Check("broker", False, "DOWN", f"{bootstrap}: connection refused")]
    try:
        lag = group_lag(bootstrap, group, topic, timeout_s=timeout_s)
        dead = group_lag(bootstrap, group, dlq_topic, timeout_s=timeout_s)
    except (KafkaError, OSError) as e:
        return [Check("broker", False, "DOWN", f"{bootstrap}: {type(e).__name__}: {e}")]
    checks = [Check("broker", True, "UP", bootstrap)]
    if not lag.exists:
        checks.append(Check("ingestion", True, "NO TOPIC", f"{topic} does not exist yet"))
    else:
        checks.append(
            Check(
                "ingestion",
                True,
                f"lag {lag.lag}",
                f"group {group}: {lag.committed} of {lag.end} events committed on "
                f"{lag.partitions} partitions of {topic}",
            )
        )
    checks.append(
        Check(
            "dead letters",
            True,
            str(dead.end),
            f"in {dlq_topic}; each record's vitrine-dlq-reason header says why",
        )
    )
    return checks


def _cmd_status(args: argparse.Namespace) -> int:
    from services.gateway.config import GatewaySettings
    from services.ingestion.config import IngestionSettings
    from shared.settings import load_settings_or_exit

    gw = load_settings_or_exit(GatewaySettings)
    ing = load_settings_or_exit(IngestionSettings)
    checks = check_gateway(
        args.gateway or f"127.0.0.1:{gw.grpc_port}",
        (args.http or f"http://127.0.0.1:{gw.http_port}").rstrip("/"),
        timeout_s=args.timeout,
    )
    if not args.no_serve:
        checks += check_serve()
    checks += check_ingestion(
        ing.kafka_bootstrap_servers,
        ing.consumer_group,
        ing.catalog_topic,
        ing.dlq_topic,
        timeout_s=args.timeout,
    )
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        width = max(len(c.component) for c in checks)
        for c in checks:
            mark = "ok " if c.ok else "!! "
            print(f"{mark}{c.component:<{width}}  {c.state:<14} {c.detail}")
    return 0 if all(c.ok for c in checks) else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status",
        help="services up, catalog size, ingestion lag and dead letters (exit 1 if anything is down)",
    )
    p.add_argument("--gateway", help="host:port of the gRPC gateway (default: VITRINE_GRPC_PORT)")
    p.add_argument("--http", help="base URL of the gateway's HTTP API (default: VITRINE_HTTP_PORT)")
    p.add_argument("--no-serve", action="store_true", help="skip the Ray Serve application states")
    p.add_argument("--timeout", type=float, default=5, help="seconds per check")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_status)
