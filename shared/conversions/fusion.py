"""Conversions at the fusion service's boundary (vitrine.fusion.v1)."""

from __future__ import annotations

from shared.api.vitrine.fusion.v1 import fusion_pb2 as pb
from shared.conversions._embeddings import field_to_vectors, vectors_to_field
from shared.types import Embeddings, FusionInput


def request_to_proto(pair: FusionInput) -> pb.FuseRequest:
    msg = pb.FuseRequest()
    vectors_to_field(pair.image_vectors, msg.image_embeddings)
    vectors_to_field(pair.text_vectors, msg.text_embeddings)
    return msg


def request_from_proto(msg: pb.FuseRequest) -> FusionInput:
    """Raises ValueError when the two lists differ in count or an embedding in length."""
    if len(msg.image_embeddings) != len(msg.text_embeddings):
        raise ValueError(
            f"{len(msg.image_embeddings)} image embeddings but {len(msg.text_embeddings)} text embeddings"
        )
    images = field_to_vectors(msg.image_embeddings, name="image_embeddings")
    texts = field_to_vectors(msg.text_embeddings, name="text_embeddings")
    return FusionInput(images, texts)


def response_to_proto(result: Embeddings) -> pb.FuseResponse:
    msg = pb.FuseResponse(dim=result.dim, model_version=result.model_version)
    vectors_to_field(result.vectors, msg.embeddings)
    return msg


def response_from_proto(msg: pb.FuseResponse) -> Embeddings:
    return Embeddings(field_to_vectors(msg.embeddings, dim=msg.dim), msg.model_version)
