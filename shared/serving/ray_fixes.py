"""A fix to Ray Serve that every Vitrine replica applies in its constructor.

Serve's direct-ingress gRPC server (`ray.serve._private.grpc_util.start_grpc_server`) asks for
SO_REUSEPORT off with the channel option `("grpc.so_reuseport", "0")`: a string, which gRPC
ignores for an integer option, so the socket is bound with SO_REUSEPORT on. Serve's controller
hands out replica ports per node, each node from the same range; two Ray nodes on one host (a
cluster of several nodes on one machine: operations.local_ray.LocalCluster) then give two
replicas the same port, both bind it, and the kernel splits the connections between them: a call
for the text encoder lands at fusion's replica and is answered NOT_FOUND "Application
'text-encoder' not found". With the option an integer, the second bind fails, and Serve's own
retry (release the port blocked, ask for the next) gives that replica a port of its own.

It must run in the replica's process before Serve starts the replica's direct-ingress servers,
which Serve does once the deployment's constructor has returned.
"""

from __future__ import annotations

from typing import Any

REUSEPORT = "grpc.so_reuseport"


def integer_options(options: list[tuple[str, Any]] | None) -> list[tuple[str, Any]]:
    """`options` with a string value of grpc.so_reuseport ("0", "1") made the integer gRPC
    reads."""
    return [
        (key, int(value)) if key == REUSEPORT and isinstance(value, str) else (key, value)
        for key, value in options or []
    ]


def bind_replica_ports_alone() -> None:
    """Makes Serve's gRPC servers in this process take the SO_REUSEPORT option they ask for
    (idempotent; nothing when Serve is not installed)."""
    try:
        from ray.serve._private import grpc_util
    except ImportError:  # pragma: no cover - Serve is a dependency of every replica
        return
    server_class = grpc_util.gRPCGenericServer
    if getattr(server_class, "vitrine_integer_options", False):
        return

    class IntegerOptionServer(server_class):  # type: ignore[misc, valid-type]
        vitrine_integer_options = True

        def __init__(self, *args: Any, extra_options: list | None = None, **kwargs: Any) -> None:
            super().__init__(*args, extra_options=integer_options(extra_options), **kwargs)

    setattr(grpc_util, "gRPCGenericServer", IntegerOptionServer)  # noqa: B010 (a class)
