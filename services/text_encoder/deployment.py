"""The text encoder deployment: texts in, L2-normalised embeddings out."""

from __future__ import annotations

import numpy as np
from ray import serve

from shared.api.vitrine.text_encoder.v1 import text_encoder_pb2 as pb
from shared.conversions import text_encoder as conv
from shared.logs import serve_logger
from shared.observability.tracing import TracingConfig
from shared.observability.tracing import setup as trace_setup
from shared.serving.apps import TEXT_ENCODER_DEPLOYMENT
from shared.serving.auth import InternalToken
from shared.serving.errors import LimitError, RequestError, grpc_method, parse
from shared.serving.ray_fixes import bind_replica_ports_alone
from shared.serving.replica import BatchedModelReplica
from shared.types import Embeddings

log = serve_logger(__name__)


@serve.deployment(name=TEXT_ENCODER_DEPLOYMENT)
class TextEncoder(BatchedModelReplica):
    """Tokenises and embeds texts; concurrent requests share dynamic batches.

    gRPC callers use `EmbedTexts` (vitrine.text_encoder.v1) at the replica's own direct-ingress
    port (or Serve's gRPC proxy); Python callers may use `embed` through a handle.
    """

    def __init__(
        self,
        *,
        internal_token: InternalToken | None = None,
        tracing: TracingConfig | None = None,
        bundle_path: str,
        device: str,
        max_texts: int,
        max_text_chars: int,
        torch_threads: int,
        runtime: str = "auto",
    ) -> None:
        bind_replica_ports_alone()  # before Serve binds this replica's ports
        trace_setup("text-encoder", tracing)
        self._internal_token = internal_token  # checked by every grpc_method
        self._start(
            "text",
            bundle_path=bundle_path,
            device=device,
            runtime=runtime,
            torch_threads=torch_threads,
            forward=self._forward,
        )
        self._max_texts, self._max_chars = max_texts, max_text_chars

    def _check(self, texts: list[str]) -> None:
        if not texts:
            raise RequestError("no texts given")
        if len(texts) > self._max_texts:
            raise LimitError(f"{len(texts)} texts in one request, more than {self._max_texts}")
        for i, text in enumerate(texts):
            if not text.strip():
                raise RequestError(f"text {i} is empty")
            if len(text) > self._max_chars:
                raise LimitError(
                    f"text {i} has {len(text)} characters, more than {self._max_chars}"
                )

    def _forward(self, texts: list[str]) -> np.ndarray:
        """Runs on the batcher's thread: [len(texts), dim]."""
        return self._model.encode(texts)

    async def embed(self, texts: list[str]) -> Embeddings:
        """Embeddings [len(texts), dim].

        Raises:
            RequestError: a text is empty or breaks a limit (the message says which).
        """
        self._check(texts)
        rows = await self._batcher.submit(texts)
        return Embeddings(np.stack(rows), self.model_version)

    @grpc_method
    async def EmbedTexts(self, request: pb.EmbedTextsRequest) -> pb.EmbedTextsResponse:  # noqa: N802 - gRPC name
        return conv.response_to_proto(await self.embed(parse(conv.request_from_proto, request)))

    def __del__(self) -> None:
        if hasattr(self, "_batcher"):
            self._batcher.close()
