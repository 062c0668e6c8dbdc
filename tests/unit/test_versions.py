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


def test_a_payload_update_changes_title_and_attributes_and_keeps_the_vector(writes):
    from shared.types import SearchMode
    from shared.vectorstore.base import PointQuery
    from shared.vectorstore.versions import PayloadUpdate

    point = Point("p1", np.ones(DIM, np.float32), {"title": "red shirt", "price": "10"}, version=5)
    writes.upsert([point])
    result = writes.update([PayloadUpdate("p1", "navy polo", {"price": "8", "stock": "0"}, 6)])
    assert (result.count, result.stale) == (1, 0)
    (got,) = writes.store.retrieve(["p1"], with_vectors=True)
    assert got.payload == {"title": "navy polo", "price": "8", "stock": "0", VERSION_FIELD: 6}
    np.testing.assert_allclose(got.vector, np.ones(DIM) / np.sqrt(DIM), rtol=1e-5)
    # The lexical index follows the new title.
    words = writes.store.query(PointQuery(None, 5, text="polo", mode=SearchMode.LEXICAL))
    assert [h.product_id for h in words] == ["p1"]
    assert writes.store.query(PointQuery(None, 5, text="red", mode=SearchMode.LEXICAL)) == []


def test_stale_or_unknown_payload_updates_are_skipped(writes):
    from shared.vectorstore.versions import PayloadUpdate

    writes.upsert([_point("p1", 10, "new")])
    result = writes.update(
        [PayloadUpdate("p1", "older", {}, 9), PayloadUpdate("ghost", "x", {}, 50)]
    )
    assert (result.count, result.stale) == (0, 2)
    assert _title(writes, "p1") == "new" and _title(writes, "ghost") is None
    writes.delete([Deletion("p1", 20)])
    writes.update([PayloadUpdate("p1", "after delete", {}, 15)])
    assert _title(writes, "p1") is None  # an update never brings a product back


def test_payload_updates_apply_in_version_order(writes):
    from shared.vectorstore.versions import PayloadUpdate

    writes.upsert([_point("p1", 1, "first")])
    result = writes.update(
        [
            PayloadUpdate("p1", None, {"colour": "navy"}, 3),
            PayloadUpdate("p1", "second", {"colour": "red", "size": "M"}, 2),
        ]
    )
    assert result.count == 2
    (got,) = writes.store.retrieve(["p1"])
    assert got.payload["title"] == "second" and got.payload["colour"] == "navy"
    assert got.payload["size"] == "M" and got.payload[VERSION_FIELD] == 3
