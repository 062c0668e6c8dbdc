"""Serving under concurrent load: the running platform's query throughput and latency at 1, 8, 32
and 64 concurrent clients, as a ratio of the in-process limit of the same work measured in the same
run.

Needs a running platform (`make run`); `python -m bench load` (or `vitrine bench load`) drives its
gateway. Each client is a coroutine with a gRPC channel of its own, all in one load-generator
process whose CPU use is reported. The limit runs in a process of its own while the platform is
idle: the served bundle, torch threads equal to the encoder replica's CPU budget, batches of the
deployment's max_batch_size, an embedded Qdrant Edge store holding as many points as the served
catalog. Platform and limit runs alternate for several rounds, so drift in this machine's speed
hits both; each figure is the median over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

from bench.harness import Row, Section, p50, p99
from bench.load_generator import KINDS, LoadResult, collect_workload, run_load
from bench.load_limit import LimitSpec, measure_limits
from shared.serving import apps

CLIENTS = (1, 8, 32, 64)


@dataclass(frozen=True)
class Served:
    """What the running platform serves, read from its replicas."""

    model_version: str
    points: int
    threads: int  # torch threads of the text encoder replica (its CPU budget)
    runtime: str  # the text encoder replica's runtime
    batch: dict[str, int]


def served_config() -> Served:
    """Asks the running replicas (through Serve handles on the cluster `make run` started)."""
    from operations.serve import connect_ray

    connect_ray()  # before Ray is imported
    from ray import serve

    from shared.serving.endpoints import release_handles

    async def ask() -> list[dict]:
        infos = [
            await serve.get_deployment_handle(apps.DEPLOYMENTS[app], app).info.remote()
            for app in (apps.TEXT_ENCODER, apps.IMAGE_ENCODER, apps.FUSION, apps.VECTOR_STORE)
        ]
        await release_handles()
        return infos

    text, image, fusion, store = asyncio.run(ask())
    return Served(
        model_version=store["model_version"],
        points=store["points"],
        threads=text["torch_threads"],
        runtime=text["runtime"].split()[0],
        batch={
            "text": text["batching"]["max_batch_size"],
            "image": image["batching"]["max_batch_size"],
            "fusion": fusion["batching"]["max_batch_size"],
        },
    )


def _median_result(runs: list[LoadResult]) -> LoadResult:
    """The round with the median throughput (its latencies and CPU stay consistent)."""
    return sorted(runs, key=lambda r: r.qps)[len(runs) // 2]


def build_section(
    results: dict[tuple[str, int], list[LoadResult]],
    limits: list[dict[str, float]],
    served: Served,
    *,
    kinds: tuple[str, ...],
    clients: tuple[int, ...],
    seconds: float,
) -> Section:
    """The report: each load point against the in-process limit, scaling from 1 client, and one
    client's latency against the in-process stage costs; medians over the rounds."""
    limit = {k: statistics.median(r[k] for r in limits) for k in limits[0]}
    section = Section(
        title="Serving under concurrent load",
        command=".venv/bin/python -m bench load  (against `make run`)",
        description=__doc__.split("\n\n")[0].replace("\n", " ")
        + f" {len(limits)} rounds of {seconds:.0f} s per point; limit: {served.runtime}, "
        f"{served.threads} thread(s), batches of {served.batch['text']} texts / {served.batch['image']} images / "
        f"{served.batch['fusion']} fusion pairs, {served.points} points.",
    )
    section.rows += _load_rows(results, limit, kinds=kinds, clients=clients)
    section.rows += _scaling_rows(results, kinds=kinds, clients=clients)
    section.rows += _overhead_rows(results, limit, kinds=kinds, first=clients[0])
    return section


def _load_rows(results, limit, *, kinds, clients) -> list[Row]:
    rows = []
    for kind in kinds:
        for n in clients:
            r = _median_result(results[(kind, n)])
            lat = r.latencies_ms or [float("nan")]
            busiest = sorted(r.replica_cpu.items(), key=lambda kv: -kv[1])[:3]
            rows.append(
                Row(
                    f"{kind} queries, {n} client{'s' if n > 1 else ''}",
                    f"in-process limit ({kind})",
                    limit[kind],
                    r.qps,
                    "q/s",
                    f"p50 {p50(lat):.1f} ms, p99 {p99(lat):.1f} ms, errors "
                    f"{sum(r.errors.values())}; load generator {r.generator_cores:.2f} cores; "
                    + ", ".join(f"{name} {cores:.2f}" for name, cores in busiest),
                )
            )
    return rows


def _scaling_rows(results, *, kinds, clients) -> list[Row]:
    rows = []
    for kind in kinds:
        one = _median_result(results[(kind, clients[0])])
        many = _median_result(results[(kind, 32 if 32 in clients else clients[-1])])
        rows.append(
            Row(
                f"{kind}: throughput at {many.clients} clients vs 1",
                "1 client",
                one.qps,
                many.qps,
                "q/s",
                f"p99/p50 at {many.clients} clients: "
                f"{p99(many.latencies_ms) / p50(many.latencies_ms):.2f}",
            )
        )
    return rows


def _overhead_rows(results, limit, *, kinds, first: int) -> list[Row]:
    stages = {  # what one query of each kind computes, in process
        "text": ("stage:text", "stage:search"),
        "image": ("stage:image", "stage:search"),
        "product": ("stage:retrieve", "stage:search"),
    }
    floors = {kind: sum(limit[s] for s in stages[kind]) for kind in kinds if kind in stages}
    if "composed" in kinds:  # retrieval and text encoding run in parallel, then fusion, search
        floors["composed"] = (
            max(limit["stage:text"], limit["stage:retrieve"])
            + limit["stage:fusion"]
            + limit["stage:search"]
        )
    rows = []
    for kind in kinds:
        one = _median_result(results[(kind, first)])
        rows.append(
            Row(
                f"{kind}: one client's p50",
                "in-process stage costs (sum)",
                floors[kind],
                p50(one.latencies_ms),
                "ms",
                f"overhead {p50(one.latencies_ms) - floors[kind]:+.1f} ms (goal <= +3 ms)",
            )
        )
    return rows


def plot(results, limits, *, kinds, clients, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    limit = {k: statistics.median(r[k] for r in limits) for k in kinds}
    fig, axes = plt.subplots(1, len(kinds), figsize=(4 * len(kinds), 3.4), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        qps = [_median_result(results[(kind, n)]).qps for n in clients]
        ax.plot(clients, qps, "o-", label="served")
        ax.axhline(limit[kind], color="grey", linestyle="--", label="in-process limit")
        ax.set_xscale("log", base=2)
        ax.set_xticks(clients, [str(n) for n in clients])
        ax.set_ylim(bottom=0)
        ax.set_title(f"{kind} queries")
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("queries/s")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench load", description=__doc__)
    port = os.environ.get("VITRINE_GATEWAY_GRPC_PORT", "9000")
    p.add_argument("--gateway", default=f"127.0.0.1:{port}", help="the gateway's gRPC address")
    p.add_argument("--bundle", default=os.environ.get("VITRINE_BUNDLE_PATH"))
    p.add_argument("--kinds", default=",".join(KINDS))
    p.add_argument("--clients", default=",".join(map(str, CLIENTS)))
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--limit-seconds", type=float, default=5.0)
    return p.parse_args(argv)


def _resolve_bundle(path: str | None, model_version: str) -> str:
    from shared.models.bundle import Manifest
    from shared.serving.runtime import resolve_bundle

    bundle = resolve_bundle(path)
    found = Manifest.read(bundle).bundle_id
    if found != model_version:
        raise SystemExit(
            f"bench load: {bundle} holds {found}, the platform serves {model_version}: "
            "pass the served bundle with --bundle (or VITRINE_BUNDLE_PATH)"
        )
    return str(bundle)


def run(argv: list[str] | None = None) -> Section:
    from tqdm.auto import tqdm

    args = _parse(argv)
    kinds = tuple(args.kinds.split(","))
    clients = tuple(int(c) for c in args.clients.split(","))
    api_key = os.environ.get("VITRINE_API_KEY", "")
    served = served_config()
    spec = LimitSpec(
        bundle=_resolve_bundle(args.bundle, served.model_version),
        points=max(served.points, 1),
        threads=served.threads,
        runtime=served.runtime,
        batch=served.batch,
        seconds=args.limit_seconds,
    )
    workload = collect_workload(args.gateway, api_key)
    results: dict[tuple[str, int], list[LoadResult]] = {(k, n): [] for k in kinds for n in clients}
    limits = []
    steps = args.rounds * (1 + len(kinds) * len(clients))
    with tqdm(total=steps, desc="bench load", unit="run") as bar:
        for round_ in range(args.rounds):
            bar.set_postfix_str(f"round {round_ + 1}: in-process limit")
            limits.append(measure_limits(spec, workload))
            bar.update()
            for kind in kinds:
                for n in clients:
                    bar.set_postfix_str(f"round {round_ + 1}: {kind} x{n}")
                    result = run_load(
                        args.gateway,
                        kind,
                        n,
                        seconds=args.seconds,
                        workload=workload,
                        api_key=api_key,
                    )
                    results[(kind, n)].append(result)
                    bar.update()
    section = build_section(
        results, limits, served, kinds=kinds, clients=clients, seconds=args.seconds
    )
    image = Path(__file__).resolve().parent.parent / "docs" / "images" / "bench-load.png"
    plot(results, limits, kinds=kinds, clients=clients, path=image)
    section.description += " Plot: [docs/images/bench-load.png](images/bench-load.png)."
    return section


if __name__ == "__main__":
    print(run().to_markdown())
