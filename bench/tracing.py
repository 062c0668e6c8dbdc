"""Tracing's cost: text queries at 1 and 32 concurrent clients against the real platform with
tracing off (the default), and on with 0%, 1% and 100% of queries traced, as ratios of the
same runs with tracing off.

Runs every application of deploy/serve/vitrine.yaml on a local Ray (2 CPUs) with the packaged
backbones and untrained heads (as `bench serving`), 2,000 products in the embedded store. Off and
on are two deployments of the same config (a process sets its tracer up once); the off phase
runs before and after the on phase, and the baseline is their mean, so drift in this machine's
speed shows as the difference between the two off phases (reported as noise). With tracing on,
the replicas write every kept span to files (`file:DIR`, a synchronous write per span: dearer
than the OTLP exporter's batches); the share of traced queries is set by the client sending a
sampled `traceparent`, which the sampler follows exactly as it would its own ratio.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
from pathlib import Path

from bench.harness import BENCH_PORT_SLOT, Row, Section, p50, p99, start_ray
from bench.load_generator import LoadResult, collect_workload, run_load
from operations.local_ray import prepare_environment, stop_local_ray
from operations.ports import free_port

prepare_environment(os.environ, port_slot=BENCH_PORT_SLOT)
CLIENTS = (1, 32)
RATIOS = (0.0, 0.01, 1.0)  # the share of queries traced with tracing on
SECONDS = float(os.environ.get("VITRINE_BENCH_SECONDS", 6))
ROUNDS = int(os.environ.get("VITRINE_BENCH_ROUNDS", 3))
os.environ.setdefault("VITRINE_BENCH_CATALOG", "2000")


def _phase(target: str, workload, ratios: tuple[float, ...]) -> dict:
    """(ratio, clients) -> [LoadResult] over ROUNDS rounds, the ratios interleaved."""
    from tqdm.auto import tqdm

    runs: dict[tuple[float, int], list[LoadResult]] = {(r, n): [] for r in ratios for n in CLIENTS}
    with tqdm(total=len(runs) * ROUNDS, desc="load runs", leave=False) as bar:
        for _ in range(ROUNDS):
            for n in CLIENTS:
                for ratio in ratios:
                    runs[(ratio, n)].append(
                        run_load(
                            target,
                            "text",
                            n,
                            seconds=SECONDS,
                            workload=workload,
                            api_key="",
                            trace_ratio=ratio,
                        )  # fmt: skip
                    )
                    bar.update()
    return runs


def _median(runs: list[LoadResult], measure) -> float:
    return statistics.median(measure(r) for r in runs)


MEASURES = (
    ("p50", lambda r: p50(r.latencies_ms), "ms"),
    ("p99", lambda r: p99(r.latencies_ms), "ms"),
    ("throughput", lambda r: r.qps, "q/s"),
)


def build_section(before: dict, on: dict, after: dict) -> Section:
    section = Section(
        title="Tracing cost",
        command=".venv/bin/python -m bench tracing",
        description=__doc__.split("\n\n")[0].replace("\n", " ")
        + f" {SECONDS:g} s per run, median of {ROUNDS} rounds.",
    )
    for n in CLIENTS:
        off = before[(0.0, n)] + after[(0.0, n)]
        for label, measure, unit in MEASURES:
            first, second = _median(before[(0.0, n)], measure), _median(after[(0.0, n)], measure)
            baseline = (first + second) / 2
            noise = abs(first - second) / baseline if baseline else 0.0
            for ratio in RATIOS:
                runs = on[(ratio, n)]
                errors = sum(sum(r.errors.values()) for r in runs + off)
                section.rows.append(
                    Row(
                        f"tracing on, {ratio:.0%} traced: {label}, {n} client{'s' * (n > 1)}",
                        f"tracing off: {label}",
                        baseline,
                        _median(runs, measure),
                        unit,
                        f"off before/after differ by {noise:.0%}; {errors} errors"
                        if ratio == 0.0
                        else "",
                    )
                )
    return section


def run() -> Section:
    from bench.serving import _bundle, _fill_catalog, platform_config
    from operations.serve import deploy

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bundle = _bundle(root)
        start_ray()
        try:
            port = free_port()
            target = f"127.0.0.1:{port}"
            off = {"tracing_exporter": ""}
            on = {"tracing_exporter": f"file:{root / 'spans'}", "tracing_sample_ratio": 0.0}
            deploy(platform_config(bundle, root, port, off), timeout_s=600)
            asyncio.run(_fill_catalog())
            workload = collect_workload(target, "")
            before = _phase(target, workload, (0.0,))
            deploy(platform_config(bundle, root, port, on), timeout_s=600)
            traced = _phase(target, workload, RATIOS)
            deploy(platform_config(bundle, root, port, off), timeout_s=600)
            after = _phase(target, workload, (0.0,))
        finally:
            stop_local_ray()
    return build_section(before, traced, after)


if __name__ == "__main__":
    print(run().to_markdown())
