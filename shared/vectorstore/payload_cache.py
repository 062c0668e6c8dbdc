"""Stored payloads by point id, kept in the store's process for search results.

Qdrant Edge reads a hit's payload from its payload storage at a fixed cost of about 13 us a hit
on this machine, whatever its size: a batch of 32 top-10 searches took 0.36 ms without payloads
and 4.5 ms when asked for only the product id (`bench/edge_payload.py`; docs/BENCHMARKS.md,
"Where the time went"). The store therefore searches without payloads and reads them here,
asking the engine only for the points it has not seen.

Writes go through the store that owns the cache (one process owns an Edge folder), which drops
the points it writes. A read that raced a write (it read the engine before the write and would
cache what it read after) is not cached: every write bumps a generation, and a fill is kept
only when the generation did not move while it read.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

DEFAULT_POINTS = 20_000  # a payload with a 128-px thumbnail is about 3.5 KB: about 70 MB


class PayloadCache:
    """The payloads of up to `points` points, the least recently used dropped first; 0 keeps
    nothing. Point ids are keys by their text: the engine gives UUIDs, `point_id` strings."""

    def __init__(self, points: int = DEFAULT_POINTS) -> None:
        if points < 0:
            raise ValueError(f"payload cache size must be >= 0, not {points}")
        self.points = points
        self._entries: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._generation = 0

    def generation(self) -> int:
        """Read before reading the engine; pass to `fill`."""
        return self._generation

    def get(self, ids: Sequence[Any]) -> list[dict[str, Any] | None]:
        """The cached payload of each id, None where it is not cached."""
        keys = [str(i) for i in ids]
        with self._lock:
            found = [self._entries.get(k) for k in keys]
            for k, payload in zip(keys, found, strict=True):
                if payload is not None:
                    self._entries.move_to_end(k)
        return found

    def fill(self, items: Iterable[tuple[Any, dict[str, Any]]], generation: int) -> bool:
        """Caches (id, payload) pairs read from the engine since `generation` was read; nothing
        when a write came in between (the pairs may predate it). True when cached."""
        if not self.points:
            return False
        with self._lock:
            if generation != self._generation:
                return False
            for i, payload in items:
                self._entries[str(i)] = payload
                self._entries.move_to_end(str(i))
            while len(self._entries) > self.points:
                self._entries.popitem(last=False)
        return True

    def written(self, ids: Iterable[Any]) -> None:
        """Points were written (upserted, deleted): drops them."""
        with self._lock:
            self._generation += 1
            for i in ids:
                self._entries.pop(str(i), None)

    def __len__(self) -> int:
        return len(self._entries)
