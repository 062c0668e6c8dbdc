"""A quality floor on real photos: `vitrine train` (Ray Train, 2 workers) on a fixed subset of
the team folder's Myntra catalog (training/configs/myntra-floor.yaml: the first 900 products,
about 300 held out), held-out R@10 above floors set from measured runs minus a margin, and the
same backbones with untrained heads below them. A change that breaks retrieval quality fails
here. The bundle is then fit on all 900 products (catalog training's default), and `vitrine eval`
refuses to report that bundle on its own training catalog.

Floors: the R@10 of a measured run of this config (2026-12-02: own image 0.744, attribute
0.667, shopper words 0.704, composed fusion on colour / type / gender changes 0.639 / 0.482 /
0.543; docs/QUALITY.md, "Quality floor") minus 0.06, about twice the spread between seeds seen on
the full split; untrained heads score 0.01-0.10.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.support.cli import ROOT, run_vitrine
from tests.unit.test_data import MYNTRA

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        not (MYNTRA / "products.jsonl").is_file(),
        reason=f"real Myntra data not found at {MYNTRA} (set VITRINE_DATA_DIR)",
    ),
]

FLOORS = {  # held-out R@10: measured minus 0.06
    ("text_to_image_own", None): 0.68,
    ("text_to_image_attribute", None): 0.60,
    ("shopper_words", None): 0.64,
    ("composed", "fusion"): 0.57,
    ("composed_type", "fusion"): 0.42,
    ("composed_gender", "fusion"): 0.48,
}


def _r10(metrics: dict, name: str, method: str | None) -> float:
    values = metrics[name] if method is None else metrics[name][method]
    return values["R@10"]


def test_trained_bundle_stays_above_the_quality_floor(tmp_path, short_tmpdir):
    config = yaml.safe_load((ROOT / "training/configs/myntra-floor.yaml").read_text())
    config["data"]["path"] = str(MYNTRA / "products.jsonl")
    config["output"] = str(tmp_path / "bundle")
    config_file = tmp_path / "floor.yaml"
    config_file.write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "VITRINE_TRAIN_CACHE_DIR": str(tmp_path / "cache"),
        "VITRINE_TRAIN_STORAGE_PATH": str(tmp_path / "runs"),
        "RAY_TMPDIR": short_tmpdir("ray-floor"),
        "RAY_AUTH_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("RAY_ADDRESS", None)  # training starts a Ray of its own
    run_vitrine(["train", "--config", str(config_file)], env)

    manifest = json.loads((tmp_path / "bundle/manifest.json").read_text())
    held_out, untrained = manifest["metrics"]["held_out"], manifest["metrics"]["untrained_heads"]
    report = {
        f"{name}/{method or ''}": (_r10(held_out, name, method), _r10(untrained, name, method))
        for name, method in FLOORS
    }
    for (name, method), floor in FLOORS.items():
        trained, control = report[f"{name}/{method or ''}"]
        assert trained >= floor, f"{name} {method or ''}: R@10 {trained:.3f} < floor {floor}"
        assert control < floor, f"untrained heads reach the {name} floor: {control:.3f}"
    # The learned fusion still beats the sum of the two embeddings.
    assert _r10(held_out, "composed", "fusion") > _r10(held_out, "composed", "sum")

    # Served from everything: the exported bundle is a second fit on all 900 products.
    training = manifest["training"]
    assert training["fit_on"] == "all"
    assert training["held_out_fit"]["fit_on"] == "train"
    assert training["data"]["products"] == 900
    assert manifest["bundle_id"] != ""
    evaluated = subprocess.run(
        [sys.executable, "-m", "cli.app", "eval", "--bundle", str(tmp_path / "bundle")]
        + ["--catalog", str(MYNTRA / "products.jsonl"), "--split", "test"]
        + ["--out", str(tmp_path / "eval")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert evaluated.returncode == 2, evaluated.stdout + evaluated.stderr
    assert "fit_on: all" in evaluated.stderr
