"""deploy/observability: the alert rules pass promtool's check and their unit tests (one per
alert, which makes it fire), and every series a rule or a dashboard panel reads is exported."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from operations.observability import (
    RULE_TESTS,
    RULES,
    dashboard_expressions,
    rule_expressions,
    series_in,
    unknown_series,
)

PROMTOOL = Path(__file__).resolve().parents[2] / ".venv" / "opt" / "prometheus" / "promtool"
needs_promtool = pytest.mark.skipif(
    not PROMTOOL.exists(), reason="no promtool: `make tools` (scripts/fetch_promtool.sh) fetches it"
)


@needs_promtool
def test_promtool_accepts_the_rules():
    done = subprocess.run([PROMTOOL, "check", "rules", RULES], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_unit_tests_pass():
    done = subprocess.run(
        [PROMTOOL, "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        cwd=RULE_TESTS.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_unit_test_that_makes_it_fire():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", ())
        if case.get("exp_alerts")
    }
    assert set(rule_expressions()) == fired


def test_rules_and_panels_read_only_exported_series():
    assert unknown_series(rule_expressions()) == {}
    assert unknown_series(dashboard_expressions()) == {}
    named = set().union(*map(series_in, dashboard_expressions().values()))
    assert "ray_vitrine_gateway_request_seconds_bucket" in named  # the check reads the panels


def test_a_series_nobody_exports_is_reported():
    expr = 'sum(rate(ray_vitrine_gateway_requests_totl{code="OK"}[5m])) > up{job="vitrine_x"}'
    assert series_in(expr) == {"ray_vitrine_gateway_requests_totl", "up"}
    assert unknown_series({"typo": expr}) == {"typo": {"ray_vitrine_gateway_requests_totl"}}


@needs_promtool
def test_promtool_accepts_the_local_prometheus_config():
    config = RULES.parent / "prometheus.yaml"
    done = subprocess.run([PROMTOOL, "check", "config", config], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
