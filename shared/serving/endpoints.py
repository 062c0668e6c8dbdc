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


def _controller():
    import ray

    return ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)


def _grpc_addresses(groups, app_name: str) -> list[str]:
    out = []
    for group in groups:
        protocol = str(getattr(group.protocol, "value", group.protocol)).upper()
        if protocol == "GRPC" and group.app_name in ("", app_name):
            out.extend(f"{t.ip}:{t.port}" for t in group.targets)
    return sorted(set(out))


async def grpc_targets(app_name: str) -> list[str]:
    """host:port of every gRPC target of an application (from inside the Ray cluster)."""
    return _grpc_addresses(await _controller().get_target_groups.remote(app_name), app_name)


def grpc_targets_sync(app_name: str) -> list[str]:
    import ray

    return _grpc_addresses(ray.get(_controller().get_target_groups.remote(app_name)), app_name)


async def release_handles() -> None:
    """Shuts down the Serve handles cached by this process, on the running loop.

    With RAY_SERVE_THROUGHPUT_OPTIMIZED a driver's handles route on the loop that created them;
    a script that used them inside `asyncio.run` must release them before that loop closes, or
    a later `serve.shutdown()` fails on the closed loop.
    """
    from ray.serve.context import _get_global_client

    await _get_global_client().shutdown_cached_handles_async()
