"""Settings of the gateway process (the public search API)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import VitrineSettings


class GatewaySettings(VitrineSettings):
    grpc_port: int = Field(9000, ge=1, le=65535, description="Port of the public gRPC API.")
    http_port: int = Field(
        8000, ge=1, le=65535, description="Port of the HTTP/JSON API and web page."
    )
    default_top_k: int = Field(10, ge=1, description="Hits returned when a request sets no top_k.")
    max_top_k: int = Field(100, ge=1, description="Largest top_k accepted.")
    max_request_bytes: int = Field(8 * 2**20, ge=1024, description="Largest request accepted.")
    request_timeout_s: float = Field(10.0, gt=0, description="Deadline when the caller sets none.")
    max_text_chars: int = Field(1000, ge=1, description="Longest query text accepted.")
    max_image_bytes: int = Field(
        8 * 2**20, ge=1024, description="Largest reference image accepted, in bytes."
    )
    image_encoder_app: str = Field("image-encoder", description="Serve application name.")
    text_encoder_app: str = Field("text-encoder", description="Serve application name.")
    fusion_app: str = Field("fusion", description="Serve application name.")
    vector_store_app: str = Field("vector-store", description="Serve application name.")
