"""`vitrine snapshot` / `vitrine restore`: a backup of the vector store as one file, and its
restore into an empty (or, merging, a live) store.

Neither embedded engine can write a snapshot here (Qdrant Edge only restores one, qdrant-client's
local mode raises), so a snapshot is an export through scroll, engine-neutral: every point with
its vector, payload and version, and every tombstone (a deleted product's version), read a page
at a time from the store's `ScrollPoints` (the running platform) or from the engine itself (a
stopped one, `--location`). A restore writes them back through the same versioned writes the
ingestion worker uses, so the lexical index is rebuilt from the titles and a replayed catalog
event older than a restored point stays stale.

Pages read while writes land are each consistent; the whole is not a point-in-time copy. A
product written during the export is in the snapshot at its old or its new version, and
replaying the catalog topic from before the snapshot brings the store up to date (versions keep
the replay from undoing newer writes). For an exact copy, stop ingestion while it runs.

The file: gzip-compressed JSON lines, never pickles. A header line (format, model version,
dimension, when), one line per point (`{"point": id, "version": v, "vector": base64 float32
little-endian, "payload": {...}}`) or tombstone (`{"tombstone": id, "version": v}`), and an end
line with the counts, so a truncated file is refused. A restore reads the whole file once to
check it before it writes anything.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from shared.vectorstore.base import Deletion, Point, WriteResult

FORMAT = "vitrine-store-snapshot"
FORMAT_VERSION = 1
PAGE = 256  # points a scroll page, and a restore write
MAX_LINE_BYTES = 16 * 2**20  # a point's line: vector, payload, thumbnail
MAX_ID_CHARS = 1024
_F32_LE = np.dtype("<f4")


class SnapshotError(RuntimeError):
    """A snapshot that cannot be written or restored; the message says why."""


class StoreAccess(Protocol):
    """What a snapshot needs of a store: the running platform's (RemoteStore) or a stopped
    engine's (LocalStore)."""

    model_version: str
    dim: int
    source: str

    def scroll(
        self, offset: str | None, limit: int, *, with_vectors: bool, tombstones: bool
    ) -> tuple[list[Point], str | None]: ...

    def upsert(self, points: list[Point]) -> WriteResult: ...

    def delete(self, deletions: list[Deletion]) -> WriteResult: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Summary:
    path: Path
    model_version: str
    points: int
    tombstones: int
    written: int = 0  # restore: points written (not stale)
    stale: int = 0  # restore: points and deletes the target already held newer


def _scroll_all(
    store: StoreAccess, *, tombstones: bool, bar: Callable[[int], Any]
) -> Iterator[Point]:
    offset: str | None = None
    while True:
        page, offset = store.scroll(
            offset, PAGE, with_vectors=not tombstones, tombstones=tombstones
        )
        yield from page
        bar(len(page))
        if offset is None:
            return


def _point_line(p: Point) -> dict:
    vector = base64.b64encode(np.ascontiguousarray(p.vector, dtype=_F32_LE).tobytes()).decode()
    return {"point": p.product_id, "version": p.version, "vector": vector, "payload": p.payload}


def write_snapshot(store: StoreAccess, path: Path, *, progress: bool = True) -> Summary:
    """Exports every point and tombstone of `store` into `path` (written beside it, then moved
    into place: a failed export leaves no file at `path`)."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_version": store.model_version,
        "dim": store.dim,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "source": store.source,
    }
    counts = {"points": 0, "tombstones": 0}
    try:
        with (
            gzip.open(partial, "wt", encoding="utf-8") as out,
            tqdm(desc="snapshot", unit="point", disable=not progress) as bar,
        ):
            out.write(json.dumps(header) + "\n")
            for p in _scroll_all(store, tombstones=False, bar=bar.update):
                out.write(json.dumps(_point_line(p)) + "\n")
                counts["points"] += 1
            for p in _scroll_all(store, tombstones=True, bar=bar.update):
                out.write(json.dumps({"tombstone": p.product_id, "version": p.version}) + "\n")
                counts["tombstones"] += 1
            out.write(json.dumps({"end": counts}) + "\n")
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return Summary(path, store.model_version, counts["points"], counts["tombstones"])


def _lines(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, parsed object) of each line; a line that is too long, not JSON or not an
    object is a SnapshotError."""
    try:
        with gzip.open(path, "rb") as f:
            number = 0
            while line := f.readline(MAX_LINE_BYTES + 1):
                number += 1
                if len(line) > MAX_LINE_BYTES:
                    raise SnapshotError(f"line {number} is longer than {MAX_LINE_BYTES} bytes")
                try:
                    record = json.loads(line)
                except (ValueError, RecursionError) as e:
                    raise SnapshotError(f"line {number} is not JSON: {e}") from None
                if not isinstance(record, dict):
                    raise SnapshotError(f"line {number} is not a JSON object")
                yield number, record
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise SnapshotError(f"{path}: not a readable snapshot: {e}") from None


def _header(number: int, record: dict) -> dict:
    if number != 1 or record.get("format") != FORMAT:
        raise SnapshotError(f"not a Vitrine store snapshot (its first line is not a {FORMAT})")
    if record.get("format_version") != FORMAT_VERSION:
        raise SnapshotError(
            f"snapshot format version {record.get('format_version')!r}; this Vitrine reads "
            f"{FORMAT_VERSION}"
        )
    dim, model = record.get("dim"), record.get("model_version")
    if not isinstance(dim, int) or isinstance(dim, bool) or not 1 <= dim <= 65536:
        raise SnapshotError(f"the header's dim {dim!r} is not a vector dimension")
    if not isinstance(model, str) or not model:
        raise SnapshotError("the header names no model version")
    return record


def _id_and_version(number: int, record: dict, key: str) -> tuple[str, int]:
    pid, version = record.get(key), record.get("version")
    if not isinstance(pid, str) or not pid or len(pid) > MAX_ID_CHARS:
        raise SnapshotError(f"line {number}: {key} id must be a string of 1..{MAX_ID_CHARS}")
    if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version < 2**64:
        raise SnapshotError(f"line {number}: version must be a whole number >= 0")
    return pid, version


def _point(number: int, record: dict, dim: int) -> Point:
    pid, version = _id_and_version(number, record, "point")
    payload = record.get("payload")
    if not isinstance(payload, dict) or {"product_id", "version"} & payload.keys():
        raise SnapshotError(f"line {number}: payload must be an object without product_id/version")
    try:
        vector = np.frombuffer(base64.b64decode(record.get("vector", ""), validate=True), _F32_LE)
    except (ValueError, TypeError):
        raise SnapshotError(f"line {number}: vector is not base64 float32 values") from None
    if vector.shape != (dim,) or not np.all(np.isfinite(vector)):
        raise SnapshotError(f"line {number}: vector must be {dim} finite float32 values")
    return Point(pid, vector.copy(), payload, version=version)


def read_snapshot(path: Path) -> Iterator[dict | Point | Deletion]:
    """The header (a dict), then every point and tombstone (as the Deletion that restores it),
    each checked; raises SnapshotError at the first bad line, or at the end when the end line
    is missing (a truncated file) or its counts disagree."""
    header: dict | None = None
    counts = {"points": 0, "tombstones": 0}
    ended = False
    for number, record in _lines(Path(path)):
        if header is None:
            header = _header(number, record)
            yield header
        elif ended:
            raise SnapshotError(f"line {number}: lines after the end line")
        elif "end" in record:
            if record["end"] != counts:
                raise SnapshotError(f"the end line says {record['end']}, the file holds {counts}")
            ended = True
        elif "point" in record:
            counts["points"] += 1
            yield _point(number, record, header["dim"])
        elif "tombstone" in record:
            counts["tombstones"] += 1
            yield Deletion(*_id_and_version(number, record, "tombstone"))
        else:
            raise SnapshotError(f"line {number}: neither a point, a tombstone nor the end")
    if header is None:
        raise SnapshotError(f"{path}: an empty file")
    if not ended:
        raise SnapshotError(f"{path}: no end line: the snapshot was cut short")


def check_snapshot(path: Path) -> Summary:
    """Reads the whole snapshot, checking every line (SnapshotError at the first bad one)."""
    header, points, tombstones = {}, 0, 0
    for item in read_snapshot(path):
        if isinstance(item, dict):
            header = item
        elif isinstance(item, Point):
            points += 1
        else:
            tombstones += 1
    return Summary(Path(path), header["model_version"], points, tombstones)


def _is_empty(store: StoreAccess) -> bool:
    return not any(
        store.scroll(None, 1, with_vectors=False, tombstones=t)[0] for t in (False, True)
    )


def _write_all(store: StoreAccess, path: Path, done: Callable[[int], Any]) -> tuple[int, int]:
    """Writes the snapshot's points (upserts) and tombstones (versioned deletes) a page at a
    time, in the file's order; (points written, writes the store held newer)."""
    written = stale = 0
    points: list[Point] = []
    deletions: list[Deletion] = []

    def flush() -> None:
        nonlocal written, stale, points, deletions
        if points:
            result = store.upsert(points)
            written, stale = written + result.count, stale + result.stale
        if deletions:
            stale += store.delete(deletions).stale
        done(len(points) + len(deletions))
        points, deletions = [], []

    for item in read_snapshot(path):
        if isinstance(item, Point):
            points.append(item)
        elif isinstance(item, Deletion):
            deletions.append(item)
        if len(points) + len(deletions) >= PAGE:
            flush()
    flush()
    return written, stale


def restore_snapshot(
    store: StoreAccess, path: Path, *, merge: bool = False, progress: bool = True
) -> Summary:
    """Writes a snapshot's points and tombstones into `store`, after checking the whole file
    and that it holds vectors of the store's model.

    Args:
        merge: restore into a store that holds points already (versions decide, product by
            product: the newer of the stored and the snapshot's write stays). Without it a
            store that is not empty is refused.

    Raises:
        SnapshotError: a bad or cut-short file, another model's vectors, or a store that is
            not empty (without merge). Nothing has been written then.
    """
    checked = check_snapshot(path)
    if checked.model_version != store.model_version:
        raise SnapshotError(
            f"the snapshot holds vectors of model {checked.model_version}; the store serves "
            f"{store.model_version} (vectors of two models never share a collection)"
        )
    if not merge and not _is_empty(store):
        raise SnapshotError(
            "the store holds points already: restore into an empty store, or pass --merge "
            "(the newer version of each product wins)"
        )
    total = checked.points + checked.tombstones
    with tqdm(total=total, desc="restore", unit="point", disable=not progress) as bar:
        written, stale = _write_all(store, path, bar.update)
    return Summary(
        Path(path), checked.model_version, checked.points, checked.tombstones, written, stale
    )
