"""Search modes under load: text queries in dense, lexical and hybrid mode against the running
platform at 1 and 32 concurrent clients, each mode's p50, p99 and throughput as a ratio of the
dense query's measured in the same run.

Needs a running platform (`make run`). The modes alternate within each round, for several
rounds, so drift in this machine's speed hits all of them; each figure is the median over
rounds. Lexical queries skip the text encoder (BM25 runs in the store); hybrid ones encode the
text and ask the store for both rankings and their fusion.
"""

from __future__ import annotations

import argparse
import os
import statistics

from bench.harness import Row, Section, p50, p99
from bench.load_generator import MODE_KINDS, LoadResult, collect_workload, run_load

CLIENTS = (1, 32)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench modes", description=__doc__)
    port = os.environ.get("VITRINE_GATEWAY_GRPC_PORT", "9000")
    p.add_argument("--gateway", default=f"127.0.0.1:{port}", help="the gateway's gRPC address")
    p.add_argument("--clients", default=",".join(map(str, CLIENTS)))
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--rounds", type=int, default=3)
    return p.parse_args(argv)


def _median(runs: list[LoadResult], measure) -> float:
    return statistics.median(measure(r) for r in runs)


def build_section(results: dict[tuple[str, int], list[LoadResult]], *, clients, seconds) -> Section:
    section = Section(
        title="Search modes under load",
        command="python -m bench modes  (with `make run` up)",
        description=(
            f"Text queries in each mode, {seconds:g} s per run, modes interleaved, median of "
            f"{len(next(iter(results.values())))} rounds; baseline: the dense text query at the "
            "same concurrency in the same run."
        ),
    )
    for n in clients:
        dense = results[("dense", n)]
        for kind in MODE_KINDS[1:]:
            runs = results[(kind, n)]
            errors = sum(sum(r.errors.values()) for r in runs)
            for label, measure, unit in (
                ("p50", lambda r: p50(r.latencies_ms), "ms"),
                ("p99", lambda r: p99(r.latencies_ms), "ms"),
                ("throughput", lambda r: r.qps, "q/s"),
            ):
                section.rows.append(
                    Row(
                        f"{kind} {label}, {n} client{'s' if n > 1 else ''}",
                        f"dense {label}",
                        _median(dense, measure),
                        _median(runs, measure),
                        unit,
                        f"{errors} errors" if label == "p50" else "",
                    )
                )
    return section


def run(argv: list[str] | None = None) -> Section:
    from tqdm.auto import tqdm

    args = _parse(argv)
    clients = tuple(int(c) for c in args.clients.split(","))
    api_key = os.environ.get("VITRINE_API_KEY", "")
    workload = collect_workload(args.gateway, api_key)
    results: dict[tuple[str, int], list[LoadResult]] = {
        (k, n): [] for k in MODE_KINDS for n in clients
    }
    with tqdm(total=args.rounds * len(MODE_KINDS) * len(clients), desc="bench modes") as bar:
        for _ in range(args.rounds):
            for n in clients:
                for kind in MODE_KINDS:
                    bar.set_postfix_str(f"{kind} x{n}")
                    results[(kind, n)].append(
                        run_load(
                            args.gateway,
                            kind,
                            n,
                            seconds=args.seconds,
                            workload=workload,
                            api_key=api_key,
                        )
                    )
                    bar.update()
    return build_section(results, clients=clients, seconds=args.seconds)


if __name__ == "__main__":
    print(run().to_markdown())
