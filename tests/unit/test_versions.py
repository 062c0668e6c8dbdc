"""Versioned writes (shared.vectorstore.versions) against both real Qdrant engines: an older
event never overwrites a newer one, a stale upsert never brings a deleted product back."""

from __future__ import annotations

import numpy as np
import pytest

from shared.vectorstore import Deletion, Point, open_versioned_store
from shared.vectorstore.base import VERSION_FIELD

DIM = 8


@pytest.fixture(params=["edge", "local"])
def writes(request, tmp_path):
    location = f"edge:{tmp_path}" if request.param == "edge" else f"local:{tmp_path}"
    w = open_versioned_store(location, model_version="m1", dim=DIM, indexed_fields={})
    yield w
    w.close()


def _point(pid: str, version: int, title: str, seed: int = 0) -> Point:
    vector = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return Point(pid, vector, {"title": title}, version=version)


def _title(writes, pid: str) -> str | None:
    found = writes.store.retrieve([pid])
    return found[0].payload["title"] if found else None


def test_an_older_upsert_does_not_overwrite_a_newer_one(writes):
    assert writes.upsert([_point("p", 20, "new")]).count == 1
    result = writes.upsert([_point("p", 10, "old")])
    assert (result.count, result.stale) == (0, 1)
    assert _title(writes, "p") == "new"
    assert writes.store.retrieve(["p"])[0].payload[VERSION_FIELD] == 20


def test_a_newer_upsert_and_a_replay_of_the_same_version_are_written(writes):
    writes.upsert([_point("p", 10, "v10")])
    writes.upsert([_point("p", 11, "v11")])
    assert _title(writes, "p") == "v11"
    assert writes.upsert([_point("p", 11, "v11 again")]).count == 1  # a replay
    assert _title(writes, "p") == "v11 again"


def test_a_stale_upsert_does_not_resurrect_a_delete(writes):
    writes.upsert([_point("p", 10, "v10")])
    assert writes.delete([Deletion("p", 20)]).count == 1
    assert _title(writes, "p") is None
    result = writes.upsert([_point("p", 15, "replayed v15")])
    assert (result.count, result.stale) == (0, 1)
    assert _title(writes, "p") is None
    assert writes.store.count() == 0
    # A newer upsert brings it back and clears the tombstone.
    writes.upsert([_point("p", 30, "v30")])
    assert _title(writes, "p") == "v30"
    assert writes.tombstones.count() == 0


def test_an_older_delete_does_not_remove_a_newer_upsert(writes):
    writes.upsert([_point("p", 20, "v20")])
    result = writes.delete([Deletion("p", 10)])
    assert (result.count, result.stale) == (0, 1)
    assert _title(writes, "p") == "v20"


def test_a_delete_of_an_unknown_product_still_blocks_older_upserts(writes):
    # The delete arrives first (the upsert's partition moved during a rebalance).
    writes.delete([Deletion("p", 20)])
    assert writes.upsert([_point("p", 10, "v10")]).stale == 1
    assert writes.store.count() == 0


def test_tombstones_keep_the_highest_delete_version(writes):
    writes.delete([Deletion("p", 20)])
    writes.delete([Deletion("p", 5)])
    assert writes.upsert([_point("p", 15, "v15")]).stale == 1


def test_unversioned_writes_always_apply(writes):
    writes.upsert([_point("p", 20, "v20")])
    writes.upsert([_point("p", 0, "unversioned")])
    assert _title(writes, "p") == "unversioned"
    writes.delete([Deletion("p")])
    assert writes.store.count() == 0
    assert writes.tombstones.count() == 0  # an unversioned delete remembers nothing


def test_within_one_call_the_highest_version_of_a_product_wins(writes):
    writes.upsert([_point("p", 20, "v20")])
    result = writes.upsert([_point("p", 30, "v30"), _point("q", 1, "q1"), _point("p", 25, "v25")])
    assert _title(writes, "p") == "v30"
    assert (result.count, result.stale) == (2, 1)
