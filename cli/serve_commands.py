"""`vitrine serve up|status` and `vitrine index`: argument parsing over operations.serve and
operations.indexing."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from operations.indexing import IndexingError, index_catalog, proxy_address
from operations.serve import (
    DEFAULT_CONFIG,
    connect_ray,
    deploy,
    internal_token,
    load_config,
    replica_infos,
)
from shared.serving.apps import GATEWAY, VECTOR_STORE


def _cmd_up(args: argparse.Namespace) -> int:
    connect_ray()
    common = {}
    if args.bundle:
        common["bundle_path"] = str(Path(args.bundle).resolve())
    config = load_config(
        Path(args.config),
        common_args=common,
        http_port=args.proxy_http_port,
        http_host=args.proxy_http_host,
        proxy_grpc_port=args.proxy_grpc_port,
    )
    if args.store:
        for app in config["applications"]:
            if app["name"] == VECTOR_STORE:
                app["args"]["store_location"] = args.store
    deploy(config, timeout_s=args.timeout)
    print("all applications RUNNING")
    return 0


def _replica_line(target: str, info) -> str:
    if isinstance(info, str):
        return f"    {target:<21} {info}"
    line = (
        f"    {target:<21} replica {info.replica_id or '?':<10} {info.runtime}, "
        f"{info.threads} thread(s), {info.cpu_budget:g} CPU"
    )
    b = info.batching
    if b is not None:
        line += (
            f"; batching max {b.max_batch_size}, wait {b.batch_wait_timeout_s * 1000:g} ms; "
            f"{b.batches} batches, mean size {b.mean_batch_size:.1f}, queue wait "
            f"{b.mean_queue_wait_ms:.1f} ms, compute {b.mean_compute_ms:.1f} ms"
        )
    return line


def _cmd_status(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from shared.settings import SettingsError

    try:
        token = internal_token()
    except SettingsError as e:
        print(f"vitrine serve status: {e}", file=sys.stderr)
        return 2
    connect_ray()  # before Ray is imported
    from ray import serve

    report = {}
    for name, app in serve.status().applications.items():
        status = str(getattr(app.status, "value", app.status))
        replicas = [] if name == GATEWAY else replica_infos(name, token=token)
        report[name] = {
            "status": status,
            "message": app.message,
            "replicas": [
                {"target": t, **(asdict(i) if not isinstance(i, str) else {"error": i})}
                for t, i in replicas
            ],
        }
        if not args.json:
            print(f"{name:<16} {status:<10} {app.message}")
            for target, info in replicas:
                print(_replica_line(target, info))
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


def _cmd_index(args: argparse.Namespace) -> int:
    from shared.settings import SettingsError

    if args.address is None:
        connect_ray()  # to ask Serve where its gRPC proxy listens
    address = args.address or proxy_address()
    try:
        n = index_catalog(
            Path(args.catalog), address=address, batch_size=args.batch_size, catalog=args.into
        )
    except SettingsError as e:
        print(f"vitrine index: {e}", file=sys.stderr)
        return 2
    except IndexingError as e:
        print(f"vitrine index: {e}", file=sys.stderr)
        return 1
    print(f"indexed {n} products")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    serve_p = sub.add_parser("serve", help="deploy or inspect the Serve applications")
    serve_sub = serve_p.add_subparsers(dest="serve_command", required=True, metavar="ACTION")
    p = serve_sub.add_parser("up", help="deploy every application of a Serve config; wait")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="Serve config YAML")
    p.add_argument("--bundle", help="model bundle directory (default: VITRINE_BUNDLE_PATH)")
    p.add_argument(
        "--store", help="vector store location (default: VITRINE_VECTOR_STORE_STORE_LOCATION)"
    )
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait")
    p.add_argument(
        "--proxy-grpc-port", type=int, help="port of Serve's gRPC proxies (default: the config's)"
    )
    p.add_argument(
        "--proxy-http-port", type=int, help="port of Serve's HTTP proxies (default: the config's)"
    )
    p.add_argument(
        "--proxy-http-host",
        help="address Serve's HTTP servers bind (default: the config's; `make run`: 127.0.0.1); "
        "Serve's gRPC servers have no such option and bind every interface",
    )
    p.set_defaults(func=_cmd_up)
    p = serve_sub.add_parser(
        "status",
        help="each application's state, and what every replica runs with (runtime, threads, "
        "batching in force, batches formed)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_status)
    p = sub.add_parser("index", help="embed a products.jsonl catalog into the running store")
    p.add_argument("catalog", help="products.jsonl (id, image, title, attributes)")
    p.add_argument("--batch-size", type=int, default=32, help="images per encoder call")
    p.add_argument(
        "--into",
        default="",
        metavar="CATALOG",
        help="the catalog (tenant) to index into (default: the default catalog)",
    )
    p.add_argument(
        "--address",
        help="host:port of Serve's gRPC proxy (default: 127.0.0.1 and the port the running "
        "Serve's proxy listens on, asked of the Ray cluster)",
    )
    p.set_defaults(func=_cmd_index)
