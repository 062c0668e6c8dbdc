"""What a replica of an internal service reports about itself (vitrine.replica.v1)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from shared.api.vitrine.replica.v1 import replica_pb2 as replica_pb
from shared.conversions import replica as replica_conv
from shared.logs import serve_logger
from shared.models import encoders
from shared.observability.metrics import BatchMetrics, make
from shared.serving.autoscaling import batcher_stats
from shared.serving.batching import BatchConfig, Batcher
from shared.serving.errors import grpc_method
from shared.serving.runtime import (
    cpu_budget,
    describe_runtime,
    resolve_bundle,
    resolve_device,
    set_torch_threads,
)
from shared.types import BatchingInfo, ReplicaInfo

log = serve_logger(__name__)


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


async def _report_up() -> None:
    """Sets the replica's `vitrine_replica_up` every second (Ray drops a gauge not set again)."""
    up = make("vitrine_replica_up")
    while True:
        up.set(1.0)
        await asyncio.sleep(1.0)


class BatchedModelReplica:
    """What every batched model replica (the encoders, fusion) shares: its batching tuned from the
    Serve config's `user_config` at run time, and what it reports about itself (`info` through a
    handle, `GetReplicaInfo` over gRPC, batcher stats for autoscaling).

    A subclass sets `model_version`, `dim`, `_model` (the loaded encoder or fusion module),
    `_threads` and `_batcher` in its constructor.
    """

    model_version: str
    dim: int
    _model: Any
    _threads: int
    _batcher: Batcher

    def _start(
        self,
        part: str,
        *,
        bundle_path: str,
        device: str,
        runtime: str,
        torch_threads: int,
        forward: Callable[[list], Any],
    ) -> None:
        """Loads `part` ("image", "text", "fusion") of the bundle with its threads and device,
        and a batcher around `forward` (its limits come later, from the Serve config's
        user_config through `reconfigure`)."""
        self._threads = set_torch_threads(torch_threads)
        bundle = resolve_bundle(bundle_path)
        device = resolve_device(device)
        self._model = encoders.load(
            bundle, part, runtime=runtime, threads=self._threads, device=device
        )
        self.model_version, self.dim = self._model.model_version, self._model.dim
        self._batcher = Batcher(
            forward, config=BatchConfig(), name=f"{part}-batch", metrics=BatchMetrics(part)
        )
        self._up_task = asyncio.get_event_loop().create_task(_report_up())
        log.info(
            "%s: bundle %s (%s), %s on %s, %d threads",
            part,
            self.model_version,
            bundle,
            describe_runtime(self._model),
            device,
            self._threads,
        )

    def reconfigure(self, user_config: dict) -> None:
        self._batcher.configure(BatchConfig(**user_config))
        log.info("dynamic batching: %s", self._batcher.config)

    def _replica_info(self) -> ReplicaInfo:
        return replica_info(
            model_version=self.model_version,
            dim=self.dim,
            runtime=describe_runtime(self._model),
            threads=self._threads,
            batcher=self._batcher,
        )

    def info(self) -> dict:
        """Model version, dimension, and the batching and threads in force, with batch stats."""
        return {
            "model_version": self.model_version,
            "dim": self.dim,
            "batching": self._batcher.config.model_dump(),
            "batch_stats": self._batcher.stats.to_dict(),
            "torch_threads": self._threads,
            "runtime": describe_runtime(self._model),
        }

    def record_autoscaling_stats(self) -> dict[str, float]:
        """For the autoscaling policy of the Kubernetes profiles (shared.serving.autoscaling)."""
        return batcher_stats(self._batcher)

    @grpc_method
    async def GetReplicaInfo(self, request: replica_pb.GetReplicaInfoRequest):  # noqa: N802
        return replica_conv.info_to_proto(self._replica_info())
