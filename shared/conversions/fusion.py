"""Conversions at the fusion service's boundary (vitrine.fusion.v1)."""

from __future__ import annotations

from shared.api.vitrine.fusion.v1 import fusion_pb2 as pb
from shared.conversions._embeddings import batch_to_vectors, vectors_to_batch
from shared.types import Embeddings, FusionInput


def request_to_proto(pair: FusionInput) -> pb.FuseRequest:
    msg = pb.FuseRequest()
    vectors_to_batch(pair.image_vectors, msg.image_embeddings)
    vectors_to_batch(pair.text_vectors, msg.text_embeddings)
    return msg


def request_from_proto(msg: pb.FuseRequest) -> FusionInput:
    """Raises ValueError for malformed batches or a count mismatch between the two halves."""
    images = batch_to_vectors(msg.image_embeddings, name="image_embeddings")
    texts = batch_to_vectors(msg.text_embeddings, name="text_embeddings")
    if images.shape[0] != texts.shape[0]:
        raise ValueError(f"{images.shape[0]} image embeddings but {texts.shape[0]} text embeddings")
    return FusionInput(images, texts)


def response_to_proto(result: Embeddings) -> pb.FuseResponse:
    msg = pb.FuseResponse(model_version=result.model_version)
    vectors_to_batch(result.vectors, msg.embeddings)
    return msg


def response_from_proto(msg: pb.FuseResponse) -> Embeddings:
    return Embeddings(batch_to_vectors(msg.embeddings), msg.model_version)
