"""`make run CATALOG=PATH TRAIN_CONFIG=FILE`: the choice is checked before anything starts, and
every training config a catalog's bundle can name loads."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from training.config import TrainConfig

ROOT = Path(__file__).parents[2]


def _run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """scripts/run.sh with `env`: these cases exit before the supervisor, Ray or a port."""
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "run.sh")],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_missing_training_config_is_refused_before_anything_starts(tmp_path):
    done = _run(tmp_path, CATALOG=str(tmp_path), TRAIN_CONFIG="training/configs/nope.yaml")
    assert done.returncode == 2
    assert "TRAIN_CONFIG: no training config at training/configs/nope.yaml" in done.stderr
    assert not (tmp_path / ".ray").exists()  # no token made: nothing ran


def test_a_training_config_without_a_catalog_is_refused(tmp_path):
    done = _run(tmp_path, TRAIN_CONFIG="training/configs/catalog-combined.yaml")
    assert done.returncode == 2
    assert "give CATALOG=PATH too" in done.stderr


@pytest.mark.parametrize("name", ["catalog", "catalog-combined"])
def test_the_catalog_training_configs_load(name):
    cfg = TrainConfig.model_validate(
        yaml.safe_load((ROOT / "training" / "configs" / f"{name}.yaml").read_text())
    )
    assert cfg.data.kind == "catalog" and cfg.refits()
    assert bool(cfg.image.combine_with) == (name == "catalog-combined")
