"""Conversions at the image encoder's boundary (vitrine.image_encoder.v1)."""

from __future__ import annotations

from collections.abc import Sequence

from shared.api.vitrine.image_encoder.v1 import image_encoder_pb2 as pb
from shared.conversions._embeddings import batch_to_vectors, vectors_to_batch
from shared.types import Embeddings


def request_to_proto(images: Sequence[bytes]) -> pb.EmbedImagesRequest:
    return pb.EmbedImagesRequest(images=list(images))


def request_from_proto(msg: pb.EmbedImagesRequest) -> list[bytes]:
    return list(msg.images)


def response_to_proto(result: Embeddings) -> pb.EmbedImagesResponse:
    msg = pb.EmbedImagesResponse(model_version=result.model_version)
    vectors_to_batch(result.vectors, msg.embeddings)
    return msg


def response_from_proto(msg: pb.EmbedImagesResponse) -> Embeddings:
    return Embeddings(batch_to_vectors(msg.embeddings), msg.model_version)
