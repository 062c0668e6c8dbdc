"""Autoscaling the model deployments on how busy their batchers are.

Serve's default policy counts ongoing requests per replica. Behind the gateway's coalescing
(shared.serving.coalescing) a replica sees about two calls per gateway whatever the load, each
carrying many queries, so that count says nothing about load. What does: the share of time a
replica's batcher spends computing, and the items waiting for it. Every model replica reports
both (`record_autoscaling_stats`), and `BatchUtilizationPolicy` asks for as many replicas as keep
each one busy at most `target_busy` of the time. Serve applies min/max replicas and the up- and
downscale delays of the deployment's autoscaling_config around it
(ray.serve.autoscaling_policy._apply_autoscaling_config).
"""

from __future__ import annotations

import math
from typing import Any

BUSY = "busy_fraction"
BACKLOG = "backlog_batches"


def batcher_stats(batcher) -> dict[str, float]:
    """What a model replica reports to the autoscaler: its batcher's busy share since the last
    report, and the items waiting now, in full batches."""
    return {
        BUSY: batcher.busy_fraction(),
        BACKLOG: batcher.queued() / batcher.config.max_batch_size,
    }


class BatchUtilizationPolicy:
    """Replicas = ceil((sum of busy shares + waiting batches) / target_busy).

    Args:
        target_busy: the busy share each replica should stay under (0 < target <= 1). A
            replica that computes all the time has requests waiting on it.
    """

    def __init__(self, target_busy: float = 0.7) -> None:
        if not 0 < target_busy <= 1:
            raise ValueError(f"target_busy must be in (0, 1], got {target_busy}")
        self.target_busy = target_busy

    def __call__(self, ctx) -> tuple[int, dict[str, Any]]:
        metrics = ctx.aggregated_metrics or {}
        busy = metrics.get(BUSY) or {}
        if not busy:  # no report yet (replicas starting): keep what is asked for
            return ctx.target_num_replicas, {}
        backlog = metrics.get(BACKLOG) or {}
        load = sum(busy.values()) + sum(backlog.values())
        return max(1, math.ceil(load / self.target_busy)), {"load": round(load, 3)}
