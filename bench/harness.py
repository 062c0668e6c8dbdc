"""Timing helpers and the report format shared by every benchmark."""

from __future__ import annotations

import os
import statistics
import threading
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


class TextQueries:
    """`clients` closed-loop clients of the gateway's text search, each on its own channel,
    recording each call's latency or error with the time it ended, until stopped."""

    def __init__(self, gateway: str, clients: int) -> None:
        self._gateway = gateway
        self.done: list[tuple[float, float]] = []  # (end time, latency ms)
        self.failed: list[tuple[float, str]] = []  # (end time, status code)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(i,)) for i in range(clients)]

    def _client(self, n: int) -> None:
        import grpc

        from shared.api.vitrine.search.v1 import search_pb2 as pb
        from shared.api.vitrine.search.v1 import search_pb2_grpc as pb_grpc

        with grpc.insecure_channel(self._gateway) as channel:
            stub, i = pb_grpc.SearchServiceStub(channel), 0
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    stub.Search(pb.SearchRequest(text=f"blue shirt {n} {i}", top_k=10), timeout=30)
                    self.done.append((time.monotonic(), (time.perf_counter() - t0) * 1000))
                except grpc.RpcError as e:
                    self.failed.append((time.monotonic(), e.code().name))
                i += 1

    @property
    def latencies(self) -> list[float]:
        return [ms for _, ms in self.done]

    @property
    def errors(self) -> list[str]:
        return [code for _, code in self.failed]

    def window(self, start: float, end: float) -> tuple[float, list[float], int]:
        """(queries/s, latencies, errors) of the calls that ended in [start, end)."""
        latencies = [ms for t, ms in list(self.done) if start <= t < end]
        errors = sum(1 for t, _ in list(self.failed) if start <= t < end)
        return len(latencies) / (end - start), latencies, errors

    def __enter__(self) -> TextQueries:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()
