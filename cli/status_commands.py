"""`vitrine status`: is the platform up, how big is the catalog, how far behind is ingestion."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict

from operations.ports import RAY_METRICS_PORT
from operations.status import STALL_AFTER_S, check_gateway, check_ingestion, check_serve
from operations.traffic import check_traffic


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
    metrics_url = args.worker_metrics
    if metrics_url is None:
        metrics_url = f"http://127.0.0.1:{ing.metrics_port}/metrics" if ing.metrics_port else ""
    port = os.environ.get("VITRINE_RAY_METRICS_PORT", str(RAY_METRICS_PORT))  # scripts/run.sh
    ray_metrics = args.ray_metrics or f"http://127.0.0.1:{port}/metrics"
    if args.window > 0:
        checks += check_traffic(
            "" if ray_metrics == "none" else ray_metrics,
            "" if metrics_url == "none" else metrics_url,
            window_s=args.window,
            timeout_s=args.timeout,
        )
    checks += check_ingestion(
        ing.kafka_bootstrap_servers,
        ing.consumer_group,
        ing.catalog_topic,
        ing.dlq_topic,
        timeout_s=args.timeout,
        worker_metrics="" if metrics_url == "none" else metrics_url,
        stall_after_s=args.stall_after,
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
        help="services up, catalog size, live query rate, errors and p50/p99, batch sizes, "
        "ingestion rate, workers and lag, dead letters (exit 1 if anything is down, dead or "
        "stalled)",
    )
    p.add_argument(
        "--gateway", help="host:port of the gRPC gateway (default: VITRINE_GATEWAY_GRPC_PORT)"
    )
    p.add_argument(
        "--http", help="base URL of the gateway's HTTP API (default: VITRINE_GATEWAY_HTTP_PORT)"
    )
    p.add_argument("--no-serve", action="store_true", help="skip the Ray Serve application states")
    p.add_argument(
        "--worker-metrics",
        metavar="URL",
        help="an ingestion worker's /metrics (default: 127.0.0.1 on "
        "VITRINE_INGESTION_METRICS_PORT, as `make run` starts it); `none` when no worker is "
        "reachable from here (Kubernetes)",
    )
    p.add_argument(
        "--stall-after",
        type=float,
        default=STALL_AFTER_S,
        metavar="SECONDS",
        help="ingestion is STALLED when events wait and nothing was committed for this long",
    )
    p.add_argument(
        "--ray-metrics",
        metavar="URL",
        help="the Ray metrics agent's /metrics, every Serve replica's metrics (default: "
        "127.0.0.1 on VITRINE_RAY_METRICS_PORT, as `make run` starts Ray); `none` to skip",
    )
    p.add_argument(
        "--window",
        type=float,
        default=5,
        metavar="SECONDS",
        help="rates and percentiles over this long (two scrapes); 0 skips them",
    )
    p.add_argument("--timeout", type=float, default=5, help="seconds per check")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_status)
