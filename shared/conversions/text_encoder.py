"""Conversions at the text encoder's boundary (vitrine.text_encoder.v1)."""

from __future__ import annotations

from collections.abc import Sequence

from shared.api.vitrine.text_encoder.v1 import text_encoder_pb2 as pb
from shared.conversions._embeddings import batch_to_vectors, vectors_to_batch
from shared.types import Embeddings


def request_to_proto(texts: Sequence[str]) -> pb.EmbedTextsRequest:
    return pb.EmbedTextsRequest(texts=list(texts))


def request_from_proto(msg: pb.EmbedTextsRequest) -> list[str]:
    return list(msg.texts)


def response_to_proto(result: Embeddings) -> pb.EmbedTextsResponse:
    msg = pb.EmbedTextsResponse(model_version=result.model_version)
    vectors_to_batch(result.vectors, msg.embeddings)
    return msg


def response_from_proto(msg: pb.EmbedTextsResponse) -> Embeddings:
    return Embeddings(batch_to_vectors(msg.embeddings), msg.model_version)
