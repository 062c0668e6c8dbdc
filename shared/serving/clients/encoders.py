"""The clients of the text encoder, the image encoder and fusion."""

from __future__ import annotations

import numpy as np

from shared.api.vitrine.fusion.v1 import fusion_pb2_grpc
from shared.api.vitrine.image_encoder.v1 import image_encoder_pb2_grpc
from shared.api.vitrine.text_encoder.v1 import text_encoder_pb2_grpc
from shared.conversions import fusion as fusion_conv
from shared.conversions import image_encoder as image_conv
from shared.conversions import text_encoder as text_conv
from shared.serving.apps import FUSION, IMAGE_ENCODER, TEXT_ENCODER
from shared.serving.clients.base import ServiceClient
from shared.types import Embeddings, FusionInput

MESSAGE_SLACK_BYTES = 64 * 1024  # room for the message's own fields beside the image bytes


class TextEncoderClient(ServiceClient):
    """vitrine.text_encoder.v1: texts in, embeddings out."""

    def __init__(self, app_name: str = TEXT_ENCODER, *, max_items: int = 64, **kw) -> None:
        super().__init__(app_name, text_encoder_pb2_grpc.TextEncoderServiceStub, **kw)
        self._one = self.coalescer(self._embed_rows, max_items=max_items)

    async def _embed_rows(self, texts: list[str], timeout_s: float | None) -> list[Embeddings]:
        return _rows(await self.embed_many(texts, timeout_s=timeout_s))

    async def embed_many(self, texts: list[str], *, timeout_s: float | None = None) -> Embeddings:
        """One call for these texts."""
        reply = await self.call(
            "EmbedTexts", text_conv.request_to_proto(texts), timeout_s=timeout_s
        )
        return text_conv.response_from_proto(reply)

    async def embed(self, text: str, *, timeout_s: float | None = None) -> Embeddings:
        """One text's embedding [1, dim], in a call shared with concurrent queries."""
        return await self._one.call(text, timeout_s=timeout_s)


class ImageEncoderClient(ServiceClient):
    """vitrine.image_encoder.v1: encoded images in, embeddings out."""

    def __init__(self, app_name: str = IMAGE_ENCODER, *, max_items: int = 16, **kw) -> None:
        super().__init__(app_name, image_encoder_pb2_grpc.ImageEncoderServiceStub, **kw)
        self._one = self.coalescer(
            self._embed_rows,
            max_items=max_items,
            weigh=len,
            max_weight=self.max_message_bytes - MESSAGE_SLACK_BYTES,
        )

    async def _embed_rows(self, images: list[bytes], timeout_s: float | None) -> list[Embeddings]:
        return _rows(await self.embed_many(images, timeout_s=timeout_s))

    async def embed_many(
        self, images: list[bytes], *, timeout_s: float | None = None
    ) -> Embeddings:
        """One call for these images: their embeddings [n, dim], in order.

        Raises:
            RequestError: an image the encoder cannot decode (the message names its index);
                LimitError: too many or too large images.
        """
        reply = await self.call(
            "EmbedImages", image_conv.request_to_proto(images), timeout_s=timeout_s
        )
        return image_conv.response_from_proto(reply)

    async def embed(self, image: bytes, *, timeout_s: float | None = None) -> Embeddings:
        """One image's embedding [1, dim], in a call shared with concurrent queries."""
        return await self._one.call(image, timeout_s=timeout_s)


class FusionClient(ServiceClient):
    """vitrine.fusion.v1: (image, text) embedding pairs in, query embeddings out."""

    def __init__(self, app_name: str = FUSION, *, max_items: int = 64, **kw) -> None:
        super().__init__(app_name, fusion_pb2_grpc.FusionServiceStub, **kw)
        self._one = self.coalescer(self._fuse_rows, max_items=max_items)

    async def _fuse_rows(
        self, pairs: list[tuple[np.ndarray, np.ndarray]], timeout_s: float | None
    ) -> list[Embeddings]:
        batch = FusionInput(np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]))
        reply = await self.call("Fuse", fusion_conv.request_to_proto(batch), timeout_s=timeout_s)
        return _rows(fusion_conv.response_from_proto(reply))

    async def fuse(
        self, image: np.ndarray, text: np.ndarray, *, timeout_s: float | None = None
    ) -> Embeddings:
        """The query embedding [1, dim] of one (image, text) pair of [dim] embeddings."""
        return await self._one.call((image, text), timeout_s=timeout_s)


def _rows(embeddings: Embeddings) -> list[Embeddings]:
    """Each row of a multi-item answer as its own one-row Embeddings."""
    return [
        Embeddings(embeddings.vectors[i : i + 1], embeddings.model_version)
        for i in range(len(embeddings.vectors))
    ]
