"""Deploying and inspecting the Serve applications on a running Ray cluster (declaratively, as
KubeRay does); joining a `make run` cluster as a driver."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from tqdm.auto import tqdm

from shared.serving.apps import BUNDLE_APPS, GATEWAY

if TYPE_CHECKING:
    from shared.types import ReplicaInfo

ROOT = Path(__file__).resolve().parents[1]


DEFAULT_CONFIG = ROOT / "deploy" / "serve" / "vitrine.yaml"


# Where `make run` writes the internal token (scripts/run.sh): the CLI's default, so a command in
# another terminal finds it as it finds Ray's token.
MAKE_RUN_TOKEN = ROOT / "artifacts" / "secrets" / "internal_token"


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
        if gateway_grpc_port is not None and app["name"] == GATEWAY:
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

    # Serve's private controller client, the one exception to "public Ray APIs only" in this
    # package: Serve deploys a config declaratively only through it (its public form is the
    # dashboard's REST API behind `serve deploy`, and `make run` runs no dashboard on 2 cores).
    # The public `serve.run`/`run_many` give every deployment a random code version, so a
    # redeploy would replace replicas that a declarative deploy reconfigures in place
    # (tests/integration/test_serving.py, batching tuned at run time without a restart); and
    # KubeRay deploys the same config through the same declarative path.
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


LOOPBACK_HEAD_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray keeps a loopback address


def _on_loopback(address: str) -> bool:
    return address.startswith(("127.0.0.1:", "localhost:"))


def enable_ray_token_auth(environ) -> None:
    """Prepares the environment to join a `make run` head: loopback, and Ray's token
    authentication. Turns token authentication on for this process when a token is at hand and
    RAY_AUTH_MODE is unset: Ray itself does so only for `address="auto"`, not for the explicit
    RAY_ADDRESS `make run` sets, and a cluster with token auth refuses a driver without it."""
    if _on_loopback(cluster_address(environ.get("RAY_ADDRESS", "auto"), environ)[0]):
        # A head bound to loopback (`make run`): else Ray rewrites the address to the machine's
        # (ray._private.services.get_node_ip_address) and never reaches it. Read when Ray is
        # imported, so it must be set before.
        environ.setdefault(LOOPBACK_HEAD_ENV, "0")
    if "RAY_AUTH_MODE" in environ:
        return
    default = Path.home() / ".ray" / "auth_token"  # where `make run` and Ray keep the token
    if environ.get("RAY_AUTH_TOKEN") or environ.get("RAY_AUTH_TOKEN_PATH") or default.is_file():
        environ["RAY_AUTH_MODE"] = "token"


RUN_RAY_TMPDIR = "/tmp/vitrine-ray"  # noqa: S108 -- scripts/run.sh's default RAY_TMPDIR


def cluster_files(environ) -> list[Path]:
    """Where `ray start` wrote the address of the last head it started: $RAY_TMPDIR, else
    `make run`'s default temp dir, then Ray's own default (/tmp/ray)."""
    if environ.get("RAY_TMPDIR"):
        return [Path(environ["RAY_TMPDIR"]) / "ray_current_cluster"]
    return [Path(d) / "ray_current_cluster" for d in (RUN_RAY_TMPDIR, "/tmp/ray")]  # noqa: S108


def cluster_address(address: str, environ) -> tuple[str, str]:
    """(host:port of the GCS that `ray.init(address)` will call, where that came from); "" when
    there is none. "auto" is the address the last `ray start` wrote (`cluster_files`)."""
    if address == "local":  # a new cluster of this process: nothing to reach
        return "", "RAY_ADDRESS"
    if address not in ("", "auto"):
        return address.removeprefix("ray://"), "RAY_ADDRESS"
    for path in cluster_files(environ):
        try:
            return path.read_text().strip(), str(path)
        except OSError:
            continue
    return "", " or ".join(str(p) for p in cluster_files(environ))


def refuse_dead_cluster(address: str, environ, *, timeout_s: float = 2.0) -> None:
    """Raises ConnectionError at once when the cluster `address` names does not accept a
    connection: Ray's own client retries a dead GCS for minutes (a stale ray_current_cluster
    left by a cluster that was killed made `vitrine status` hang).

    Raises:
        ConnectionError: nothing listens at the address.
    """
    import socket

    target, source = cluster_address(address, environ)
    if not target:
        if address == "local":
            return
        # Ray would look for a GCS process itself and call it at the machine's address, where a
        # head bound to loopback (`make run`) never answers: it retried for minutes.
        raise ConnectionError(
            f"no Ray cluster found (no address in {source}); start one with `make run`, "
            "or set RAY_ADDRESS (or RAY_TMPDIR to the temp dir of the head)"
        )
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            return
    except (OSError, ValueError):
        raise ConnectionError(
            f"no Ray cluster answers at {target} (from {source}); start one with `make run`, "
            "or set RAY_ADDRESS"
        ) from None


def connect_ray(logging_level: int = logging.WARNING) -> None:
    """Joins the running cluster as a driver.

    Raises:
        ConnectionError: no cluster is running.
    """
    # Ray reads the loopback setting when it is imported: one set after that comes too late.
    imported_without_it = "ray" in sys.modules and LOOPBACK_HEAD_ENV not in os.environ
    enable_ray_token_auth(os.environ)  # before Ray is imported: it reads the environment then
    # RAY_ADDRESS (set by `make run`) names the cluster; "auto" finds the latest one started.
    address = os.environ.get("RAY_ADDRESS", "auto")
    refuse_dead_cluster(address, os.environ)
    target = cluster_address(address, os.environ)[0]
    if imported_without_it and _on_loopback(target):
        # Ray would call the machine's address instead of the loopback head, for minutes.
        raise RuntimeError("connect_ray() must run before `ray` is imported (loopback head)")
    import ray

    ray.init(
        # "auto": the address found, not Ray's own search (refuse_dead_cluster: there is one)
        address=target if address in ("", "auto") else address,
        logging_level=logging_level,
        log_to_driver=False,
    )


def internal_token():
    """The internal token of this process's settings (VITRINE_INTERNAL_TOKEN[_FILE]).

    Raises:
        SettingsError: a bad setting, or none.
    """
    from shared.serving.auth import caller_internal_token
    from shared.settings import InternalCallSettings, load_settings

    settings = load_settings(InternalCallSettings)
    if not (settings.internal_token or settings.internal_token_file) and MAKE_RUN_TOKEN.is_file():
        settings = load_settings(InternalCallSettings, internal_token_file=str(MAKE_RUN_TOKEN))
    return caller_internal_token(settings, caller="the CLI")


def replica_infos(
    app_name: str, *, token=None, timeout_s: float = 5.0
) -> list[tuple[str, ReplicaInfo | str]]:
    """(target, ReplicaInfo or the error) for every published gRPC target of an application:
    each replica under Serve's direct ingress, else each proxy (which picks a replica).

    Args:
        token: the InternalToken the call carries; None: this process's (internal_token()).
    """
    from shared.serving.clients import ReplicaInfoClient, shared_loop
    from shared.serving.endpoints import grpc_targets_sync

    client = ReplicaInfoClient(
        app_name, targets=grpc_targets_sync(app_name), internal_token=token or internal_token()
    )

    async def ask() -> list[tuple[str, ReplicaInfo | Exception]]:
        try:
            return await client.info_each(timeout_s=timeout_s)
        finally:
            await client.close()

    found = shared_loop().run(ask())
    return [(target, str(i) if isinstance(i, Exception) else i) for target, i in found]
