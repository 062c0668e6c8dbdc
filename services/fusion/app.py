"""Serve application builder: `import_path: services.fusion.app:build_app`."""

from __future__ import annotations

from typing import cast

from ray.serve import Application, Deployment

from services.fusion.config import FusionSettings
from services.fusion.deployment import Fusion
from shared.serving.auth import service_internal_token
from shared.serving.runtime import resolve_bundle
from shared.settings import load_settings


def build_app(args: dict) -> Application:
    """The fusion application; `args` (from the Serve config) override VITRINE_* settings.

    Dynamic batching is the deployment's `user_config` in the Serve config, and nowhere else.
    """
    s = load_settings(FusionSettings, **args)
    token = service_internal_token(s, service="fusion")
    # @serve.deployment made the class a Deployment; mypy ignores class decorators (mypy#3135).
    return cast(Deployment, Fusion).bind(
        internal_token=token,
        tracing=s.tracing(),
        bundle_path=str(resolve_bundle(s.bundle_path)),
        device=s.device,
        runtime=s.runtime,
        max_rows=s.max_rows,
        torch_threads=s.torch_threads,
    )
