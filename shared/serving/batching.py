"""Dynamic batching for the model deployments: requests that arrive while a batch computes form
the next batch.

Serve's own `@serve.batch` (Ray 2.60) cannot be used for this. Its loop forms the next batch as
soon as the previous one is handed to a task, and only that task waits for the concurrency
semaphore (ray-project/ray#53096). So while one batch computes, every request that arrives alone
becomes a batch of its own, queued behind it. Measured on the running platform with 32 concurrent
clients: 1.00 requests per batch, and the text encoder served 57 queries/s where the same model
does 500 texts/s in batches of 32 (docs/BENCHMARKS.md, "Where the time went").

`Batcher` waits for the running batch before it forms the next one, and runs every batch on one
thread of its own: a replica's CPU budget is spent by one forward pass at a time, with as many
intra-op threads as the budget has cores (`shared.serving.runtime.torch_threads_for`).
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import contextvars
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from shared.observability import tracing

if TYPE_CHECKING:
    from shared.observability.metrics import BatchMetrics

T = TypeVar("T")
R = TypeVar("R")

SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class BatchConfig(BaseModel):
    """A deployment's `user_config` in the Serve config: its dynamic batching, changeable while
    it runs. The Serve config is the one place these are set (deploy/serve/vitrine.yaml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_batch_size: int = Field(16, ge=1, le=4096, description="Most items in one forward pass.")
    batch_wait_timeout_s: float = Field(
        0.0,
        ge=0,
        le=1,
        description="How long a batch that is not full waits for more items before it runs. "
        "0 on the query path: items that arrive while a batch computes form the next one anyway.",
    )


@dataclass
class BatchStats:
    """What a batcher has done since it started: batches formed, their sizes, waits, compute."""

    batches: int = 0
    items: int = 0
    failed_batches: int = 0
    queue_wait_s: float = 0.0  # summed over items: from submit to the start of their batch
    compute_s: float = 0.0  # summed over batches
    size_counts: list[int] = field(default_factory=lambda: [0] * len(SIZE_BUCKETS))

    def record(self, size: int, waits: float, compute: float, *, failed: bool) -> None:
        self.batches += 1
        self.items += size
        self.failed_batches += failed
        self.queue_wait_s += waits
        self.compute_s += compute
        self.size_counts[min(bisect.bisect_left(SIZE_BUCKETS, size), len(SIZE_BUCKETS) - 1)] += 1

    def to_dict(self) -> dict:
        return {
            "batches": self.batches,
            "items": self.items,
            "failed_batches": self.failed_batches,
            "mean_batch_size": self.items / self.batches if self.batches else 0.0,
            "mean_queue_wait_ms": 1000 * self.queue_wait_s / self.items if self.items else 0.0,
            "mean_compute_ms": 1000 * self.compute_s / self.batches if self.batches else 0.0,
            "batch_sizes": {
                f"<={b}": n for b, n in zip(SIZE_BUCKETS, self.size_counts, strict=True) if n
            },
        }


@dataclass
class _Item(Generic[T]):
    value: T
    future: asyncio.Future
    submitted: float
    trace: object = None  # the submitter's trace context (tracing.current())


class Batcher(Generic[T, R]):
    """Runs `fn` over batches of submitted items, one batch at a time, on a thread of its own.

    Args:
        fn: maps a list of items to one result per item, in order (a list, or an array whose
            rows are the results). It runs on the batcher's thread, never on the event loop; an
            exception it raises fails every item of the batch.
        config: the batch size limit and wait (`configure` changes them while running).
        name: names the thread (visible in py-spy and Ray's stack dumps) and each batch's span.
        metrics: records each batch (size, waits, compute, failure) when given.
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Collection[R]],
        *,
        config: BatchConfig,
        name: str,
        metrics: BatchMetrics | None = None,
    ) -> None:
        self._fn = fn
        self._name = name
        self._metrics = metrics
        self.config = config
        self.stats = BatchStats()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
        self._queue: deque[_Item[T]] = deque()
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._busy_since: float | None = None  # the running batch's start
        self._window = (time.monotonic(), 0.0)  # (start, compute seconds finished in it)

    def queued(self) -> int:
        """Items waiting for a batch."""
        return len(self._queue)

    def busy_fraction(self) -> float:
        """The share of wall time spent computing since the last call (or since start)."""
        now = time.monotonic()
        start, done = self._window
        running = now - max(self._busy_since, start) if self._busy_since is not None else 0.0
        self._window = (now, 0.0)  # a running batch's later part counts in the next window
        return min(1.0, (done + running) / max(now - start, 1e-9))

    def configure(self, config: BatchConfig) -> None:
        """New limits; the batch being formed or computed keeps the old ones."""
        self.config = config

    async def submit(self, items: Sequence[T]) -> list[R]:
        """The results of `items`, which may be computed in different batches.

        Cancelling the caller drops its items that have not reached a batch yet.
        """
        loop = asyncio.get_running_loop()
        arrived = self._arrived
        if arrived is None or self._task is None or self._task.done():
            arrived = self._arrived = asyncio.Event()
            # A context of its own: the task outlives the submitter whose call started it.
            self._task = loop.create_task(
                self._run(arrived), name=f"batcher-{id(self)}", context=contextvars.Context()
            )
        now, trace = time.monotonic(), tracing.current()
        entries = [_Item(item, loop.create_future(), now, trace) for item in items]
        self._queue.extend(entries)
        arrived.set()
        return list(await asyncio.gather(*(e.future for e in entries)))

    def _take(self) -> list[_Item[T]]:
        batch: list[_Item[T]] = []
        while self._queue and len(batch) < self.config.max_batch_size:
            item = self._queue.popleft()
            if not item.future.done():  # a cancelled caller's item is dropped
                batch.append(item)
        return batch

    async def _wait_for_more(self, arrived: asyncio.Event) -> None:
        """Waits up to batch_wait_timeout_s for the batch to fill (no wait at 0)."""
        deadline = time.monotonic() + self.config.batch_wait_timeout_s
        while len(self._queue) < self.config.max_batch_size:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            arrived.clear()
            try:
                await asyncio.wait_for(arrived.wait(), left)
            except TimeoutError:
                return

    async def _run(self, arrived: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                arrived.clear()
                await arrived.wait()
            await self._wait_for_more(arrived)
            batch = self._take()
            if not batch:
                continue
            start = self._busy_since = time.monotonic()
            waits = [start - item.submitted for item in batch]
            with tracing.batch_span(
                f"{self._name}.batch", [item.trace for item in batch], {"batch.size": len(batch)}
            ):
                await self._compute(loop, batch, start, waits)

    async def _compute(self, loop, batch: list[_Item[T]], start: float, waits: list[float]):
        try:
            results = await loop.run_in_executor(
                self._executor, self._fn, [item.value for item in batch]
            )
            if len(results) != len(batch):
                raise RuntimeError(f"batch of {len(batch)} gave {len(results)} results")
        except Exception as e:  # every caller of the batch hears the failure
            self._record(batch, start, waits, failed=True)
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(e)
            return
        self._record(batch, start, waits, failed=False)
        for item, result in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)

    def _record(self, batch: list, start: float, waits: list[float], *, failed: bool) -> None:
        self._finished(start)
        compute = time.monotonic() - start
        self.stats.record(len(batch), sum(waits), compute, failed=failed)
        if self._metrics is not None:
            self._metrics.record(len(batch), waits, compute, failed=failed)

    def _finished(self, start: float) -> None:
        now = time.monotonic()
        window_start, done = self._window
        self._window = (window_start, done + now - max(start, window_start))
        self._busy_since = None

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
