"""Serve application builder: `import_path: services.gateway.app:build_app`."""

from __future__ import annotations

from ray.serve import Application

from services.gateway.config import GatewaySettings
from services.gateway.deployment import Gateway
from services.gateway.search import Limits
from shared.settings import load_settings


def build_app(args: dict) -> Application:
    """The gateway application; `args` (from the Serve config) override VITRINE_* settings."""
    s = load_settings(GatewaySettings, **args)
    return Gateway.bind(
        apps={
            "image_encoder": s.image_encoder_app,
            "text_encoder": s.text_encoder_app,
            "fusion": s.fusion_app,
            "vector_store": s.vector_store_app,
        },
        grpc_port=s.grpc_port,
        http_port=s.http_port,
        limits=Limits(
            default_top_k=s.default_top_k,
            max_top_k=s.max_top_k,
            max_text_chars=s.max_text_chars,
            max_image_bytes=s.max_image_bytes,
        ),
        request_timeout_s=s.request_timeout_s,
        max_request_bytes=s.max_request_bytes,
    )
