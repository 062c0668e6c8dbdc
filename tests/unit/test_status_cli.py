"""CLI commands without a platform: `vitrine status` with nothing running (each check says DOWN,
exit code 1, no hang), `vitrine train --catalog` with no catalog."""

from __future__ import annotations

import json

from services.cli.app import main
from shared.streaming.broker import free_port


def test_status_reports_what_is_down(monkeypatch, capsys):
    monkeypatch.setenv("VITRINE_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
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
