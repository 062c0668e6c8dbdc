"""`python -m tests.support.worker_held_at_commit MARKER`: the ingestion worker
(`services.ingestion.app`), held at its first offset commit so a test can kill it between the
store write and the commit.

The first `IngestionWorker._commit` writes MARKER (the batch's store write was acknowledged, its
offsets are not committed) and blocks for good; the test then SIGKILLs the process.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from services.ingestion import app


def hold_at_commit(marker: Path) -> None:
    """Replaces IngestionWorker._commit with one that writes `marker` and never returns."""

    def commit(worker) -> None:
        partial = marker.with_name(marker.name + ".partial")
        partial.write_text("store written, offsets not committed\n")
        partial.rename(marker)  # the test sees the whole marker or none
        threading.Event().wait()

    app.IngestionWorker._commit = commit


if __name__ == "__main__":
    hold_at_commit(Path(sys.argv[1]))
    app.main()
