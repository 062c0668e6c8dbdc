"""Settings of the fusion process (a Ray Serve application): VITRINE_FUSION_* variables."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ModelSettings, process_config


class FusionSettings(ModelSettings):
    model_config = process_config("fusion")

    max_rows: int = Field(1024, ge=1, description="Most query pairs in one request.")
