"""The observability assets of deploy/observability (Prometheus alert rules, the Grafana
dashboard) checked against what the code exports: a rule or a panel naming a series nobody
exports would stay silent or empty forever."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ASSETS = Path(__file__).resolve().parents[1] / "deploy" / "observability"
RULES = ASSETS / "alerts.yaml"
RULE_TESTS = ASSETS / "alerts.test.yaml"
DASHBOARD = ASSETS / "grafana-dashboard.json"

# Series that Prometheus makes for every target. (None of Ray Serve's own: its gauges, such as
# ray_serve_deployment_replica_healthy, are exported only around the moments they are set, so a
# rule over them would not see a healthy cluster; the replicas set gauges of their own.)
PROMETHEUS_SERIES = frozenset({"up"})

_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_SERIES = re.compile(r"\b(?:ray_[a-zA-Z0-9_:]+|vitrine_[a-zA-Z0-9_:]+|up(?=\s*\{))")


def series_in(expr: str) -> set[str]:
    """The series names a PromQL expression reads (Vitrine's, Ray's and `up`); label values and
    functions are not names."""
    return set(_SERIES.findall(_QUOTED.sub('""', expr)))


def rule_expressions(path: Path = RULES) -> dict[str, str]:
    """Alert name -> its expression."""
    groups = yaml.safe_load(path.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def dashboard_expressions(path: Path = DASHBOARD) -> dict[str, str]:
    """ "panel title / refId" -> its expression."""
    panels = json.loads(path.read_text())["panels"]
    return {f"{p['title']} / {t['refId']}": t["expr"] for p in panels for t in p["targets"]}


def exported_series() -> set[str]:
    """Every series name the code exports: the replicas' (Ray's metrics API), the ingestion
    worker's (prometheus-client), and Prometheus's `up`."""
    from services.ingestion.metrics import IngestMetrics
    from shared.observability.metrics import SUFFIXES, exported_names

    # By type, not by sample: a labelled metric has no sample before its first label set.
    worker = {
        family.name + suffix
        for family in IngestMetrics().registry.collect()
        for suffix in SUFFIXES[family.type]
    }
    return exported_names() | worker | PROMETHEUS_SERIES


def unknown_series(expressions: dict[str, str]) -> dict[str, set[str]]:
    """Expression name -> the series it reads that the code does not export (none: {})."""
    known = exported_series()
    return {name: missing for name, e in expressions.items() if (missing := series_in(e) - known)}
