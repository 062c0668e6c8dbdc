"""`vitrine serve up|status` and `vitrine index`: deploy the Serve config, index a catalog
(through handles, without Kafka; `vitrine publish` is the streaming path)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path

import yaml
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = ROOT / "deploy" / "serve" / "vitrine.yaml"
# Where `make run` writes the internal token (scripts/run.sh): the CLI's default, so a command in
# another terminal finds it as it finds Ray's token.
MAKE_RUN_TOKEN = ROOT / "artifacts" / "secrets" / "internal_token"
BUNDLE_APPS = frozenset({"image-encoder", "text-encoder", "fusion", "vector-store"})


def load_config(
    path: Path = DEFAULT_CONFIG,
    *,
    common_args: dict | None = None,
    http_port: int | None = None,
    http_host: str | None = None,
    proxy_grpc_port: int | None = None,
    gateway_grpc_port: int | None = None,
) -> dict:
    """The Serve config with `common_args` (e.g. bundle_path) merged into the args of every
    application that loads the model bundle, and ports set."""
    config = yaml.safe_load(Path(path).read_text())
    for app in config["applications"]:
        common = common_args if app["name"] in BUNDLE_APPS else None
        app["args"] = {**(common or {}), **(app.get("args") or {})}
        if gateway_grpc_port is not None and app["name"] == "gateway":
            app["args"]["grpc_port"] = gateway_grpc_port
    if http_port is not None:
        config["http_options"]["port"] = http_port
    if http_host is not None:  # also where each direct-ingress replica's HTTP server binds
        config["http_options"]["host"] = http_host
    if proxy_grpc_port is not None:
        config["grpc_options"]["port"] = proxy_grpc_port
    return config


def deploy(config: dict, *, timeout_s: float = 600, progress: bool = True) -> None:
    """Deploys every application of a Serve config on the connected Ray cluster; waits until all
    run.

    Raises:
        RuntimeError: an application failed to deploy (with Serve's message), or timed out.
    """
    from ray import serve
    from ray.serve._private import api as serve_api
    from ray.serve.config import gRPCOptions
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(config)
    client = serve_api.serve_start(
        http_options=schema.http_options.model_dump(),
        proxy_location=schema.proxy_location,
        grpc_options=gRPCOptions(**schema.grpc_options.model_dump()),
    )
    client.deploy_apps(schema, _blocking=False)
    names = [a.name for a in schema.applications]
    deadline = time.monotonic() + timeout_s
    bar = tqdm(total=len(names), desc="deploying", unit="app", disable=not progress)
    while True:
        apps = serve.status().applications
        states = {
            n: str(getattr(apps[n].status, "value", apps[n].status)) if n in apps else "NOT_STARTED"
            for n in names
        }
        bar.n = sum(s == "RUNNING" for s in states.values())
        bar.set_postfix_str(", ".join(f"{n}={s}" for n, s in states.items() if s != "RUNNING"))
        bar.refresh()
        failed = {n: apps[n].message for n, s in states.items() if s == "DEPLOY_FAILED"}
        if failed:
            bar.close()
            raise RuntimeError(f"deployment failed: {failed}")
        if all(s == "RUNNING" for s in states.values()):
            bar.close()
            return
        if time.monotonic() > deadline:
            bar.close()
            raise RuntimeError(f"applications not running after {timeout_s:.0f} s: {states}")
        time.sleep(1)


def index_catalog(
    products_path: Path, *, batch_size: int = 32, thumbnail_px: int = 128, progress: bool = True
) -> int:
    """Embeds a products.jsonl catalog with the running image encoder and writes it to the
    running vector store (through Serve handles), with the payload the ingestion worker writes.
    Returns the number of products indexed."""
    return asyncio.run(
        _index(products_path, batch_size=batch_size, thumbnail_px=thumbnail_px, progress=progress)
    )


async def _index(products_path: Path, *, batch_size: int, thumbnail_px: int, progress: bool) -> int:
    # Handles are awaited inside an event loop: with RAY_SERVE_THROUGHPUT_OPTIMIZED their router
    # runs on the caller's loop, and blocking `.result()` is not available.
    from ray import serve

    from shared.data.catalog import load_products
    from shared.models.transforms import thumbnail_data_uri
    from shared.serving.endpoints import release_handles
    from shared.vectorstore import Point, product_payload

    encoder = serve.get_deployment_handle("ImageEncoder", "image-encoder")
    store = serve.get_deployment_handle("VectorStore", "vector-store")
    products = load_products(products_path)
    try:
        for start in tqdm(
            range(0, len(products), batch_size), desc="indexing", unit="batch", disable=not progress
        ):
            chunk = products[start : start + batch_size]
            images = [p.image.read_bytes() for p in chunk]
            embeddings = await encoder.embed.remote(images)
            points = [
                Point(
                    p.id,
                    v,
                    product_payload(
                        p.title,
                        p.attributes,
                        image_uri=p.image.resolve().as_uri(),
                        thumbnail=thumbnail_data_uri(data, px=thumbnail_px) if thumbnail_px else "",
                    ),
                )
                for p, data, v in zip(chunk, images, embeddings.vectors, strict=True)
            ]
            await store.upsert.remote(points)
    finally:
        await release_handles()
    return len(products)


def enable_ray_token_auth(environ) -> None:
    """Prepares the environment to join a `make run` head: loopback, and Ray's token
    authentication. Turns token authentication on for this process when a token is at hand and
    RAY_AUTH_MODE is unset: Ray itself does so only for `address="auto"`, not for the explicit
    RAY_ADDRESS `make run` sets, and a cluster with token auth refuses a driver without it."""
    address = environ.get("RAY_ADDRESS", "auto")
    if address == "auto":  # the latest cluster started with this RAY_TMPDIR
        current = Path(environ.get("RAY_TMPDIR", "/tmp/ray")) / "ray_current_cluster"
        address = current.read_text().strip() if current.is_file() else ""
    if address.startswith(("127.0.0.1:", "localhost:")):
        # A head bound to loopback (`make run`): else Ray rewrites the address to the machine's
        # (ray._private.services.get_node_ip_address) and never reaches it. Read when Ray is
        # imported, so it must be set before.
        environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if "RAY_AUTH_MODE" in environ:
        return
    default = Path.home() / ".ray" / "auth_token"  # where `make run` and Ray keep the token
    if environ.get("RAY_AUTH_TOKEN") or environ.get("RAY_AUTH_TOKEN_PATH") or default.is_file():
        environ["RAY_AUTH_MODE"] = "token"


def connect_ray(logging_level: str = "WARNING") -> None:
    """Joins the running cluster as a driver.

    Raises:
        ConnectionError: no cluster is running.
    """
    enable_ray_token_auth(os.environ)  # before Ray is imported: it reads the environment then
    import ray

    # RAY_ADDRESS (set by `make run`) names the cluster; "auto" finds the latest one started.
    ray.init(
        address=os.environ.get("RAY_ADDRESS", "auto"),
        logging_level=logging_level,
        log_to_driver=False,
    )


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
            if app["name"] == "vector-store":
                app["args"]["store_location"] = args.store
    deploy(config, timeout_s=args.timeout)
    print("all applications RUNNING")
    return 0


def internal_token():
    """The internal token of this process's settings (VITRINE_INTERNAL_TOKEN[_FILE]).

    Raises:
        SettingsError: a bad setting, or none.
    """
    from shared.serving.security import caller_internal_token
    from shared.settings import InternalCallSettings, SettingsError, load_settings

    settings = load_settings(InternalCallSettings)
    if not (settings.internal_token or settings.internal_token_file) and MAKE_RUN_TOKEN.is_file():
        settings = load_settings(InternalCallSettings, internal_token_file=str(MAKE_RUN_TOKEN))
    try:
        return caller_internal_token(settings, caller="the CLI")
    except ValueError as e:
        raise SettingsError(str(e)) from None


def replica_infos(app_name: str, *, token=None, timeout_s: float = 5.0) -> list[tuple[str, object]]:
    """(target, ReplicaInfo or the error) for every published gRPC target of an application:
    each replica under Serve's direct ingress, else each proxy (which picks a replica).

    Args:
        token: the InternalToken the call carries; None: this process's (internal_token()).
    """
    import grpc

    from shared.api.vitrine.replica.v1 import replica_pb2_grpc
    from shared.conversions import replica as conv
    from shared.serving.endpoints import grpc_targets_sync

    metadata = (token or internal_token()).metadata(app_name)
    found: list[tuple[str, object]] = []
    for target in grpc_targets_sync(app_name):
        with grpc.insecure_channel(target) as channel:
            stub = replica_pb2_grpc.ReplicaServiceStub(channel)
            try:
                reply = stub.GetReplicaInfo(
                    conv.info_request_to_proto(),
                    timeout=timeout_s,
                    metadata=metadata,
                )
                found.append((target, conv.info_from_proto(reply)))
            except grpc.RpcError as e:
                found.append((target, f"{e.code().name}: {e.details()}"))
    return found


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

    from ray import serve

    from shared.settings import SettingsError

    try:
        token = internal_token()
    except SettingsError as e:
        print(f"vitrine serve status: {e}", file=sys.stderr)
        return 2
    connect_ray()
    report = {}
    for name, app in serve.status().applications.items():
        status = str(getattr(app.status, "value", app.status))
        replicas = [] if name == "gateway" else replica_infos(name, token=token)
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
    connect_ray()
    n = index_catalog(Path(args.catalog), batch_size=args.batch_size)
    # The handles' long-poll client logs an ERROR once their event loop has closed; the work is
    # done and the process is about to exit.
    logging.getLogger("ray.serve").setLevel(logging.CRITICAL)
    print(f"indexed {n} products")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    serve_p = sub.add_parser("serve", help="deploy or inspect the Serve applications")
    serve_sub = serve_p.add_subparsers(dest="serve_command", required=True, metavar="ACTION")
    p = serve_sub.add_parser("up", help="deploy every application of a Serve config; wait")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="Serve config YAML")
    p.add_argument("--bundle", help="model bundle directory (default: VITRINE_BUNDLE_PATH)")
    p.add_argument("--store", help="vector store location (default: VITRINE_STORE_LOCATION)")
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
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(func=_cmd_index)
