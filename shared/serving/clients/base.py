"""One internal service's gRPC channels: where its targets come from, round-robin over them,
the internal token on every call, and gRPC statuses turned into this library's exceptions."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc

from shared.logs import serve_logger
from shared.observability import tracing
from shared.serving.auth import InternalToken
from shared.serving.coalescing import Coalescer, Send
from shared.serving.endpoints import INTERNAL_MAX_MESSAGE_BYTES, grpc_targets
from shared.serving.errors import DependencyError, LimitError, RequestError

log = serve_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")

REFRESH_S = 2.0
# A target answering these is gone (or going): the call is sent to another target.
RETRY_ELSEWHERE = frozenset({grpc.StatusCode.UNAVAILABLE})
CALLS_PER_TARGET = 2  # default coalesced calls out at once per replica target
CLOSE_GRACE_S = 60.0  # longer than any call's deadline
# NOT_FOUND is not among them: no dependency answers it for a caller's mistake, and Serve's gRPC
# proxy answers it for an application that is gone ("Application 'vector-store' not found"),
# which is a dependency down (tests/integration/reliability/test_limits_and_degraded.py).
_CALLER_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT: RequestError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: LimitError,
}


def exception_of(app_name: str, e: grpc.aio.AioRpcError) -> Exception:
    """The exception a failed call to `app_name` raises: RequestError/LimitError for the
    caller's mistakes (with the service's own words), TimeoutError for a deadline passed, and
    DependencyError (with the status) for anything else."""
    code = e.code()
    if code in _CALLER_ERRORS:
        return _CALLER_ERRORS[code](e.details())
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return TimeoutError(f"{app_name} did not answer within the deadline")
    return DependencyError(f"{app_name} failed: {code.name}: {e.details()}", status=code)


class ServiceClient:
    """Round-robin gRPC stubs over the targets of one Serve application.

    Args:
        app_name: the Serve application (shared.serving.apps); Serve's gRPC proxy routes by it.
        stub_class: the service's generated stub.
        targets: fixed host:port addresses (Serve's gRPC proxy, for a caller outside the
            cluster: the ingestion worker, the CLI, bench); None: the targets Serve publishes
            (shared.serving.endpoints.grpc_targets, for a caller inside the cluster: the
            gateway), refreshed in the background once `start` is called.
        max_message_bytes: the largest message sent or received.
        calls_per_target: coalesced calls out at once per target.
        internal_token: sent on every call; without it every internal service answers
            UNAUTHENTICATED.

    Channels are made on the event loop of the first call, and every call must come from that
    loop (a synchronous caller goes through shared.serving.clients.blocking).
    """

    def __init__(
        self,
        app_name: str,
        stub_class: Callable,
        *,
        targets: Sequence[str] | None = None,
        max_message_bytes: int = INTERNAL_MAX_MESSAGE_BYTES,
        calls_per_target: int = CALLS_PER_TARGET,
        internal_token: InternalToken | None = None,
    ) -> None:
        self.app_name = app_name
        self.calls_per_target = calls_per_target
        self.max_message_bytes = max_message_bytes
        self._stub_class = stub_class
        self._fixed = None if targets is None else sorted(set(targets))
        self._metadata = (
            internal_token.metadata(app_name) if internal_token else (("application", app_name),)
        )
        self._options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        self._channels: dict[str, tuple[grpc.aio.Channel, object]] = {}
        self._turns = itertools.count()  # round robin over the targets, across calls
        self._refresher: asyncio.Task | None = None
        self._closing: set[asyncio.Task] = set()
        self._coalescers: list[Coalescer] = []

    async def _targets(self) -> list[str]:
        return self._fixed if self._fixed is not None else await grpc_targets(self.app_name)

    async def refresh(self) -> None:
        targets = await self._targets()
        if set(targets) == set(self._channels):
            return
        old = self._channels
        self._channels = {t: old.get(t) or self._connect(t) for t in targets}
        for target, (channel, _) in old.items():
            if target not in self._channels:
                # Closed later, not now: closing cancels the calls still in flight on it, and
                # Serve's published list does change under running calls (a replica replaced,
                # or a flip between replica ports and the proxy's).
                self._closing.add(asyncio.create_task(channel.close(grace=CLOSE_GRACE_S)))
                self._closing = {t for t in self._closing if not t.done()}
        for coalescer in self._coalescers:
            coalescer.max_in_flight = self.calls_per_target * max(1, len(self._channels))
        log.info("%s: gRPC targets %s", self.app_name, targets)

    def _connect(self, target: str):
        channel = grpc.aio.insecure_channel(target, options=self._options)
        return channel, self._stub_class(channel)

    async def _refresh_forever(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as e:  # the controller may be restarting; keep the old list
                log.warning("%s: cannot refresh targets: %s", self.app_name, e)
            await asyncio.sleep(REFRESH_S)

    def start(self) -> None:
        """Follows the targets Serve publishes, on the running loop (fixed targets: nothing to
        follow)."""
        if self._fixed is None:
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def close(self) -> None:
        """Stops following the targets and closes every channel."""
        if self._refresher is not None:
            self._refresher.cancel()
        channels, self._channels = self._channels, {}
        await asyncio.gather(*(channel.close() for channel, _ in channels.values()))

    def coalescer(self, send: Send[T, R], *, max_items: int, **kw: Any) -> Coalescer[T, R]:
        """A Coalescer over this service that keeps `calls_per_target` calls out per target
        (by default two: one computing, one waiting in the replica's batcher)."""
        kw.setdefault("name", f"{self.app_name}.call")
        coalescer = Coalescer(send, max_items=max_items, max_in_flight=self.calls_per_target, **kw)
        self._coalescers.append(coalescer)
        return coalescer

    async def call(self, method: str, request, *, timeout_s: float | None):
        """`method` on the next target; when that target is UNAVAILABLE (its replica or node is
        gone, not yet dropped from Serve's published list), on the next one, each target at
        most once, within the one deadline. Every internal method may be sent twice: encoders
        and searches are pure, store writes are versioned (a replay is a no-op).

        Raises:
            RequestError, LimitError, TimeoutError, DependencyError: as `exception_of`.
        """
        if not self._channels:
            await self.refresh()
        if not self._channels:
            raise DependencyError(f"{self.app_name} has no running replica")
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        # This call's own order over the targets as they are now: a turn shared with the calls
        # running beside it could hand this one the same dead target twice. Each try looks its
        # target up again: a refresh meanwhile may have dropped it (its channel is closing).
        targets = list(self._channels)
        first, failed = next(self._turns), None
        for attempt in range(len(targets)):
            entry = self._channels.get(targets[(first + attempt) % len(targets)])
            if entry is None:
                continue
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"{self.app_name} did not answer within the deadline")
            try:
                return await self._call(entry[1], method, request, timeout_s=left)
            except DependencyError as e:
                if e.status not in RETRY_ELSEWHERE:
                    raise
                failed = e
                if attempt < len(targets) - 1:
                    log.warning("%s: %s; trying another replica", self.app_name, e)
        raise failed or DependencyError(f"{self.app_name} has no running replica")

    async def call_each(
        self, method: str, request, *, timeout_s: float | None
    ) -> list[tuple[str, Any]]:
        """(target, reply or the exception it raised) of `method` on every target at once."""
        await self.refresh()
        targets = list(self._channels.items())
        replies = await asyncio.gather(
            *(self._call(stub, method, request, timeout_s=timeout_s) for _, (_, stub) in targets),
            return_exceptions=True,
        )
        return [(target, reply) for (target, _), reply in zip(targets, replies, strict=True)]

    async def _call(self, stub, method: str, request, *, timeout_s: float | None):
        try:
            metadata = tracing.inject(self._metadata)  # the caller's trace context, if any
            return await getattr(stub, method)(request, timeout=timeout_s, metadata=metadata)
        except grpc.aio.AioRpcError as e:
            raise exception_of(self.app_name, e) from None
