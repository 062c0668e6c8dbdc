"""Client-side coalescing: concurrent one-item calls share RPCs without one caller's mistake or
deadline reaching the others."""

from __future__ import annotations

import asyncio

import pytest

from shared.serving.coalescing import Coalescer
from shared.serving.errors import DependencyError, RequestError


async def _settle() -> None:
    """Lets every ready task run until each waits (a call's task needs a few loop turns)."""
    for _ in range(10):
        await asyncio.sleep(0)


class _Service:
    """Records each call's items; the first call waits until released."""

    def __init__(self, fail_on=None, error=RequestError) -> None:
        self.calls: list[list] = []
        self.timeouts: list[float | None] = []
        self.release = asyncio.Event()
        self.fail_on, self.error = fail_on, error

    async def send(self, items: list, timeout_s: float | None) -> list:
        self.calls.append(list(items))
        self.timeouts.append(timeout_s)
        if len(self.calls) == 1:
            await self.release.wait()
        if self.fail_on is not None and self.fail_on in items:
            raise self.error(f"bad item {self.fail_on}")
        return [i * 10 for i in items]


def test_a_lone_call_goes_at_once_and_the_rest_share_the_next_call():
    async def main():
        service = _Service()
        coalescer = Coalescer(service.send, max_items=64, max_in_flight=1)
        first = asyncio.create_task(coalescer.call(1))
        await _settle()
        assert service.calls == [[1]]  # sent without waiting for company
        rest = [asyncio.create_task(coalescer.call(i)) for i in range(2, 10)]
        await asyncio.sleep(0.01)
        assert service.calls == [[1]]  # queued while the one call is out
        service.release.set()
        assert await first == 10
        assert [await r for r in rest] == [i * 10 for i in range(2, 10)]
        assert service.calls == [[1], list(range(2, 10))]
        assert (coalescer.calls, coalescer.items) == (2, 9)

    asyncio.run(main())


def test_max_items_and_max_weight_split_the_backlog():
    async def main():
        service = _Service()
        coalescer = Coalescer(
            service.send, max_items=3, max_in_flight=1, weigh=lambda i: i, max_weight=10
        )
        first = asyncio.create_task(coalescer.call(1))
        await _settle()
        rest = [asyncio.create_task(coalescer.call(i)) for i in (2, 3, 4, 5, 6, 20)]
        await _settle()
        service.release.set()
        await asyncio.gather(first, *rest)
        # By count: [2, 3, 4]; by weight: 5 + 6 = 11 > 10; 20 alone (heavier than the limit).
        assert service.calls == [[1], [2, 3, 4], [5], [6], [20]]

    asyncio.run(main())


def test_a_callers_mistake_fails_only_its_own_item():
    async def main():
        service = _Service(fail_on=4)
        coalescer = Coalescer(service.send, max_items=64, max_in_flight=1)
        first = asyncio.create_task(coalescer.call(1))
        await _settle()
        rest = {i: asyncio.create_task(coalescer.call(i)) for i in (3, 4, 5)}
        await _settle()
        service.release.set()
        assert await first == 10
        assert await rest[3] == 30 and await rest[5] == 50
        with pytest.raises(RequestError, match="bad item 4"):
            await rest[4]
        # The shared call was refused, then each item went alone.
        assert service.calls[1] == [3, 4, 5] and sorted(service.calls[2:]) == [[3], [4], [5]]

    asyncio.run(main())


def test_a_dependency_failure_reaches_every_caller_of_the_call():
    async def main():
        service = _Service(fail_on=2, error=DependencyError)
        coalescer = Coalescer(service.send, max_items=64, max_in_flight=1)
        first = asyncio.create_task(coalescer.call(1))
        await _settle()
        rest = [asyncio.create_task(coalescer.call(i)) for i in (2, 3)]
        await _settle()
        service.release.set()
        await first
        for task in rest:
            with pytest.raises(DependencyError):
                await task
        assert len(service.calls) == 2  # no retry of a dependency failure

    asyncio.run(main())


def test_a_cancelled_caller_leaves_the_queue_and_deadlines_bound_the_call():
    async def main():
        service = _Service()
        coalescer = Coalescer(service.send, max_items=64, max_in_flight=1)
        first = asyncio.create_task(coalescer.call(1, timeout_s=5.0))
        await _settle()
        doomed = asyncio.create_task(coalescer.call(2, timeout_s=1.0))
        kept = asyncio.create_task(coalescer.call(3, timeout_s=2.0))
        await _settle()
        doomed.cancel()
        service.release.set()
        await first
        assert await kept == 30
        assert service.calls == [[1], [3]]
        assert 4.0 < service.timeouts[0] <= 5.0 and 1.0 < service.timeouts[1] <= 2.0

    asyncio.run(main())


def test_a_call_cancelled_under_its_callers_is_a_dependency_error():
    """A channel closed under a shared call (its replica replaced) must reach each caller as
    UNAVAILABLE, not as INTERNAL."""

    async def main():
        async def send(items, timeout_s):
            raise asyncio.CancelledError

        coalescer = Coalescer(send, max_items=8)
        with pytest.raises(DependencyError, match="replica went away"):
            await coalescer.call(1)

    asyncio.run(main())
