"""`vitrine ingest` that freezes itself (SIGSTOP) just before its first store write, as a worker
does in a long GC pause or a frozen VM: its session times out and the group gives its partitions
to another member, then SIGCONT lets it finish the write it had in hand. For
test_ingestion.py's race over a rebalance."""

from __future__ import annotations

import os
import signal

from services.ingestion import app

_make_processor = app.grpc_processor


def _stalling_processor(settings):
    processor = _make_processor(settings)
    write, stalled = processor._upsert, []

    def upsert(points):
        if not stalled:
            stalled.append(True)
            print(f"stalling before writing {[p.product_id for p in points]}", flush=True)
            os.kill(os.getpid(), signal.SIGSTOP)
        return write(points)

    processor._upsert = upsert
    return processor


if __name__ == "__main__":
    app.grpc_processor = _stalling_processor
    app.main()
