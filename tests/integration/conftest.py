"""One real Ray cluster per test session, and the whole Serve platform on it when asked for."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from operations.local_ray import LocalCluster
from tests.support.cli import run_vitrine
from tests.support.platform import Platform, TrainedBundle, deploy_platform


@pytest.fixture(scope="session")
def short_tmpdir():
    """Makes directories for Ray's session files directly under the system temp dir (removed at
    the end of the session): Ray puts Unix sockets in them, whose paths may not exceed 107 bytes,
    and pytest's numbered temp dirs grow longer than that allows."""
    import shutil
    import tempfile

    made: list[str] = []

    def make(prefix: str) -> str:
        made.append(tempfile.mkdtemp(prefix=f"{prefix}-"))
        return made[-1]

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def demo_bundle(tmp_path_factory, short_tmpdir) -> TrainedBundle:
    """The bundle `make run` trains the first time: `vitrine train --config
    training/configs/demo.yaml` (the real Ray Train entry point, 2 workers), trained once per
    session in a Ray of its own."""
    root = tmp_path_factory.mktemp("demo")
    env = {
        **os.environ,
        "VITRINE_TRAIN_CACHE_DIR": str(root / "cache"),
        "VITRINE_TRAIN_STORAGE_PATH": str(root / "runs"),
        "RAY_TMPDIR": short_tmpdir("ray-train"),
    }
    env.pop("RAY_ADDRESS", None)  # not the session's cluster: training starts its own
    bundle = root / "bundle"
    output = run_vitrine(
        ["train", "--config", "training/configs/demo.yaml", "--output", str(bundle)], env
    )
    return TrainedBundle(bundle, root / "cache", output)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[LocalCluster]:
    """The session's Ray, set up by tests/conftest.py the way `make run` serves, as a cluster of
    two nodes on this machine: a head of 1 CPU (the gateway and the store go there) and a model
    node of 2 CPUs (the encoders and fusion), placed by operations.profiles.place_on_nodes.
    Every node's metrics agent has a port of its own (`metrics_ports`)."""
    cluster = LocalCluster(head_cpus=1)
    cluster.add_model_node(num_cpus=2)
    cluster.connect()
    yield cluster
    cluster.shutdown()


@pytest.fixture(scope="module")
def platform(ray_cluster, tmp_path_factory) -> Platform:
    """(Per module, so its replicas do not outlive the tests that use them.) Every application
    of deploy/serve/vitrine.yaml with a tiny bundle, a 12-product catalog indexed in an
    embedded Qdrant Edge store."""
    yield from deploy_platform(tmp_path_factory)
