"""Settings of the fusion process (a Ray Serve application): VITRINE_FUSION_* variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.settings import BundleSettings, process_config


class FusionSettings(BundleSettings):
    model_config = process_config("fusion")

    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where the model runs.")
    runtime: Literal["auto", "torch", "onnxruntime"] = Field(
        "auto",
        description="Inference runtime; auto = the graphs the bundle was exported for on a CPU "
        "(onnxruntime when it has them), else torch.",
    )
    max_rows: int = Field(1024, ge=1, description="Most query pairs in one request.")
    torch_threads: int = Field(
        0,
        ge=0,
        le=256,
        description="Torch intra-op threads per replica; 0 = its CPU budget "
        "(ray_actor_options.num_cpus rounded, at least 1).",
    )
