"""The model slot a gateway serves from: the encoders, fusion and store applications of one model
bundle, and the switch to another slot while queries run (`vitrine rollout` / `rollback`,
operations/rollout.py)."""

from __future__ import annotations

import asyncio
import time

from services.gateway.health import DependencyHealth
from services.gateway.search import Dependencies
from shared.logs import serve_logger
from shared.serving.clients import (
    FusionClient,
    ImageEncoderClient,
    TextEncoderClient,
    VectorStoreClient,
)
from shared.serving.clients.base import CLOSE_GRACE_S

log = serve_logger(__name__)

SWITCH_WAIT_S = 60.0  # how long a switch waits for the new slot to answer with one model


def clients(apps: dict[str, str], **options) -> Dependencies:
    """The gRPC clients of the dependencies, following the targets Serve publishes."""
    deps = Dependencies(
        image=ImageEncoderClient(apps["image_encoder"], **options),
        text=TextEncoderClient(apps["text_encoder"], **options),
        fusion=FusionClient(apps["fusion"], **options),
        store=VectorStoreClient(apps["vector_store"], **options),
    )
    for client in (deps.image, deps.text, deps.fusion, deps.store):
        client.start()
    return deps


async def _close_later(deps: Dependencies) -> None:
    """Closes a replaced slot's clients once every call on them is past its deadline."""
    await asyncio.sleep(CLOSE_GRACE_S)
    for client in (deps.image, deps.text, deps.fusion, deps.store):
        await client.close()


class ModelSlot:
    """The applications (role -> application) a gateway's queries go to, and their clients.

    A query reads `deps` and the health's model version once, together, before its first
    await: it runs wholly on the slot it started on.
    """

    def __init__(self, apps: dict[str, str], **client_options) -> None:
        self._options = client_options
        self.apps = dict(apps)
        self.deps = clients(apps, **client_options)
        self.problem: str | None = None  # why the last switch did not happen
        self._retired: set[asyncio.Task] = set()

    async def switch(self, apps: dict[str, str], health: DependencyHealth) -> None:
        """Serves from `apps` once every one of them answers with one model (within
        SWITCH_WAIT_S); otherwise keeps the current slot and says why in `problem`. The old
        slot's clients close after the longest deadline."""
        if not apps or apps == self.apps:
            return
        deadline = time.monotonic() + SWITCH_WAIT_S
        try:
            candidate = await DependencyHealth.find(apps, wait_s=SWITCH_WAIT_S)
        except KeyError as e:
            self._refuse(apps, f"no application {e}")
            return
        while (problem := await candidate.check()) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        if problem:
            self._refuse(apps, problem)
            return
        deps = clients(apps, **self._options)
        # No await from here on: a query sees the old slot or the new one, never a mix.
        old, self.deps, self.apps, self.problem = self.deps, deps, dict(apps), None
        health.adopt(candidate)
        self._retired = {t for t in self._retired if not t.done()}
        self._retired.add(asyncio.create_task(_close_later(old)))
        log.info("gateway: serving model %s from %s", health.model_version, apps)

    def _refuse(self, apps: dict[str, str], why: str) -> None:
        self.problem = f"not switched to {apps}: {why}"
        log.error("gateway: %s", self.problem)
