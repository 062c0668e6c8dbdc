"""Synchronous calls into the async clients, for callers on plain threads (the ingestion worker
and `vitrine index`, the CLI, bench).

One event loop runs on a daemon thread; `run` hands it a coroutine and blocks the calling thread
until it is done, so several threads may call at once (the worker keeps two encoder calls out).
A client's channels belong to the loop of its first call: a synchronous caller makes all its
calls of one client through the same LoopThread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from shared.observability import tracing

T = TypeVar("T")

_shared: LoopThread | None = None
_shared_lock = threading.Lock()


class LoopThread:
    """An event loop running on a daemon thread of its own."""

    def __init__(self, name: str = "vitrine-clients") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """The coroutine's result (or its exception), run on the loop's thread.

        Raises:
            RuntimeError: called from the loop's own thread (it would wait for itself).
        """
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("LoopThread.run called from its own loop")
        trace = tracing.current()  # the caller's span, the parent of the calls the coroutine makes
        if trace is not None:
            coroutine = _attached(trace, coroutine)
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def close(self) -> None:
        """Stops the loop and its thread."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


async def _attached(trace: Any, coroutine: Coroutine[Any, Any, T]) -> T:
    with tracing.attached(trace):
        return await coroutine


def shared_loop() -> LoopThread:
    """The process's one LoopThread, started on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = LoopThread()
        return _shared
