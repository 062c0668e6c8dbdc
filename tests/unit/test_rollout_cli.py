"""`vitrine rollout` / `rollback`: the slots' application names, which slot serves, the new
slot's applications, and the commands' errors (the rollout itself under query load:
tests/integration/test_ingestion.py)."""

from __future__ import annotations

import pytest

from cli.app import main
from operations import rollout as ro
from operations.serve import load_config


def test_slots_name_their_applications():
    assert ro.slot_apps("blue")["vector_store"] == "vector-store"
    assert set(ro.slot_apps("green").values()) == {
        "image-encoder-green",
        "text-encoder-green",
        "fusion-green",
        "vector-store-green",
    }


def test_the_serving_slot_is_the_one_the_gateway_names():
    config = load_config()
    assert ro.serving_slot(config) == "blue"
    (gateway,) = (a for a in config["applications"] if a["name"] == "gateway")
    gateway["deployments"][0]["user_config"] = {"apps": ro.slot_apps("green")}
    assert ro.serving_slot(config) == "green"
    config["applications"].remove(gateway)
    with pytest.raises(ro.RolloutError, match="no gateway"):
        ro.serving_slot(config)


def test_the_new_slot_copies_the_serving_one_with_the_new_bundle():
    config = load_config()
    apps = ro._slot_config(config, "blue", "green", {"bundle_path": "/b2"})
    assert [a["name"] for a in apps] == list(ro.slot_apps("green").values())
    assert all(a["args"]["bundle_path"] == "/b2" for a in apps)
    assert {a["import_path"] for a in apps} == {
        a["import_path"] for a in config["applications"] if a["name"] != "gateway"
    }
    worker = ro._ingestion_app("green", {"consumer_group": "g-2"})
    assert worker["args"]["vector_store_app"] == "vector-store-green"
    assert worker["import_path"] == "services.ingestion.deployment:build_app"
    config["applications"] = [a for a in config["applications"] if a["name"] != "fusion"]
    with pytest.raises(ro.RolloutError, match="no fusion application"):
        ro._slot_config(config, "blue", "green", {})


def test_commands_report_a_refused_rollout(monkeypatch, capsys):
    def refuse(*_, **__):
        raise ro.RolloutError("model m1 is the one served")

    monkeypatch.setattr("operations.serve.connect_ray", lambda: None)
    monkeypatch.setattr(ro, "rollout", refuse)
    monkeypatch.setattr(ro, "rollback", refuse)
    assert main(["rollout", "/some/bundle"]) == 1
    assert "vitrine rollout: model m1 is the one served" in capsys.readouterr().err
    assert main(["rollback"]) == 1
    assert "vitrine rollback: model m1" in capsys.readouterr().err
