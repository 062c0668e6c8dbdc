"""CLI commands without a platform: `vitrine status` with nothing running (each check says DOWN,
exit code 1, no hang), `vitrine train --catalog` with no catalog."""

from __future__ import annotations

import json

from cli.app import main
from operations.ports import free_port


def test_status_reports_what_is_down(monkeypatch, capsys):
    monkeypatch.setenv("VITRINE_INGESTION_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    gateway = f"127.0.0.1:{free_port()}"
    assert main(["status", "--no-serve", "--gateway", gateway, "--timeout", "2", "--json"]) == 1
    checks = {c["component"]: c for c in json.loads(capsys.readouterr().out)}
    assert checks["gateway"]["state"] == "DOWN" and gateway in checks["gateway"]["detail"]
    assert checks["broker"]["state"] == "DOWN" and "refused" in checks["broker"]["detail"]
    assert not any(c["ok"] for c in checks.values())


def test_train_catalog_must_hold_a_products_jsonl(tmp_path, capsys):
    assert (
        main(["train", "--config", "training/configs/catalog.yaml", "--catalog", str(tmp_path)])
        == 2
    )
    assert "no products.jsonl" in capsys.readouterr().err


# Ingestion health: classify_ingestion on what the broker and one worker's /metrics said.
NOW = 1_800_000_000.0


def _view(lag: int, *, members=1, last_commit=0.0, started=NOW - 3600, error=""):
    from operations.status import IngestionView, WorkerMetrics
    from shared.streaming.events import GroupLag

    metrics = None if error or started is None else WorkerMetrics(last_commit, started)
    return IngestionView(GroupLag(6, 100, 100 - lag, lag), members, metrics, error)


def _classify(view):
    from operations.status import classify_ingestion

    return classify_ingestion(view, group="g", topic="t", now=NOW, stall_after_s=120)


def test_ingestion_working_through_a_backlog_is_ok():
    check = _classify(_view(40, last_commit=NOW - 5))
    assert check.ok and check.state == "lag 40", check


def test_an_idle_worker_is_ok_however_old_its_last_commit():
    assert _classify(_view(0, last_commit=NOW - 86400)).ok
    assert _classify(_view(0, last_commit=0.0)).ok  # never committed, nothing to do


def test_a_backlog_with_no_recent_commit_is_stalled():
    check = _classify(_view(40, last_commit=NOW - 600))
    assert not check.ok and check.state == "STALLED", check
    assert "lag 40, last commit 600 s ago" in check.detail
    check = _classify(_view(40, last_commit=0.0, started=NOW - 300))  # restarted, stuck since
    assert check.state == "STALLED" and "no commit since the worker started" in check.detail


def test_a_worker_that_just_started_on_a_backlog_is_not_stalled():
    assert _classify(_view(40, last_commit=NOW - 3600, started=NOW - 10)).ok
    assert _classify(_view(40, started=0.0)).ok  # no start time exported: no verdict


def test_no_group_member_or_no_metrics_answer_is_dead():
    check = _classify(_view(40, members=0))
    assert not check.ok and check.state == "DEAD" and "no member in group g; lag 40" in check.detail
    check = _classify(_view(0, error="metrics http://127.0.0.1:9102/metrics not answering: x"))
    assert not check.ok and check.state == "DEAD" and "9102" in check.detail
    # The broker could not say who is in the group, and no metrics were asked for: lag only.
    assert _classify(_view(0, members=None, started=None)).ok


def test_status_reads_a_real_workers_metrics():
    """scrape_worker against IngestMetrics as the worker serves it (congruence with the fakes
    above): no commit yet, and a start time."""
    import time

    from operations.status import scrape_worker
    from services.ingestion.metrics import IngestMetrics

    metrics = IngestMetrics()
    port = metrics.serve(0)
    seen = scrape_worker(f"http://127.0.0.1:{port}/metrics", timeout_s=5)
    assert seen.last_commit == 0 and abs(seen.started - time.time()) < 600
    metrics.last_commit.set(NOW)
    assert scrape_worker(f"http://127.0.0.1:{port}/metrics", timeout_s=5).last_commit == NOW


def test_status_takes_worker_metrics_and_stall_after_options(monkeypatch, capsys):
    """The options parse; with no broker the worker is not asked (the broker check says DOWN)."""
    monkeypatch.setenv("VITRINE_INGESTION_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    url = f"http://127.0.0.1:{free_port()}/metrics"
    argv = ["status", "--no-serve", "--gateway", f"127.0.0.1:{free_port()}", "--timeout", "1"]
    assert main([*argv, "--worker-metrics", url, "--stall-after", "5"]) == 1
    assert "!! broker" in capsys.readouterr().out
