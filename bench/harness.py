"""Timing helpers and the report format shared by every benchmark."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from operations.local_ray import prepare_environment, start_local_ray

# Replica port blocks 50..99 (the tests use 0..49), so a benchmark beside the tests or
# `make run` never shares a port with them.
BENCH_PORT_SLOT = 50 + os.getpid() % 50


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


def start_ray() -> None:
    """The local Ray every serving benchmark runs on: serving like `make run` on replica ports of
    its own, 2 CPUs, no dashboard, quiet."""
    prepare_environment(os.environ, port_slot=BENCH_PORT_SLOT)
    start_local_ray(num_cpus=2, log_to_driver=False)
