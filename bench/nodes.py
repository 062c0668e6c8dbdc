"""Several Ray nodes: the platform on a head and two model nodes of this machine, a model node
stopped under query load.

The applications of deploy/serve/vitrine.yaml placed on node roles (`vitrine deploy
nodes-config`) on a cluster of three Ray nodes on this machine (operations.local_ray.LocalCluster):
a head of 1 CPU (gateway, store) and two model nodes of 2 CPUs each, each encoder with two
replicas, one per model node, the packaged backbone (EfficientNet-Lite0, untrained heads). Eight
closed-loop clients send text queries to the gateway. Measured against the same load on both
model nodes in the same run: the throughput and p99 in the seconds after one model node is
stopped (its raylet, object store and agents killed, its replicas exiting with them), with
the failed queries; and the throughput on the one model node left. All nodes share the same 2 cores: this measures the cost
of losing a node, not the capacity a second machine adds.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bench.harness import BENCH_PORT_SLOT, Row, Section, TextQueries, p50, p99
from bench.serving import _bundle, platform_config
from operations.local_ray import LocalCluster, prepare_environment, spread_over_nodes
from operations.ports import free_port
from operations.profiles import place_on_nodes

CLIENTS, WINDOW_S = 8, 20.0
ENCODERS = {"image-encoder": "ImageEncoder", "text-encoder": "TextEncoder"}


def _deploy(root: Path, bundle: Path) -> str:
    from operations.serve import deploy

    port = free_port()
    config = place_on_nodes(platform_config(bundle, root, port))
    for app in config["applications"]:
        if app["name"] in ENCODERS:
            app["deployments"][0].update(num_replicas=2, max_replicas_per_node=1)
    deploy(config, timeout_s=600)
    return f"127.0.0.1:{port}"


def _until(predicate, what: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.5)


def run() -> Section:
    section = Section(
        title="Several Ray nodes (a model node stopped under load)",
        command=".venv/bin/python -m bench nodes",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    prepare_environment(os.environ, port_slot=BENCH_PORT_SLOT)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bundle = _bundle(root)
        cluster = LocalCluster(head_cpus=1, metrics=False)
        try:
            cluster.add_model_node()  # the model node that stays
            second = cluster.add_model_node()
            cluster.connect(log_to_driver=False)
            gateway = _deploy(root, bundle)
            _until(lambda: spread_over_nodes(ENCODERS, 2), "replicas on both model nodes")
            section.rows += _measure(cluster, second, gateway)
        finally:
            cluster.shutdown()
    return section


def _measure(cluster: LocalCluster, second, gateway: str) -> list[Row]:
    with TextQueries(gateway, CLIENTS) as queries:
        time.sleep(5)  # warm-up
        t0 = time.monotonic()
        time.sleep(WINDOW_S)
        stopped = time.monotonic()
        cluster.stop_node(second)
        time.sleep(WINDOW_S)
        after = time.monotonic()
        _until(lambda: spread_over_nodes(ENCODERS, 1), "the stopped node's replicas gone")
        time.sleep(5)
        t1 = time.monotonic()
        time.sleep(WINDOW_S)
        t2 = time.monotonic()
    both_qps, both, both_errors = queries.window(t0, stopped)
    lost_qps, lost, lost_errors = queries.window(stopped, after)
    one_qps, one, one_errors = queries.window(t1, t2)
    return [
        Row(
            f"queries/s in the {WINDOW_S:.0f} s after a model node is stopped",
            "the same load on both model nodes",
            both_qps,
            lost_qps,
            "queries/s",
            f"{lost_errors} failed (before: {both_errors}); {CLIENTS} clients",
        ),
        Row(
            f"p99 in the {WINDOW_S:.0f} s after a model node is stopped",
            "the same load on both model nodes",
            p99(both),
            p99(lost),
            "ms",
            f"p50 {p50(lost):.1f} ms (before {p50(both):.1f} ms); max {max(lost):.0f} ms",
        ),
        Row(
            "queries/s on the one model node left",
            "the same load on both model nodes",
            both_qps,
            one_qps,
            "queries/s",
            f"p99 {p99(one):.1f} ms; {one_errors} failed; the same 2 cores either way",
        ),
    ]
