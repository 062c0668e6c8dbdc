"""The Ray this process starts for itself: the tests' session cluster and the benchmarks' Ray.

`make run` starts its Ray from scripts/run.sh; the tests and the benchmarks start one inside
their own process instead, serving the way `make run` does (Serve's direct ingress, the internal
message limit, an internal token) on replica ports of their own. This module is the one place
that says how.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import MutableMapping
from pathlib import Path

from operations.ports import private_port_ranges
from shared.serving.endpoints import INTERNAL_MAX_MESSAGE_BYTES

SERVE_MESSAGE_SIZE_VARIABLE = "RAY_SERVE_GRPC_MAX_MESSAGE_SIZE"
OBJECT_STORE_BYTES = 128 * 2**20


# A stopping direct-ingress replica keeps answering for at least this long (Serve's default is
# 30 s, for external load balancers to deregister it). On one machine the only callers of the
# replicas' own ports are the gateway's clients, which drop a replica within their 2 s refresh
# (shared.serving.clients.base.REFRESH_S): 5 s covers that, and deleting or replacing an
# application (`vitrine rollout`/`rollback`, the tests' teardowns) took 30 s where it now takes
# about 5. Calls in flight are still drained either way. The Kubernetes profiles keep Serve's 30 s.
DRAINING_VARIABLE = "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"
LOCAL_DRAINING_S = "5"


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
    environ.setdefault(DRAINING_VARIABLE, LOCAL_DRAINING_S)
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
        address="local",  # a Ray of its own, never a cluster found on this machine
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


# Node roles of a cluster of several Ray nodes (see place_on_nodes): the head offers
# HEAD_RESOURCE (the gateway and the store go there), every model node MODEL_RESOURCE (the
# encoders and fusion). Deployments claim a hundredth of one, so a node takes any number.
HEAD_RESOURCE = "vitrine_head"
MODEL_RESOURCE = "vitrine_model"
ROLE_CAPACITY = 100.0
ROLE_CLAIM = 0.01


NODE_START_S = 120.0


@contextlib.contextmanager
def _ray_address_file_kept():
    """Keeps the file where `ray start` (and Ray's cluster harness) leave the latest cluster's
    address, `$RAY_TMPDIR/ray_current_cluster`, as it was: a later `ray.init()` without an
    address (a benchmark, a CLI beside the tests) must not join this process's cluster, nor
    lose the address of a cluster started by hand."""
    from ray._common.utils import get_ray_address_file

    path = Path(get_ray_address_file(None))
    before = path.read_text() if path.is_file() else None
    try:
        yield
    finally:
        if before is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(before)


class LocalCluster:
    """A Ray cluster of several nodes on this machine: a head and model nodes, each a raylet
    with its own CPUs, object store, metrics agent and worker processes, started the way
    `ray start --head` and `ray start --address` start them (Ray's `cluster_utils.Cluster`, the
    multi-node harness of Ray's own tests). This process is the driver, connected to the head.
    Call `prepare_environment` first: every node inherits the environment."""

    def __init__(self, *, head_cpus: int = 1, metrics: bool = True) -> None:
        from ray.cluster_utils import Cluster

        self._metrics = metrics
        self.metrics_ports: dict[str, int] = {}  # node id -> its metrics agent's port
        args, port = self._node_args(head_cpus, HEAD_RESOURCE)
        with _ray_address_file_kept():
            self.cluster = Cluster(
                initialize_head=True, head_node_args=args | {"include_dashboard": False}
            )
        self.head = self.cluster.head_node
        assert self.head is not None  # initialize_head
        self._note_metrics(self.head, port)
        self.model_nodes: list = []

    def _node_args(self, num_cpus: int, role: str) -> tuple[dict, int | None]:
        """A node's arguments, and the port of its metrics agent (None: no metrics)."""
        from operations.ports import free_port

        port = free_port() if self._metrics else None
        args = {
            "num_cpus": num_cpus,
            "resources": {role: ROLE_CAPACITY},
            "object_store_memory": OBJECT_STORE_BYTES,
        }
        return (args if port is None else args | {"metrics_export_port": port}), port

    def _note_metrics(self, node, port: int | None) -> None:
        if port is not None:
            self.metrics_ports[node.unique_id] = port

    def connect(self, *, log_to_driver: bool = True) -> None:
        """Makes this process the cluster's driver (`ray.init(address=...)`)."""
        import ray

        ray.init(
            address=self.cluster.address,
            logging_level=logging.WARNING,
            log_to_driver=log_to_driver,
        )

    def add_model_node(self, *, num_cpus: int = 2):
        """Starts a model node and waits until the cluster sees it. Returns it (for
        `stop_node`)."""
        args, port = self._node_args(num_cpus, MODEL_RESOURCE)
        node = self.cluster.add_node(wait=False, **args)
        try:
            # Ray's harness waits 30 s, short for a busy 2-core machine.
            self.cluster._wait_for_node(node, timeout=NODE_START_S)
        except BaseException:
            self.cluster.remove_node(node, allow_graceful=False)  # no node left half-started
            raise
        self._note_metrics(node, port)
        self.model_nodes.append(node)
        return node

    def stop_node(self, node, *, graceful: bool = False) -> None:
        """Stops a model node: its raylet, object store, agents and every worker process on it
        (SIGKILL unless `graceful`), like a machine that is lost."""
        self.cluster.remove_node(node, allow_graceful=graceful)
        self.model_nodes.remove(node)
        self.metrics_ports.pop(node.unique_id, None)

    def shutdown(self) -> None:
        """Shuts Serve down, disconnects, and stops every node."""
        try:
            stop_local_ray()
        finally:
            with _ray_address_file_kept():  # the harness removes it at shutdown
                self.cluster.shutdown()


def replica_nodes(app: str, deployment: str) -> dict[str, str]:
    """Actor name -> node id of every replica of `deployment` that answers now, on the connected
    cluster (a replica starting, or on a node that is gone, is left out)."""
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError

    prefix = f"SERVE_REPLICA::{app}#{deployment}#"
    found: dict[str, str] = {}
    for named in ray.util.list_named_actors(all_namespaces=True):
        if not named["name"].startswith(prefix):
            continue
        try:
            actor = ray.get_actor(named["name"], namespace="serve")
            where: ray.ObjectRef = actor.__ray_call__.remote(
                lambda _: ray.get_runtime_context().get_node_id()
            )
            found[named["name"]] = ray.get(where, timeout=5)
        except (ValueError, GetTimeoutError, RayActorError):
            continue
    return found


def spread_over_nodes(deployments: dict[str, str], count: int) -> bool:
    """Whether every deployment (app -> deployment name) has `count` replicas answering, each on
    a node of its own."""
    for app, deployment in deployments.items():
        nodes = list(replica_nodes(app, deployment).values())
        if len(nodes) != count or len(set(nodes)) != count:
            return False
    return True
