"""Versioned writes: an older catalog event never overwrites a newer one, and a delete is not
undone by a stale upsert.

Every event carries a version (its explicit `version`, else its event time in microseconds, else
its Kafka record's timestamp: `services.ingestion.validation.event_version`). The store keeps it:

- with each point, in the payload field `version`;
- for each deleted product, in a tombstone: a point of a one-dimensional companion collection
  (`<collection>-tombstones`, in the same engine, so it is as durable as the points).

An upsert is written only when its version is at least the stored point's and the tombstone's;
a delete only when its version is at least the stored point's, and it then leaves a tombstone. A
newer upsert removes the product's tombstone. Equal versions are a replay of the same event and
are written again (idempotent). Version 0 is unversioned: written (or deleted) unconditionally,
as before versions existed, and such a delete leaves no tombstone.

Why this holds when two ingestion workers race over a rebalance: both write through the one
vector-store replica that owns the collection (the embedded engines lock their folder), and the
check and the write of each call happen under one lock here, so whichever of two writes of a
product comes second sees the first. With a Qdrant server and several stateless vector-store
replicas the check and the write are two calls to the server, and two replicas writing the same
product at the same instant could still interleave (docs/RELIABILITY.md says so).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from shared.vectorstore.base import (
    VERSION_FIELD,
    Deletion,
    Point,
    StoredPoint,
    VectorStore,
    WriteResult,
)

TOMBSTONE_SUFFIX = "-tombstones"
_TOMBSTONE_VECTOR = np.ones(1, dtype=np.float32)


@dataclass(frozen=True)
class PayloadUpdate:
    """A stored product's new title (None keeps it) and attributes (merged over the stored
    ones); the vector and the platform's fields (image, thumbnail) stay."""

    product_id: str
    title: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    version: int = 0  # 0 is unversioned (always applied)


def _version(payload: dict) -> int:
    value = payload.get(VERSION_FIELD, 0)
    return int(value) if isinstance(value, int | float) else 0


def versioned_point(stored: StoredPoint) -> Point:
    """A stored point as the write that would store it again: its version out of the payload
    (an empty vector when it was read without one)."""
    payload = {k: v for k, v in stored.payload.items() if k != VERSION_FIELD}
    vector = stored.vector if stored.vector is not None else np.zeros(0, dtype=np.float32)
    return Point(stored.product_id, vector, payload, version=_version(stored.payload))


def _by_version(update: PayloadUpdate) -> int:
    return update.version


class VersionedWrites:
    """Upserts and deletes through the version check above.

    Args:
        store: the product collection.
        tombstones: a one-dimensional collection for the versions of deleted products.
    """

    def __init__(self, store: VectorStore, tombstones: VectorStore) -> None:
        if tombstones.dim != 1:
            raise ValueError("the tombstone collection must be one-dimensional")
        self.store, self.tombstones = store, tombstones
        self._lock = threading.Lock()

    def _known(self, product_ids: Sequence[str]) -> tuple[dict[str, int], dict[str, int]]:
        """(stored point versions, tombstone versions) of the products that have them."""
        ids = list(dict.fromkeys(product_ids))
        if not ids:
            return {}, {}
        points = {p.product_id: _version(p.payload) for p in self.store.retrieve(ids)}
        dead = {p.product_id: _version(p.payload) for p in self.tombstones.retrieve(ids)}
        return points, dead

    def upsert(self, points: Sequence[Point]) -> WriteResult:
        """Writes the points that are not stale; of a product's points in one call the highest
        version wins (the last among equals; an unversioned one always)."""
        latest: dict[str, Point] = {}
        for p in points:
            current = latest.get(p.product_id)
            if current is None or p.version >= current.version or not p.version:
                latest.pop(p.product_id, None)
                latest[p.product_id] = p
        with self._lock:
            stored, dead = self._known([p.product_id for p in latest.values() if p.version])
            fresh = [
                p
                for p in latest.values()
                if not p.version
                or p.version >= max(stored.get(p.product_id, 0), dead.get(p.product_id, 0))
            ]
            self.store.upsert(fresh)
            revived = [p.product_id for p in fresh if p.product_id in dead]
            if revived:
                self.tombstones.delete(revived)
        return WriteResult(len(fresh), len(points) - len(fresh))

    def delete(self, deletions: Sequence[Deletion]) -> WriteResult:
        """Deletes the products whose delete is not stale, leaving tombstones for versioned ones."""
        latest: dict[str, int] = {}
        for d in deletions:
            latest[d.product_id] = max(latest.get(d.product_id, 0), d.version) if d.version else 0
        with self._lock:
            stored, dead = self._known([pid for pid, v in latest.items() if v])
            applied = [pid for pid, v in latest.items() if not v or v >= stored.get(pid, 0)]
            self.store.delete(applied)
            marks = [
                Point(pid, _TOMBSTONE_VECTOR, {}, version=max(v, dead.get(pid, 0)))
                for pid, v in latest.items()
                if v and pid in applied
            ]
            self.tombstones.upsert(marks)
        return WriteResult(len(applied), len(deletions) - len(applied))

    def update(self, updates: Sequence[PayloadUpdate]) -> WriteResult:
        """Applies payload updates in version order, each only when not stale: a product the
        store does not hold, or holds at a newer version (or deleted later), skips it. The
        point is written again with its stored vector (the lexical index follows the title)."""
        with self._lock:
            by_product: dict[str, list[PayloadUpdate]] = {}
            for u in sorted(updates, key=_by_version):
                by_product.setdefault(u.product_id, []).append(u)
            ids = list(by_product)
            stored = {p.product_id: p for p in self.store.retrieve(ids, with_vectors=True)}
            dead = {p.product_id: _version(p.payload) for p in self.tombstones.retrieve(ids)}
            points, applied = [], 0
            for pid in ids:
                point = stored.get(pid)
                if point is None or point.vector is None:
                    continue
                payload = dict(point.payload)
                version = _version(payload)
                changed = False
                for u in by_product[pid]:
                    if u.version and u.version < max(version, dead.get(pid, 0)):
                        continue
                    if u.title is not None:
                        payload["title"] = u.title
                    payload.update(u.attributes)
                    version = u.version or version
                    applied, changed = applied + 1, True
                if changed:
                    payload.pop(VERSION_FIELD, None)
                    points.append(Point(pid, point.vector, payload, version=version))
            self.store.upsert(points)
        return WriteResult(applied, len(updates) - applied)

    def close(self) -> None:
        """Closes both collections (and their engines)."""
        self.tombstones.close()
        self.store.close()
