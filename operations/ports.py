"""Ports on this machine: free loopback ports outside Serve's replica ranges, and private replica
ranges per Ray cluster so clusters side by side never share a port."""

from __future__ import annotations

import socket

# Where Ray Serve hands out direct-ingress replica ports (HTTP from 30000, gRPC from 40000, and
# the private blocks of private_port_ranges below up to 51000). A port the kernel calls free now
# may be given to a replica a second later: a gateway or broker there would take the replica's
# port, or (a server that binds with SO_REUSEPORT, as gRPC's do by default) share it, and the
# kernel would hand some connections to the wrong server.
SERVE_REPLICA_PORTS = range(30000, 51000)
# Where `make run`'s Ray serves every replica's metrics (`ray start --metrics-export-port`);
# VITRINE_RAY_METRICS_PORT changes it.
RAY_METRICS_PORT = 9103


def free_port() -> int:
    """A loopback port free now, outside Serve's replica port ranges."""
    for _ in range(1000):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in SERVE_REPLICA_PORTS:
            return port
    raise OSError("no free port outside Serve's replica ranges")


def private_port_ranges(environ, *, slot: int) -> None:
    """Gives this Ray cluster's direct-ingress replicas port ranges of their own.

    Serve allocates replica ports from fixed ranges (gRPC 40000-41000, HTTP 30000-31000), so two
    clusters on one machine (tests beside `make run`) would ask for the same ports: with Serve's
    gRPC servers binding with SO_REUSEPORT (Ray 2.60, unless shared/serving/ray_fixes.py runs
    in the replica) they silently shared them and answered each other's calls; without it a
    replica retries port after port. Must be set before
    `ray.init` so the raylet and every replica inherit it.

    Args:
        environ: the environment to update (os.environ).
        slot: 0..99, which block of 100 ports each range uses.
    """
    grpc_base, http_base = 41000 + 100 * slot, 31000 + 100 * slot
    environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT", str(grpc_base))
    environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT", str(grpc_base + 99))
    environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT", str(http_base))
    environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT", str(http_base + 99))
