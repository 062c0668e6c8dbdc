"""The image encoder deployment: encoded image bytes in, L2-normalised embeddings out."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
from PIL import Image
from ray import serve

from shared.api.vitrine.image_encoder.v1 import image_encoder_pb2 as pb
from shared.conversions import image_encoder as conv
from shared.logs import serve_logger
from shared.models.transforms import (
    ImageDecodeError,
    PixelBudgetError,
    decode_image,
    request_pixels,
)
from shared.observability.tracing import TracingConfig
from shared.observability.tracing import setup as trace_setup
from shared.serving.apps import IMAGE_ENCODER_DEPLOYMENT
from shared.serving.auth import InternalToken
from shared.serving.errors import LimitError, RequestError, grpc_method, parse
from shared.serving.ray_fixes import bind_replica_ports_alone
from shared.serving.replica import BatchedModelReplica
from shared.types import Embeddings

log = serve_logger(__name__)

# The settings' default (ImageEncoderSettings.max_request_pixels), for callers that build the
# deployment themselves (bench).
MAX_REQUEST_PIXELS = 160_000_000


@dataclass(frozen=True)
class ImageLimits:
    max_images: int
    max_image_bytes: int
    max_image_pixels: int
    max_request_pixels: int


def decode_request(images: list[bytes], limits: ImageLimits) -> list[Image.Image]:
    """The images of one request, decoded once every limit is known to hold: count, then the
    pixel budget from the headers, then each image as it decodes.

    Raises:
        LimitError: too many images, or too many pixels together.
        RequestError: an image is not one we decode (the message names which).
    """
    if not images:
        raise RequestError("no images given")
    if len(images) > limits.max_images:
        raise LimitError(f"{len(images)} images in one request, more than {limits.max_images}")
    try:
        request_pixels(images, budget=limits.max_request_pixels, max_bytes=limits.max_image_bytes)
    except PixelBudgetError as e:
        raise LimitError(str(e)) from None
    except ImageDecodeError as e:
        raise RequestError(str(e)) from None
    decoded = []
    for i, data in enumerate(images):
        try:
            decoded.append(
                decode_image(
                    data, max_bytes=limits.max_image_bytes, max_pixels=limits.max_image_pixels
                )
            )
        except ImageDecodeError as e:
            raise RequestError(f"image {i}: {e}") from None
    return decoded


@serve.deployment(name=IMAGE_ENCODER_DEPLOYMENT)
class ImageEncoder(BatchedModelReplica):
    """Decodes, preprocesses and embeds images; concurrent requests share dynamic batches.

    gRPC callers (the gateway, the ingestion worker) use `EmbedImages`
    (vitrine.image_encoder.v1) at the replica's own direct-ingress port (or Serve's gRPC proxy);
    Python callers may use `embed` through a handle.
    """

    def __init__(
        self,
        *,
        internal_token: InternalToken | None = None,
        tracing: TracingConfig | None = None,
        bundle_path: str,
        device: str,
        max_images: int,
        max_image_bytes: int,
        max_image_pixels: int,
        torch_threads: int,
        runtime: str = "auto",
        max_request_pixels: int = MAX_REQUEST_PIXELS,
    ) -> None:
        bind_replica_ports_alone()  # before Serve binds this replica's ports
        trace_setup("image-encoder", tracing)
        self._internal_token = internal_token  # checked by every grpc_method
        self._start(
            "image",
            bundle_path=bundle_path,
            device=device,
            runtime=runtime,
            torch_threads=torch_threads,
            forward=self._forward,
        )
        self._limits = ImageLimits(
            max_images, max_image_bytes, max_image_pixels, max_request_pixels
        )

    def _decode(self, images: list[bytes]) -> list[Image.Image]:
        return decode_request(images, self._limits)

    def _forward(self, images: list[Image.Image]) -> np.ndarray:
        """Runs on the batcher's thread: [len(images), dim]."""
        return self._model.encode(images)

    async def embed(self, images: list[bytes]) -> Embeddings:
        """Embeddings [len(images), dim] of encoded images.

        Raises:
            RequestError: an image cannot be decoded (the message names which) or breaks a limit.
        """
        decoded = await asyncio.to_thread(self._decode, images)
        rows = await self._batcher.submit(decoded)
        return Embeddings(np.stack(rows), self.model_version)

    @grpc_method
    async def EmbedImages(self, request: pb.EmbedImagesRequest) -> pb.EmbedImagesResponse:  # noqa: N802 - gRPC name
        return conv.response_to_proto(await self.embed(parse(conv.request_from_proto, request)))

    def __del__(self) -> None:
        if hasattr(self, "_batcher"):
            self._batcher.close()
