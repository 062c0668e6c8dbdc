"""Model placement for the serving deployments: device, bundle, threads."""

from __future__ import annotations

from pathlib import Path

import torch

from shared.logs import serve_logger

log = serve_logger(__name__)

DEFAULT_BUNDLE = Path("artifacts/bundles/default")
"""Where a bundle is looked for when none is configured (relative to the working directory)."""


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


def cpu_budget() -> float | None:
    """The CPUs Ray reserved for this actor (`ray_actor_options.num_cpus`), None outside Ray."""
    try:
        import ray

        if not ray.is_initialized():
            return None
        return float(ray.get_runtime_context().get_assigned_resources().get("CPU", 0.0))
    except Exception:  # not inside a Ray worker
        return None


def torch_threads_for(requested: int, budget: float | None) -> int:
    """Intra-op threads for a replica: `requested` when set, else its CPU budget rounded (at
    least 1), else torch's default. One batch computes at a time (shared.serving.batching), so
    the budget's cores all go to it, and replicas sharing a machine do not oversubscribe it."""
    if requested > 0:
        return requested
    if budget:
        return max(1, round(budget))
    return torch.get_num_threads()


def set_torch_threads(requested: int) -> int:
    """Caps torch's intra-op threads for this process (torch_threads_for); returns the number."""
    threads = torch_threads_for(requested, cpu_budget())
    torch.set_num_threads(threads)
    return threads


def describe_runtime(encoder) -> str:
    """ "torch", or e.g. "onnxruntime (int8-dynamic)": what a replica computes with."""
    quantization = getattr(encoder, "quantization", None)
    return f"{encoder.runtime} ({quantization})" if quantization else encoder.runtime
