"""What a replica of an internal service reports about itself (vitrine.replica.v1)."""

from __future__ import annotations

from shared.serving.batching import Batcher
from shared.serving.runtime import cpu_budget
from shared.types import BatchingInfo, ReplicaInfo


def _identity() -> tuple[str, str]:
    """(application, replica id) of the Serve replica this runs in; empty outside Serve."""
    try:
        from ray import serve

        context = serve.get_replica_context()
        return context.app_name, context.replica_id.unique_id
    except Exception:  # not inside a Serve replica (a test, a benchmark's plain server)
        return "", ""


def batching_info(batcher: Batcher) -> BatchingInfo:
    stats = batcher.stats.to_dict()
    return BatchingInfo(
        max_batch_size=batcher.config.max_batch_size,
        batch_wait_timeout_s=batcher.config.batch_wait_timeout_s,
        batches=stats["batches"],
        items=stats["items"],
        mean_batch_size=stats["mean_batch_size"],
        mean_queue_wait_ms=stats["mean_queue_wait_ms"],
        mean_compute_ms=stats["mean_compute_ms"],
    )


def replica_info(
    *,
    model_version: str,
    dim: int,
    runtime: str,
    threads: int,
    batcher: Batcher | None = None,
) -> ReplicaInfo:
    application, replica_id = _identity()
    return ReplicaInfo(
        application=application,
        replica_id=replica_id,
        model_version=model_version,
        dim=dim,
        runtime=runtime,
        threads=threads,
        cpu_budget=cpu_budget() or 0.0,
        batching=batching_info(batcher) if batcher is not None else None,
    )
