"""The gateway's readiness: its dependencies checked in the background, reported through gRPC
health (and the HTTP /healthz the deployment serves)."""

from __future__ import annotations

import asyncio
import time

from grpc_health.v1 import health_pb2
from grpc_health.v1.health import HealthServicer
from ray import serve

from services.gateway.servers import SERVICE_NAME
from shared.logs import serve_logger
from shared.observability.metrics import make
from shared.serving.apps import (
    FUSION_DEPLOYMENT,
    IMAGE_ENCODER_DEPLOYMENT,
    TEXT_ENCODER_DEPLOYMENT,
    VECTOR_STORE_DEPLOYMENT,
)

log = serve_logger(__name__)

HEALTH_INTERVAL_S = 5.0
# Health entry that is SERVING while the server runs, whatever the dependencies: what a
# Kubernetes liveness probe asks, so a dependency outage never restarts the gateway's pod.
LIVENESS_SERVICE = "vitrine.liveness"
DEPENDENCY_WAIT_S = 300.0


async def _handle(deployment: str, app: str, *, wait_s: float = DEPENDENCY_WAIT_S):
    """A handle to a dependency, waiting while its application is not deployed yet: Serve
    deploys a config's applications side by side, and `get_deployment_handle` raises KeyError
    for one that does not exist yet, which failed the gateway's replica (and, after Serve's
    retries, the whole application) when the gateway started first."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return serve.get_deployment_handle(deployment, app)
        except KeyError:
            if time.monotonic() > deadline:
                raise
            log.info("waiting for application %s (%s) to be deployed", app, deployment)
            await asyncio.sleep(1.0)


async def _info(handle):
    """A dependency's info, or the exception that came instead."""
    try:
        return await handle.info.remote()
    except Exception as e:
        return e


class DependencyHealth:
    """Whether every dependency answers and serves one model, asked through Serve handles (off
    the query path, no gRPC method needed), and the gRPC health servicer that says so.

    Use `find` to make one, then `start` on the replica's event loop.
    """

    def __init__(self, store, others: list, names: list[str] | None = None) -> None:
        self.servicer = HealthServicer(experimental_non_blocking=True)
        # The gateway's own metrics of its dependencies: one "up" gauge each, set every second
        # (Ray drops a gauge that is not set again), and the replica's own "up".
        self._names = names or []  # the applications of [*others, store]
        self._up: dict[str, float] = dict.fromkeys(self._names, 0.0)
        self._dependency_up, self._replica_up = (
            make("vitrine_gateway_dependency_up"),
            make("vitrine_replica_up"),
        )
        self.model_version = ""
        # Whether the collection has the lexical index (one created before it has none, and
        # text queries that name no mode then run dense rather than fail).
        self.lexical: bool | None = None  # None: not checked yet
        self.problem: str | None = "starting: dependencies not checked yet"
        self._store, self._all = store, [*others, store]
        self._task: asyncio.Task | None = None

    @classmethod
    async def find(
        cls, apps: dict[str, str], *, wait_s: float = DEPENDENCY_WAIT_S
    ) -> DependencyHealth:
        """Handles to the applications `apps` names (role -> application), each waited for
        while it is not deployed yet (KeyError after `wait_s`)."""
        store = await _handle(VECTOR_STORE_DEPLOYMENT, apps["vector_store"], wait_s=wait_s)
        others = [
            await _handle(IMAGE_ENCODER_DEPLOYMENT, apps["image_encoder"], wait_s=wait_s),
            await _handle(TEXT_ENCODER_DEPLOYMENT, apps["text_encoder"], wait_s=wait_s),
            await _handle(FUSION_DEPLOYMENT, apps["fusion"], wait_s=wait_s),
        ]
        names = [apps[r] for r in ("image_encoder", "text_encoder", "fusion", "vector_store")]
        return cls(store, others, names)

    def adopt(self, other: DependencyHealth) -> None:
        """Takes `other`'s dependencies and its last check's findings (a model slot switch);
        the servicer, the watcher and the gauges stay this one's."""
        self._store, self._all, self._names = other._store, other._all, other._names
        self._up = dict(other._up)
        self.model_version, self.lexical = other.model_version, other.lexical
        self.problem = other.problem

    @property
    def ready(self) -> bool:
        """The last check passed: a model set once stays set when a dependency goes away or
        changes model later, so `problem` decides."""
        return bool(self.model_version) and self.problem is None

    def start(self) -> None:
        """NOT_SERVING (but live) until the first check passes; checks from now on."""
        self._set_serving(False)
        self.servicer.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        self._task = asyncio.get_running_loop().create_task(self._watch())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def check(self) -> str | None:
        """None when every dependency answers and serves one model; else what is wrong."""
        try:
            answers = await asyncio.wait_for(
                asyncio.gather(*(_info(h) for h in self._all)), timeout=HEALTH_INTERVAL_S
            )
        except Exception as e:  # any failure means not ready
            self._up = dict.fromkeys(self._names, 0.0)
            return f"a dependency is not answering: {type(e).__name__}: {e}"
        # (names may be missing: a DependencyHealth made without them reports no gauges)
        pairs = zip(self._names, answers, strict=False)
        self._up = {n: float(not isinstance(a, Exception)) for n, a in pairs}
        if failed := [a for a in answers if isinstance(a, Exception)]:
            return f"a dependency is not answering: {type(failed[0]).__name__}: {failed[0]}"
        infos = answers
        versions = {i["model_version"] for i in infos}
        if len(versions) != 1:
            return f"dependencies serve different models: {sorted(versions)}"
        self.model_version = versions.pop()
        self.lexical = bool(infos[-1].get("lexical", True))  # the store's (last in _all)
        return None

    async def store_info(self) -> dict:
        """The vector store's info: model_version, collection, dim, points, indexed_fields."""
        return await asyncio.wait_for(self._store.info.remote(), HEALTH_INTERVAL_S)

    async def _watch(self) -> None:
        last: str | None = "starting"
        while True:
            problem = await self.check()
            if problem != last:
                (log.warning if problem else log.info)(
                    "gateway %s", f"NOT_SERVING: {problem}" if problem else "SERVING"
                )
                self._set_serving(problem is None)
                self.problem = last = problem
            await self._report_for(HEALTH_INTERVAL_S if problem is None else 0.5)

    async def _report_for(self, seconds: float) -> None:
        """Sleeps `seconds`, setting the gauges every second meanwhile."""
        deadline = asyncio.get_running_loop().time() + seconds
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            for name, up in self._up.items():
                self._dependency_up.set(up, tags={"dependency": name})
            self._replica_up.set(1.0)
            await asyncio.sleep(min(1.0, left))

    def _set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        self.servicer.set("", status)
        self.servicer.set(SERVICE_NAME, status)
