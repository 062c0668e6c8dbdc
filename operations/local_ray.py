"""The Ray this process starts for itself: the tests' session cluster and the benchmarks' Ray.

`make run` starts its Ray from scripts/run.sh; the tests and the benchmarks start one inside
their own process instead, serving the way `make run` does (Serve's direct ingress, the internal
message limit, an internal token) on replica ports of their own. This module is the one place
that says how.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import MutableMapping

from operations.ports import private_port_ranges
from shared.serving.endpoints import INTERNAL_MAX_MESSAGE_BYTES

SERVE_MESSAGE_SIZE_VARIABLE = "RAY_SERVE_GRPC_MAX_MESSAGE_SIZE"
OBJECT_STORE_BYTES = 128 * 2**20


def prepare_environment(environ: MutableMapping[str, str], *, port_slot: int) -> None:
    """Sets what a local Ray serving like `make run` needs, unless set already.

    Must run before Ray or Serve is imported: Serve reads these at import, and the raylet and
    every replica inherit them from `ray.init`.

    Args:
        environ: the environment to update (os.environ).
        port_slot: 0..99, the block of replica ports this cluster uses (see
            operations.ports.private_port_ranges), so it never answers for another cluster.
    """
    # The serving configuration `make run` uses: Serve's direct ingress and gRPC transport
    # (deploy/serve/vitrine.yaml explains why).
    environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
    # No token authentication: the cluster is this process's own, on loopback.
    environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Throughput-optimised Serve buffers 1000 log records per replica before writing; our
    # replicas log little outside the request path (no access log), so write each at once.
    environ.setdefault("RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE", "1")
    internal_token(environ)
    internal_message_limit(environ)
    private_port_ranges(environ, slot=port_slot)


def internal_token(environ: MutableMapping[str, str]) -> None:
    """Gives this process, its Ray (the replicas) and its subprocesses one internal token, unless
    one is set: the internal services refuse gRPC calls without it."""
    if not environ.get("VITRINE_INTERNAL_TOKEN_FILE"):
        environ.setdefault("VITRINE_INTERNAL_TOKEN", secrets.token_urlsafe(32))


def internal_message_limit(environ: MutableMapping[str, str]) -> None:
    """Caps Serve's gRPC servers (direct-ingress replicas and proxies) at
    INTERNAL_MAX_MESSAGE_BYTES unless set already. Must be set before `ray start`/`ray.init` so
    every replica inherits it (Serve reads it at import)."""
    environ.setdefault(SERVE_MESSAGE_SIZE_VARIABLE, str(INTERNAL_MAX_MESSAGE_BYTES))


def internal_metadata(app_name: str) -> tuple[tuple[str, str], ...]:
    """gRPC metadata of a call to an internal service of this process's Ray: the application and
    the internal token that `prepare_environment` set.

    Raises:
        RuntimeError: no internal token is set.
    """
    from shared.serving.auth import InternalToken

    token = InternalToken.load(
        env_text=os.environ.get("VITRINE_INTERNAL_TOKEN"),
        file=os.environ.get("VITRINE_INTERNAL_TOKEN_FILE"),
    )
    if token is None:
        raise RuntimeError("no internal token: call prepare_environment before Ray starts")
    return token.metadata(app_name)


def start_local_ray(
    *, num_cpus: int = 2, log_to_driver: bool = True, metrics_port: int | None = None
) -> None:
    """Starts a Ray of this process: `num_cpus` CPUs, a 128 MiB object store, no dashboard,
    warnings only; the replicas' metrics on 127.0.0.1:`metrics_port` when given. Call
    `prepare_environment` first."""
    import ray

    ray.init(
        _metrics_export_port=metrics_port,
        num_cpus=num_cpus,
        object_store_memory=OBJECT_STORE_BYTES,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=log_to_driver,
    )


def stop_local_ray() -> None:
    """Shuts Serve down, then Ray."""
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()
