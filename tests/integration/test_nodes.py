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
from shared.serving.clients.base import REFRESH_S
from shared.serving.endpoints import grpc_targets_sync
from tests.support.platform import wait_serving
from tests.support.tiny import png_bytes
from tests.support.workers import until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ENCODERS = {"image-encoder": "ImageEncoder", "text-encoder": "TextEncoder"}
CLIENTS = 4
CALL_TIMEOUT_S = 20


def _spread(count: int) -> bool:
    return spread_over_nodes(ENCODERS, count)


def _settle(count: int, what: str) -> None:
    """Waits until every encoder has `count` replicas answering on as many nodes, Serve
    publishes exactly their `count` targets, and the gateway has had time to follow."""
    until(lambda: _spread(count), timeout_s=180, what=what)
    until(
        lambda: all(len(grpc_targets_sync(app)) == count for app in ENCODERS),
        timeout_s=60,
        what=f"Serve to publish {count} targets per encoder",
    )
    time.sleep(REFRESH_S + 1)  # the gateway's next refresh of its targets


class Load:
    """CLIENTS threads, each with its own channel, sending text and image queries in turn
    until stopped; outcomes are counted per phase ("OK", a status code's name, "HANG" for the
    caller's own deadline)."""

    def __init__(self, gateway: str) -> None:
        self.gateway, self.phase, self.since = gateway, "start", time.monotonic()
        self.outcomes: dict[str, Counter] = {}
        self.errors: list[str] = []
        self._stop, self._lock = threading.Event(), threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(CLIENTS)]

    def _add(self, phase: str, outcome: str, detail: str = "") -> None:
        """Counts a call's outcome in the phase it was sent in."""
        with self._lock:
            self.outcomes.setdefault(phase, Counter())[outcome] += 1
            if outcome != "OK":
                self.errors.append(f"{phase}: {outcome}: {detail}")

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
                with self._lock:
                    phase, sent = self.phase, time.monotonic() - self.since
                try:
                    stub.Search(query, timeout=CALL_TIMEOUT_S)
                    self._add(phase, "OK")
                except grpc.RpcError as e:
                    gateways = "the gateway's deadline" in (e.details() or "")
                    hang = e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and not gateways
                    outcome = "HANG" if hang else e.code().name
                    self._add(phase, outcome, f"sent {sent:.1f} s in: {e.details()}")
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
        """Calls sent from now on count in `phase`; with `then_ok`, first waits for that many
        answers to calls of the phase before."""
        if then_ok:
            what = f"{then_ok} answers in phase {self.phase!r} before {phase!r}"
            try:
                until(lambda: self.ok() >= then_ok, timeout_s=120, what=what)
            except AssertionError as e:
                raise AssertionError(f"{e}; so far {self.outcomes}; {self.errors[-5:]}") from None
        with self._lock:
            self.phase, self.since = phase, time.monotonic()

    def of(self, phase: str) -> list[str]:
        """The failed calls sent in `phase`, with when (seconds into it) and why."""
        return [e for e in self.errors if e.startswith(f"{phase}: ")]

    def failed(self, phase: str) -> Counter:
        got = self.outcomes.get(phase, Counter())
        return Counter({code: n for code, n in got.items() if code != "OK"})


def _kill(name: str) -> None:
    """Kills a text-encoder replica's actor and waits until it no longer answers."""
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
    queries: a replica killed, then a whole node stopped (its raylet, object store and agents
    killed, its replicas exiting with them), fail no query (the gateway retries on the surviving replica within the
    caller's deadline). With a single replica left and that one killed, calls get OK or
    UNAVAILABLE, never INTERNAL or silence, and so while a node comes back; once it has its
    replicas again, every query succeeds."""
    second = ray_cluster.add_model_node(num_cpus=2)
    try:
        _scale_encoders(platform, 2)
        _settle(2, "two replicas of each encoder on two nodes")
        with grpc.insecure_channel(platform.gateway) as channel:
            wait_serving(channel)
        with Load(platform.gateway) as load:
            load.enter("two replicas")
            load.enter("replica killed", then_ok=20)
            _kill(next(iter(replica_nodes("text-encoder", "TextEncoder"))))
            _settle(2, "Serve to replace the killed replica")
            load.enter("node stopped", then_ok=20)
            ray_cluster.stop_node(second)
            second = None
            _settle(1, "the stopped node's replicas gone")
            load.enter("one replica, killed", then_ok=20)
            (last,) = replica_nodes("text-encoder", "TextEncoder")
            _kill(last)
            _settle(1, "Serve to restart the last replica")
            load.enter("node back", then_ok=5)
            second = ray_cluster.add_model_node(num_cpus=2)
            _settle(2, "replicas on the node that came back")
            load.enter("two replicas again", then_ok=10)
            until(lambda: load.ok() >= 20, timeout_s=120, what="answers on two nodes again")
        print({phase: dict(got) for phase, got in load.outcomes.items()})
        for phase in ("two replicas", "replica killed", "node stopped", "two replicas again"):
            assert not load.failed(phase), (phase, load.of(phase)[:5])
        # With one replica of each killed, and while a node comes back (one run in five saw
        # a few dozen UNAVAILABLE there; docs/RELIABILITY.md), a call may be refused, never
        # left unanswered or failed otherwise.
        for phase in ("one replica, killed", "node back"):
            assert set(load.failed(phase)) <= {"UNAVAILABLE"}, (phase, load.of(phase)[:5])
    finally:
        if second is not None:
            ray_cluster.stop_node(second)
        _scale_encoders(platform, 1)
