"""Client-side coalescing: concurrent one-item calls to a service become multi-item RPCs.

Each query the gateway answers needs one text embedding, one store search and so on. Sent one
RPC each, every query pays a gRPC round trip and Serve's per-request work in every replica it
touches: on the 2-core machine that was about 2 ms of CPU per query per hop, more than the
models' own compute once they ran on ONNX Runtime (docs/BENCHMARKS.md, "Where the time went").
A `Coalescer` sends an item at once when fewer than `max_in_flight` calls are out (so a lone
query waits for nothing), and otherwise queues it; when a call returns, everything queued leaves
in the next call. Under load one RPC carries many queries' items, and the replica's batcher
computes them together.

A caller's mistake in one item must not fail the others that shared its call: when a
multi-item call is refused as the caller's fault (RequestError), each item is retried alone.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from shared.observability import tracing
from shared.serving.errors import DependencyError, RequestError

T = TypeVar("T")
R = TypeVar("R")

Send = Callable[[list[T], float | None], Awaitable[Sequence[R]]]


@dataclass
class _Pending(Generic[T]):
    item: T
    future: asyncio.Future
    deadline: float | None  # time.monotonic(); None: no deadline
    trace: object = None  # the caller's trace context (tracing.current())


class Coalescer(Generic[T, R]):
    """Sends items through `send(items, timeout_s) -> results` (one result per item, in order).

    Args:
        send: one RPC for a list of items; raises the service's exceptions.
        max_items: most items in one call.
        max_in_flight: calls out at once; items wait while this many are out.
        weigh, max_weight: a call's items weigh at most max_weight together (e.g. bytes, to
            stay under the gRPC message limit); an item heavier than that travels alone.
        name: the span of each call (a child of the one caller's span, or linked to each).
    """

    def __init__(
        self,
        send: Send[T, R],
        *,
        max_items: int,
        max_in_flight: int = 2,
        weigh: Callable[[T], int] | None = None,
        max_weight: int = 0,
        name: str = "coalesced",
    ) -> None:
        self._send = send
        self.name = name
        self.max_items = max_items
        self.max_in_flight = max_in_flight
        self._weigh, self._max_weight = weigh, max_weight
        self._queue: deque[_Pending[T]] = deque()
        self._in_flight = 0
        self.calls = 0
        self.items = 0

    async def call(self, item: T, *, timeout_s: float | None = None) -> R:
        """The result for one item, from whichever call carries it."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(item, future, deadline, tracing.current()))
        self._dispatch()
        return await future

    def _dispatch(self) -> None:
        while self._queue and self._in_flight < self.max_in_flight:
            batch = self._take()
            if not batch:
                return
            self._in_flight += 1
            asyncio.get_running_loop().create_task(self._run(batch))

    def _take(self) -> list[_Pending[T]]:
        batch: list[_Pending[T]] = []
        weight = 0
        while self._queue and len(batch) < self.max_items:
            pending = self._queue[0]
            if pending.future.done():  # its caller gave up (deadline, cancellation)
                self._queue.popleft()
                continue
            if self._weigh is not None:
                weight += self._weigh(pending.item)
                if batch and weight > self._max_weight:
                    break
            batch.append(self._queue.popleft())
        return batch

    async def _run(self, batch: list[_Pending[T]]) -> None:
        try:
            await self._deliver(batch)
        finally:
            self._in_flight -= 1
            self._dispatch()

    async def _deliver(self, batch: list[_Pending[T]]) -> None:
        self.calls += 1
        self.items += len(batch)
        try:
            with tracing.batch_span(
                self.name, [p.trace for p in batch], {"batch.size": len(batch)}
            ):
                results = await self._send([p.item for p in batch], _timeout(batch))
            if len(results) != len(batch):
                raise RuntimeError(f"{len(batch)} items gave {len(results)} results")
        except RequestError as e:
            if len(batch) == 1:
                _fail(batch, e)
                return
            # One item's fault, most likely: find it, and answer the rest.
            await asyncio.gather(*(self._deliver([p]) for p in batch))
            return
        except asyncio.CancelledError:
            # The channel under the call closed (clients.py drops a replica Serve no longer
            # publishes), or this task itself is being cancelled (shutdown).
            _fail(batch, DependencyError("a backing service's replica went away; retry"))
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            return
        except Exception as e:  # a dependency failure reaches every caller of the call
            _fail(batch, e)
            return
        for pending, result in zip(batch, results, strict=True):
            if not pending.future.done():
                pending.future.set_result(result)


def _timeout(batch: list[_Pending]) -> float | None:
    """The longest time any item of the call may still wait (each caller enforces its own)."""
    deadlines = [p.deadline for p in batch if p.deadline is not None]
    if len(deadlines) < len(batch):  # someone waits without a deadline
        return None
    return max(0.001, max(deadlines) - time.monotonic())


def _fail(batch: list[_Pending], error: BaseException) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(error)
