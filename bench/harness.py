"""Timing helpers and the report format shared by every benchmark."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Row:
    """One comparison: a candidate against a baseline, both measured in the same run."""

    name: str
    baseline: str
    baseline_value: float
    value: float
    unit: str
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.baseline_value if self.baseline_value else float("nan")


@dataclass
class Section:
    title: str
    command: str
    description: str
    rows: list[Row] = field(default_factory=list)

    def to_markdown(self) -> str:
        lines = [
            f"## {self.title}",
            "",
            self.description,
            "",
            f"Reproduce: `{self.command}`",
            "",
            "| measure | value | baseline | baseline value | ratio | note |",
            "|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            lines.append(
                f"| {r.name} | {r.value:.4g} {r.unit} | {r.baseline} | {r.baseline_value:.4g} {r.unit} "
                f"| {r.ratio:.2f}x | {r.note} |"
            )
        return "\n".join(lines) + "\n"


def time_calls(fn: Callable[[], object], *, repeat: int, warmup: int = 3) -> list[float]:
    """Runs `fn` `warmup + repeat` times and returns the last `repeat` durations in milliseconds."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def p50(samples: list[float]) -> float:
    return statistics.median(samples)


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]


def internal_metadata(app_name: str) -> tuple[tuple[str, str], ...]:
    """gRPC metadata of a call to an internal service of the benchmark's Ray: the application
    and the internal token, one per process, set before Ray starts so the replicas get it."""
    import os
    import secrets

    from shared.serving.auth import InternalToken

    if not os.environ.get("VITRINE_INTERNAL_TOKEN_FILE"):
        os.environ.setdefault("VITRINE_INTERNAL_TOKEN", secrets.token_urlsafe(32))
    token = InternalToken.load(
        env_text=os.environ.get("VITRINE_INTERNAL_TOKEN"),
        file=os.environ.get("VITRINE_INTERNAL_TOKEN_FILE"),
    )
    return token.metadata(app_name)


def start_ray() -> None:
    """The local Ray every serving benchmark runs on: 2 CPUs, no dashboard, quiet."""
    import os

    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    internal_metadata("")  # the internal services refuse calls without the token
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=128 * 2**20,
        logging_level="WARNING",
        log_to_driver=False,
    )
