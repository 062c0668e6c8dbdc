"""`vitrine snapshot` / `restore` on the embedded engine (a stopped platform's store, opened in
process): the round trip keeps points, versions, tombstones and answers; a bad or cut-short
file, another model's snapshot and a store that is not empty are refused before anything is
written. (The running platform's gRPC path: tests/integration/test_serving.py.)"""

from __future__ import annotations

import base64
import gzip
import json

import numpy as np
import pytest

from cli.app import main
from operations.snapshots import (
    SnapshotError,
    check_snapshot,
    restore_snapshot,
    write_snapshot,
)
from operations.store_access import LocalStore
from shared.types import Condition, Filter
from shared.vectorstore.base import DEFAULT_INDEXED_FIELDS, Deletion, Point, PointQuery
from tests.support.tiny import write_tiny_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return write_tiny_bundle(tmp_path_factory.mktemp("tiny"))


def _open(path, bundle) -> LocalStore:
    return LocalStore(f"edge:{path}", bundle=bundle, indexed_fields=DEFAULT_INDEXED_FIELDS)


def _everything(store: LocalStore) -> tuple[dict, dict]:
    """(product id -> (payload, version, vector), product id -> tombstone version)."""
    points, dead = {}, {}
    for tombstones, into in ((False, points), (True, dead)):
        offset = None
        while True:
            page, offset = store.scroll(offset, 7, with_vectors=True, tombstones=tombstones)
            for p in page:
                into[p.product_id] = p.version if tombstones else (p.payload, p.version, p.vector)
            if offset is None:
                break
    return points, dead


def _fill(store: LocalStore, n: int = 40) -> None:
    rng = np.random.default_rng(0)
    colours = ["Red", "Blue", "Black"]
    store.upsert(
        [
            Point(
                f"sku-{i}",
                rng.normal(size=store.dim).astype(np.float32),
                {
                    "title": f"cotton shirt {i}",
                    "baseColour": colours[i % 3],
                    "thumbnail": "data:image/jpeg;base64,AAAA",
                },
                version=1000 + i,
            )
            for i in range(n)
        ]
    )
    store.delete([Deletion(f"sku-{i}", 5000 + i) for i in range(0, n, 10)])
    store.delete([Deletion("never-stored", 7000)])


@pytest.fixture
def snapshot(tmp_path, bundle):
    source = _open(tmp_path / "a", bundle)
    _fill(source)
    path = tmp_path / "store.snapshot"
    summary = write_snapshot(source, path, progress=False)
    yield source, path, summary
    source.close()


def test_round_trip_keeps_points_versions_tombstones_and_answers(snapshot, tmp_path, bundle):
    source, path, summary = snapshot
    assert (summary.points, summary.tombstones) == (36, 5)
    target = _open(tmp_path / "b", bundle)
    try:
        result = restore_snapshot(target, path, progress=False)
        assert (result.written, result.stale) == (36, 0)
        (want_points, want_dead), (got_points, got_dead) = _everything(source), _everything(target)
        assert (
            got_dead
            == want_dead
            == {f"sku-{i}": 5000 + i for i in range(0, 40, 10)} | {"never-stored": 7000}
        )
        assert got_points.keys() == want_points.keys()
        for pid, (payload, version, vector) in want_points.items():
            assert got_points[pid][:2] == (payload, version)
            np.testing.assert_array_equal(got_points[pid][2], vector)
        # The same answers: dense, filtered and lexical.
        rng = np.random.default_rng(1)
        queries = [PointQuery(rng.normal(size=source.dim).astype(np.float32), 5) for _ in range(3)]
        queries.append(
            PointQuery(queries[0].vector, 5, Filter(must=(Condition("baseColour", "Red"),)))
        )
        for store in (source, target):
            store._writes.store.optimize()
        answers = [s._writes.store.search_batch(queries) for s in (source, target)]
        assert answers[0] == answers[1] and all(answers[0])
        # A replayed event older than a restored delete stays out.
        stale = Point("sku-10", np.ones(source.dim, np.float32), {"title": "old"}, version=4000)
        assert target.upsert([stale]).stale == 1
    finally:
        target.close()


def test_a_store_that_is_not_empty_is_refused_unless_merging(snapshot, tmp_path, bundle):
    _, path, _ = snapshot
    target = _open(tmp_path / "c", bundle)
    try:
        newer = Point("sku-1", np.ones(target.dim, np.float32), {"title": "new"}, version=9999)
        target.upsert([newer])
        with pytest.raises(SnapshotError, match="holds points already"):
            restore_snapshot(target, path, progress=False)
        assert _everything(target)[0].keys() == {"sku-1"}  # nothing written
        result = restore_snapshot(target, path, merge=True, progress=False)
        assert (result.written, result.stale) == (35, 1)
        assert _everything(target)[0]["sku-1"][:2] == ({"title": "new"}, 9999)
    finally:
        target.close()


def _rewrite(path, edit) -> None:
    with gzip.open(path, "rt") as f:
        lines = [json.loads(line) for line in f]
    with gzip.open(path, "wt") as f:
        for line in edit(lines):
            f.write((line if isinstance(line, str) else json.dumps(line)) + "\n")


def _point_line(lines, **changes):
    first = next(i for i, line in enumerate(lines) if "point" in line)
    lines[first] = {**lines[first], **changes}
    return lines


NAN = base64.b64encode(np.full(16, np.nan, "<f4").tobytes()).decode()
BAD_FILES = {
    "cut short": (lambda lines: lines[:-1], "cut short"),
    "counts": (lambda lines: lines[:-2] + lines[-1:], "the end line says"),
    "after end": (lambda lines: [*lines, lines[1]], "after the end"),
    "not a snapshot": (lambda lines: [{"format": "other"}, *lines[1:]], "not a Vitrine"),
    "format version": (
        lambda lines: [{**lines[0], "format_version": 99}, *lines[1:]],
        "format version 99",
    ),
    "not json": (lambda lines: [lines[0], "{nope", *lines[1:]], "not JSON"),
    "not an object": (lambda lines: [lines[0], "[1, 2]", *lines[1:]], "not a JSON object"),
    "unknown line": (lambda lines: [lines[0], {"x": 1}, *lines[1:]], "neither a point"),
    "short vector": (lambda lines: _point_line(lines, vector="AAAAAAAAAAA="), "finite float32"),
    "nan vector": (lambda lines: _point_line(lines, vector=NAN), "finite float32"),
    "not base64": (lambda lines: _point_line(lines, vector="!!"), "not base64"),
    "bool version": (lambda lines: _point_line(lines, version=True), "whole number"),
    "negative version": (lambda lines: _point_line(lines, version=-1), "whole number"),
    "empty id": (lambda lines: _point_line(lines, point=""), "id must be"),
    "payload version": (lambda lines: _point_line(lines, payload={"version": 1}), "payload"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_file_is_refused_before_anything_is_written(snapshot, tmp_path, bundle, case):
    _, path, _ = snapshot
    edit, message = BAD_FILES[case]
    _rewrite(path, edit)
    with pytest.raises(SnapshotError, match=message):
        check_snapshot(path)
    target = _open(tmp_path / "d", bundle)
    try:
        with pytest.raises(SnapshotError, match=message):
            restore_snapshot(target, path, progress=False)
        assert _everything(target) == ({}, {})
    finally:
        target.close()


def test_not_gzip_and_too_long_lines_are_refused(tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"plain text, not gzip")
    with pytest.raises(SnapshotError, match="not a readable snapshot"):
        check_snapshot(junk)
    with gzip.open(junk, "wb") as f:
        f.write(b"[" * (17 * 2**20))
    with pytest.raises(SnapshotError, match="longer than"):
        check_snapshot(junk)


def test_another_models_snapshot_is_refused(snapshot, tmp_path, bundle):
    _, path, _ = snapshot
    _rewrite(path, lambda lines: [{**lines[0], "model_version": "other-model"}, *lines[1:]])
    target = _open(tmp_path / "e", bundle)
    try:
        with pytest.raises(SnapshotError, match="vectors of model other-model"):
            restore_snapshot(target, path, progress=False)
    finally:
        target.close()


def test_cli_snapshot_and_restore_a_stopped_store(tmp_path, bundle, capsys):
    source = _open(tmp_path / "a", bundle)
    _fill(source, 12)
    source.close()
    path = tmp_path / "backup.gz"
    common = ["--bundle", str(bundle)]
    assert main(["snapshot", str(path), "--location", f"edge:{tmp_path / 'a'}", *common]) == 0
    assert "10 points and 3 tombstones" in capsys.readouterr().out
    target = f"edge:{tmp_path / 'b'}"
    assert main(["restore", str(path), "--location", target, *common]) == 0
    assert "(10 written, 0 stale)" in capsys.readouterr().out
    assert main(["restore", str(path), "--location", target, *common]) == 1
    assert "holds points already" in capsys.readouterr().err
    path.write_bytes(b"junk")
    assert main(["restore", str(path), "--location", target, *common]) == 1
    assert "not a readable snapshot" in capsys.readouterr().err
