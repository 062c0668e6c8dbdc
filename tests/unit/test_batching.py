"""The deployments' dynamic batcher: items that arrive while a batch computes form the next batch."""

from __future__ import annotations

import asyncio
import threading

import pytest

from shared.serving.batching import BatchConfig, Batcher


class _Gate:
    """A batch function that records each batch and blocks the first one until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.first_running = threading.Event()
        self.release = threading.Event()
        self.threads: set[str] = set()

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.threads.add(threading.current_thread().name)
        if len(self.batches) == 1:
            self.first_running.set()
            assert self.release.wait(5)
        return [i * 10 for i in items]


def _run(coro):
    return asyncio.run(coro)


def test_items_arriving_while_a_batch_computes_form_one_next_batch():
    """The Serve 2.60 @serve.batch made 32 batches of one from this traffic (ray#53096)."""
    gate = _Gate()
    batcher = Batcher(gate, config=BatchConfig(max_batch_size=64), name="t")

    async def main():
        first = asyncio.create_task(batcher.submit([0]))
        await asyncio.to_thread(gate.first_running.wait, 5)
        rest = [asyncio.create_task(batcher.submit([i])) for i in range(1, 33)]
        await asyncio.sleep(0.05)  # all 32 are queued behind the running batch
        gate.release.set()
        return await first, [await r for r in rest]

    first, rest = _run(main())
    assert first == [0] and rest == [[i * 10] for i in range(1, 33)]
    assert gate.batches == [[0], list(range(1, 33))]
    assert batcher.stats.batches == 2 and batcher.stats.items == 33
    assert batcher.stats.to_dict()["batch_sizes"] == {"<=1": 1, "<=32": 1}
    assert gate.threads == {"t_0"}  # every batch on the batcher's own thread
    batcher.close()


def test_max_batch_size_splits_a_backlog_and_configure_changes_it():
    gate = _Gate()
    batcher = Batcher(gate, config=BatchConfig(max_batch_size=4), name="t")

    async def main():
        first = asyncio.create_task(batcher.submit([0]))
        await asyncio.to_thread(gate.first_running.wait, 5)
        batcher.configure(BatchConfig(max_batch_size=3))
        many = asyncio.create_task(batcher.submit(list(range(1, 8))))
        await asyncio.sleep(0.02)
        gate.release.set()
        return await first, await many

    first, many = _run(main())
    assert many == [i * 10 for i in range(1, 8)]  # in order, across batches
    assert gate.batches == [[0], [1, 2, 3], [4, 5, 6], [7]]
    batcher.close()


def test_a_failing_batch_fails_its_callers_and_the_batcher_goes_on():
    calls = []

    def fn(items):
        calls.append(items)
        if -1 in items:
            raise ValueError("bad item")
        return items

    batcher = Batcher(fn, config=BatchConfig(max_batch_size=8), name="t")

    async def main():
        with pytest.raises(ValueError, match="bad item"):
            await batcher.submit([-1])
        return await batcher.submit([5])

    assert _run(main()) == [5]
    assert batcher.stats.failed_batches == 1
    batcher.close()


def test_a_wrong_number_of_results_is_an_error_not_a_hang():
    batcher = Batcher(lambda items: items[:-1], config=BatchConfig(), name="t")

    async def main():
        await asyncio.wait_for(batcher.submit([1, 2]), 5)

    with pytest.raises(RuntimeError, match="batch of 2 gave 1 results"):
        _run(main())
    batcher.close()


def test_a_cancelled_caller_drops_its_queued_items():
    gate = _Gate()
    batcher = Batcher(gate, config=BatchConfig(max_batch_size=64), name="t")

    async def main():
        first = asyncio.create_task(batcher.submit([0]))
        await asyncio.to_thread(gate.first_running.wait, 5)
        doomed = asyncio.create_task(batcher.submit([1, 2]))
        kept = asyncio.create_task(batcher.submit([3]))
        await asyncio.sleep(0.01)
        doomed.cancel()
        gate.release.set()
        await first
        return await kept

    assert _run(main()) == [30]
    assert gate.batches == [[0], [3]]
    batcher.close()


def test_a_wait_collects_items_that_arrive_within_it():
    seen = []
    batcher = Batcher(
        lambda items: seen.append(items) or items,
        config=BatchConfig(max_batch_size=8, batch_wait_timeout_s=0.2),
        name="t",
    )

    async def main():
        first = asyncio.create_task(batcher.submit([1]))
        await asyncio.sleep(0.02)
        second = asyncio.create_task(batcher.submit([2]))
        return await first, await second

    assert _run(main()) == ([1], [2])
    assert seen == [[1, 2]]
    batcher.close()


def test_config_is_validated():
    with pytest.raises(ValueError):
        BatchConfig(max_batch_size=0)
    with pytest.raises(ValueError):
        BatchConfig(max_batch_size=8, unknown=1)


def test_busy_fraction_counts_compute_time_per_window():
    import time

    batcher = Batcher(lambda items: time.sleep(0.2) or items, config=BatchConfig(), name="t")

    async def main():
        assert batcher.busy_fraction() == 0.0  # nothing ran
        await asyncio.sleep(0.1)
        await batcher.submit([1])  # 0.2 s of compute in a window of about 0.3 s
        first = batcher.busy_fraction()
        await asyncio.sleep(0.2)
        idle = batcher.busy_fraction()
        task = asyncio.create_task(batcher.submit([2]))
        await asyncio.sleep(0.1)
        running = batcher.busy_fraction()  # counts the running batch's part so far
        assert batcher.queued() == 0
        await task
        return first, idle, running, batcher.busy_fraction()

    first, idle, running, after = _run(main())
    assert 0.3 < first < 0.9 and idle == 0.0 and running > 0.5 and after > 0.5
    batcher.close()


def test_the_autoscaling_policy_asks_for_replicas_by_busy_share_and_backlog():
    from types import SimpleNamespace

    from shared.serving.autoscaling import BACKLOG, BUSY, BatchUtilizationPolicy

    policy = BatchUtilizationPolicy(target_busy=0.5)

    def decide(busy, backlog=None, target=3):
        metrics = {BUSY: busy, BACKLOG: backlog or {}} if busy is not None else None
        ctx = SimpleNamespace(aggregated_metrics=metrics, target_num_replicas=target)
        return policy(ctx)[0]

    assert decide({"a": 0.9, "b": 0.8}) == 4  # 1.7 replicas' worth at 50% each
    assert decide({"a": 0.1, "b": 0.1}) == 1
    assert decide({"a": 1.0}, {"a": 2.0}) == 6  # two full batches waiting on a busy replica
    assert decide(None, target=3) == 3  # no report yet
    with pytest.raises(ValueError):
        BatchUtilizationPolicy(target_busy=0)
