"""Where a Serve application answers gRPC: its direct-ingress replica ports, or the proxies.

With `RAY_SERVE_THROUGHPUT_OPTIMIZED=1` (which turns on Serve's direct ingress) every ingress
replica serves its gRPC servicers on a port of its own; without it the Serve proxies do. Either
way the Serve controller publishes the list as `TargetGroup`s (ray.serve.schema, the list
Serve's HAProxy integration reads), so a caller dialling these targets skips no Serve machinery:
the replica still counts the request for back-pressure and autoscaling.
"""

from __future__ import annotations

SERVE_CONTROLLER_NAME = "SERVE_CONTROLLER_ACTOR"
SERVE_NAMESPACE = "serve"

# The largest internal gRPC message, either way, for every internal caller and for Serve's gRPC
# servers (RAY_SERVE_GRPC_MAX_MESSAGE_SIZE, whose default is 2 GiB - 1: any caller could make a
# replica buffer that much). 64 MiB is what the ingestion worker already sends at most (its
# channels' limit since it was written), 6 encoder calls of 8 images at the 10 MiB image limit,
# and 8x the gateway's largest request (VITRINE_GATEWAY_MAX_REQUEST_BYTES, 8 MiB). The largest
# replies are far smaller: a batch search of 64 queries x top_k 100 with a 5 KB thumbnail each
# is 32 MB.
INTERNAL_MAX_MESSAGE_BYTES = 64 * 2**20


def _controller():
    import ray

    return ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)


def _direct_ingress() -> bool:
    from ray.serve._private import constants

    return bool(constants.RAY_SERVE_ENABLE_DIRECT_INGRESS)


def _grpc_addresses(groups, app_name: str, *, direct_ingress: bool | None = None) -> list[str]:
    """The application's own replica targets under direct ingress, else the shared proxies'.

    Under direct ingress the proxies are never used, even while the application has no
    replica (one just died): a proxy would queue the call until a replica starts, so a caller
    would wait out its deadline instead of hearing UNAVAILABLE at once.
    """
    own, proxies = [], []
    for group in groups:
        protocol = str(getattr(group.protocol, "value", group.protocol)).upper()
        if protocol != "GRPC":
            continue
        targets = [f"{t.ip}:{t.port}" for t in group.targets]
        if group.app_name == app_name:
            own.extend(targets)
        elif group.app_name == "":
            proxies.extend(targets)
    direct = _direct_ingress() if direct_ingress is None else direct_ingress
    return sorted(set(own if direct or own else proxies))


async def grpc_targets(app_name: str) -> list[str]:
    """host:port of every gRPC target of an application (from inside the Ray cluster)."""
    return _grpc_addresses(await _controller().get_target_groups.remote(app_name), app_name)


def grpc_targets_sync(app_name: str) -> list[str]:
    import ray

    return _grpc_addresses(ray.get(_controller().get_target_groups.remote(app_name)), app_name)


def grpc_proxy_port_sync() -> int:
    """The port Serve's gRPC proxies listen on, as in force on the connected cluster: the first
    Serve config deployed there chose it, and a later config's `grpc_options` do not move it
    (Serve keeps a running controller's options)."""
    import ray

    return ray.get(_controller().get_grpc_config.remote()).port


async def release_handles() -> None:
    """Shuts down the Serve handles cached by this process, on the running loop.

    With RAY_SERVE_THROUGHPUT_OPTIMIZED a driver's handles route on the loop that created them;
    a script that used them inside `asyncio.run` must release them before that loop closes, or
    a later `serve.shutdown()` fails on the closed loop.
    """
    from ray.serve.context import _get_global_client

    client = _get_global_client()
    # Typed Optional, but returns None only when asked to (raise_if_no_controller_running=False).
    assert client is not None
    await client.shutdown_cached_handles_async()
