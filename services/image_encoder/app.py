"""Serve application builder: `import_path: services.image_encoder.app:build_app`."""

from __future__ import annotations

from typing import cast

from ray.serve import Application, Deployment

from services.image_encoder.config import ImageEncoderSettings
from services.image_encoder.deployment import ImageEncoder
from shared.serving.auth import service_internal_token
from shared.serving.runtime import resolve_bundle
from shared.settings import load_settings


def build_app(args: dict) -> Application:
    """The image encoder application; `args` (from the Serve config) override VITRINE_* settings.

    Dynamic batching is the deployment's `user_config` in the Serve config, and nowhere else.
    """
    s = load_settings(ImageEncoderSettings, **args)
    token = service_internal_token(s, service="image encoder")
    # @serve.deployment made the class a Deployment; mypy ignores class decorators (mypy#3135).
    return cast(Deployment, ImageEncoder).bind(
        internal_token=token,
        tracing=s.tracing(),
        bundle_path=str(resolve_bundle(s.bundle_path)),
        device=s.device,
        runtime=s.runtime,
        max_images=s.max_images,
        max_image_bytes=s.max_image_bytes,
        max_image_pixels=s.max_image_pixels,
        max_request_pixels=s.max_request_pixels,
        torch_threads=s.torch_threads,
    )
