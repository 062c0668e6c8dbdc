"""Serve application builder: `import_path: services.gateway.app:build_app`."""

from __future__ import annotations

from typing import cast

from ray.serve import Application, Deployment

from services.gateway.config import GatewaySettings
from services.gateway.deployment import Gateway
from services.gateway.security import ApiKeys, TLSFiles, open_gateway_problem
from services.gateway.validation import Limits
from shared.serving.auth import caller_internal_token
from shared.settings import SettingsError, load_settings


def build_app(args: dict) -> Application:
    """The gateway application; `args` (from the Serve config) override VITRINE_* settings."""
    s = load_settings(GatewaySettings, **args)
    tls = TLSFiles(s.tls_cert_file, s.tls_key_file, s.tls_client_ca_file)
    try:
        tls.check()
        # Parsed here, so only the keys' digests travel to the replicas; the key file is read
        # by each replica, on the node where it is mounted.
        keys = ApiKeys.load(
            env_text=s.api_keys.get_secret_value() if s.api_keys else None, file=None
        )
        token = caller_internal_token(s, caller="the gateway")
    except ValueError as e:
        raise SettingsError(f"invalid GatewaySettings: {e}") from None
    # Checked again by each replica once it has read api_keys_file (an empty file is no keys).
    if problem := open_gateway_problem(
        environment=s.environment,
        keys_configured=keys.enabled or bool(s.api_keys_file),
        allow_unauthenticated=s.allow_unauthenticated,
    ):
        raise SettingsError(f"invalid GatewaySettings: {problem}")
    # @serve.deployment made the class a Deployment; mypy ignores class decorators (mypy#3135).
    return cast(Deployment, Gateway).bind(
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
            max_query_pixels=s.max_query_pixels,
            max_depth=s.max_depth,
            default_mode=s.default_mode,
            candidates=s.facet_candidates,
        ),
        request_timeout_s=s.request_timeout_s,
        max_request_bytes=s.max_request_bytes,
        http_read_timeout_s=s.http_read_timeout_s,
        http_max_connections=s.http_max_connections,
        calls_per_target=s.calls_per_target,
        api_keys=keys,
        api_keys_file=s.api_keys_file,
        tls=tls,
        internal_token=token,
        tracing=s.tracing(),
        query_log_sample_ratio=s.query_log_sample_ratio,
        require_api_keys=s.environment == "production" and not s.allow_unauthenticated,
    )
