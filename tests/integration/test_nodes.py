"""The platform on several Ray nodes (the session's cluster: tests/integration/conftest.py):
two replicas of each encoder on two model nodes under query load, a replica killed, a node
stopped, the last replica killed, a node back.

The serving and ingestion suites (test_serving.py, test_ingestion.py) run on the same cluster:
the gateway and the store on the head, the models on a model node.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import grpc
import pytest

from operations.local_ray import replica_nodes, spread_over_nodes
from shared.api.vitrine.search.v1 import search_pb2 as pb
from shared.api.vitrine.search.v1 import search_pb2_grpc as pb_grpc
from tests.support.platform import wait_serving
from tests.support.tiny import png_bytes
from tests.support.workers import until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ENCODERS = {"image-encoder": "ImageEncoder", "text-encoder": "TextEncoder"}
CLIENTS = 4
CALL_TIMEOUT_S = 20


def _spread(count: int) -> bool:
    return spread_over_nodes(ENCODERS, count)


class Load:
    """CLIENTS threads, each with its own channel, sending text and image queries in turn
    until stopped; outcomes are counted per phase ("OK", a status code's name, "HANG" for the
    caller's own deadline)."""

    def __init__(self, gateway: str) -> None:
        self.gateway, self.phase = gateway, "start"
        self.outcomes: dict[str, Counter] = {}
        self.errors: list[str] = []
        self._stop, self._lock = threading.Event(), threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(CLIENTS)]

    def _add(self, outcome: str, detail: str = "") -> None:
        with self._lock:
            self.outcomes.setdefault(self.phase, Counter())[outcome] += 1
            if outcome != "OK":
                self.errors.append(f"{self.phase}: {outcome}: {detail}")

    def _run(self, client: int) -> None:
        image = png_bytes(client)
        with grpc.insecure_channel(self.gateway) as channel:
            stub = pb_grpc.SearchServiceStub(channel)
            i = 0
            while not self._stop.is_set():
                i += 1
                query = (
                    pb.SearchRequest(text=f"red shirt {i}", top_k=3)
                    if i % 2
                    else pb.SearchRequest(image=image, top_k=3)
                )
                try:
                    stub.Search(query, timeout=CALL_TIMEOUT_S)
                    self._add("OK")
                except grpc.RpcError as e:
                    gateways = "the gateway's deadline" in (e.details() or "")
                    hang = e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and not gateways
                    self._add("HANG" if hang else e.code().name, e.details() or "")
                    time.sleep(0.05)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=CALL_TIMEOUT_S + 10)

    def ok(self) -> int:
        with self._lock:
            return self.outcomes.get(self.phase, Counter())["OK"]

    def enter(self, phase: str, *, then_ok: int = 0) -> None:
        """Starts counting `phase`; with `then_ok`, first waits for that many answers in the
        phase before."""
        if then_ok:
            until(lambda: self.ok() >= then_ok, timeout_s=120, what=f"{then_ok} answers")
        with self._lock:
            self.phase = phase

    def failed(self, phase: str) -> Counter:
        got = self.outcomes.get(phase, Counter())
        return Counter({code: n for code, n in got.items() if code != "OK"})


def _kill(name: str) -> None:
    """Kills a replica's actor and waits until it no longer answers."""
    import ray

    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
    until(
        lambda: name not in replica_nodes("text-encoder", "TextEncoder"),
        timeout_s=60,
        what=f"{name} gone",
    )


def _scale_encoders(platform, replicas: int) -> None:
    from operations.serve import deploy

    for app in platform.config["applications"]:
        if app["name"] in ENCODERS:
            (deployment,) = app["deployments"]
            deployment.update(num_replicas=replicas, max_replicas_per_node=1)
    deploy(platform.config, timeout_s=300, progress=False)


def test_two_replicas_on_two_nodes_lose_no_query_to_a_replica_kill_or_a_node_stop(
    platform, ray_cluster
):
    """Two replicas of each encoder, one per model node, under 4 clients sending text and image
    queries: a replica killed, then a whole node stopped (SIGKILL of its raylet and every
    process on it), fail no query (the gateway retries on the surviving replica within the
    caller's deadline). With a single replica left and that one killed, calls get OK or
    UNAVAILABLE, never INTERNAL or silence. A node that comes back gets its replicas again and
    queries succeed."""
    second = ray_cluster.add_model_node(num_cpus=2)
    try:
        _scale_encoders(platform, 2)
        until(lambda: _spread(2), timeout_s=180, what="two replicas of each encoder on two nodes")
        with grpc.insecure_channel(platform.gateway) as channel:
            wait_serving(channel)
        time.sleep(3)  # the gateway follows Serve's targets every second or so
        with Load(platform.gateway) as load:
            load.enter("two replicas", then_ok=0)
            load.enter("replica killed", then_ok=20)
            _kill(next(iter(replica_nodes("text-encoder", "TextEncoder"))))
            until(lambda: _spread(2), timeout_s=180, what="Serve to replace the killed replica")
            load.enter("node stopped", then_ok=20)
            ray_cluster.stop_node(second)
            second = None
            until(lambda: _spread(1), timeout_s=120, what="the stopped node's replicas gone")
            load.enter("one replica, killed", then_ok=20)
            (last,) = replica_nodes("text-encoder", "TextEncoder")
            _kill(last)
            until(lambda: _spread(1), timeout_s=180, what="Serve to restart the last replica")
            load.enter("node back", then_ok=5)
            second = ray_cluster.add_model_node(num_cpus=2)
            until(lambda: _spread(2), timeout_s=180, what="replicas on the node that came back")
            load.enter("two replicas again", then_ok=10)
            until(lambda: load.ok() >= 20, timeout_s=120, what="answers on two nodes again")
        print({phase: dict(got) for phase, got in load.outcomes.items()})
        for phase in ("two replicas", "replica killed", "node stopped", "node back"):
            assert not load.failed(phase), (phase, load.errors[:5])
        assert load.outcomes["node stopped"]["OK"] >= 20  # answered with the node gone
        assert set(load.failed("one replica, killed")) <= {"UNAVAILABLE"}, load.errors[:5]
        assert not load.failed("two replicas again"), load.errors[:5]
    finally:
        if second is not None:
            ray_cluster.stop_node(second)
        _scale_encoders(platform, 1)
