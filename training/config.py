"""Settings of the training process (`vitrine train`); hyper-parameters come from a config file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from shared.settings import VitrineSettings


class TrainingSettings(VitrineSettings):
    storage_path: Path = Field(
        Path("runs"), description="Ray Train storage (checkpoints, results)."
    )
    num_workers: int = Field(2, ge=1, description="Ray Train workers.")
    use_gpu: bool = Field(False, description="Train on GPUs when the cluster has them.")
