"""Model placement and dynamic-batching knobs for the serving deployments."""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field

from shared.logs import serve_logger

log = serve_logger(__name__)

DEFAULT_BUNDLE = Path("artifacts/bundles/default")
"""Where a bundle is looked for when none is configured (relative to the working directory)."""


class BatchConfig(BaseModel):
    """A deployment's `user_config`: dynamic batching, changeable while it runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_batch_size: int = Field(16, ge=1, le=4096)
    batch_wait_timeout_s: float = Field(0.005, ge=0, le=1)


def apply_batch_config(batched_method, user_config: dict) -> BatchConfig:
    """Validates a user_config and applies it to a `@serve.batch` method; returns it."""
    config = BatchConfig(**user_config)
    batched_method.set_max_batch_size(config.max_batch_size)
    batched_method.set_batch_wait_timeout_s(config.batch_wait_timeout_s)
    log.info("dynamic batching: %s", config)
    return config


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_bundle(path: Path | str | None) -> Path:
    """The bundle directory to load, absolute.

    Raises:
        FileNotFoundError: with what to do about it.
    """
    bundle = Path(path).expanduser() if path else DEFAULT_BUNDLE
    bundle = bundle.resolve()
    if not (bundle / "manifest.json").is_file():
        raise FileNotFoundError(
            f"no model bundle at {bundle}: train one (`vitrine train`) or set VITRINE_BUNDLE_PATH"
        )
    return bundle


def set_torch_threads(threads: int) -> None:
    """Caps torch's intra-op threads (0 keeps torch's default); several replicas share cores."""
    if threads > 0:
        torch.set_num_threads(threads)
