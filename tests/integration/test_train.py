"""The real `vitrine train` entry point through Ray Train (2 workers) on the synthetic demo set
(the `demo_bundle` fixture, which `make run`'s test serves too), then `vitrine eval` on the
exported bundle."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.cli import run_vitrine

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_train_then_eval(demo_bundle, tmp_path):
    env = {
        **os.environ,
        "VITRINE_TRAIN_CACHE_DIR": str(demo_bundle.cache_dir),
        "RAY_AUTH_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
    }
    bundle = demo_bundle.path
    assert "epoch 10/10" in demo_bundle.output  # progress from the Ray Train workers

    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["training"]["data"]["kind"] == "synthetic"
    assert manifest["training"]["config"]["num_workers"] == 2
    held_out = manifest["metrics"]["held_out"]
    untrained = manifest["metrics"]["untrained_heads"]
    assert set(held_out["composed"]) == {"fusion", "sum", "image_only", "text_only"}
    assert "protocol" in held_out["fashioniq"]
    # Ten short epochs must beat the same backbones with untrained heads.
    assert held_out["text_to_image_own"]["R@5"] > untrained["text_to_image_own"]["R@5"]

    products = Path(manifest["training"]["data"]["path"]) / "products.jsonl"
    out = tmp_path / "eval"
    ev = run_vitrine(
        [
            "eval",
            "--bundle",
            str(bundle),
            "--catalog",
            str(products),
            "--split",
            "all",
            "--out",
            str(out),
        ],
        env,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["bundle"] == manifest["bundle_id"]
    assert metrics["gallery_size"] > held_out["gallery_size"]  # the whole catalog this time
    for k in (5, 10, 20, 30, 50):
        assert 0.0 <= metrics["composed"]["fusion"][f"F1@{k}"] <= 1.0
    assert (out / "curves.png").stat().st_size > 10_000
    assert "composed: learned fusion" in ev
