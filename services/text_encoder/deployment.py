"""The text encoder deployment: texts in, L2-normalised embeddings out."""

from __future__ import annotations

import asyncio

import numpy as np
import torch
from ray import serve

from shared.api.vitrine.text_encoder.v1 import text_encoder_pb2 as pb
from shared.conversions import text_encoder as conv
from shared.logs import serve_logger
from shared.models.bundle import load_bundle
from shared.serving.errors import LimitError, RequestError, grpc_method, parse
from shared.serving.runtime import (
    apply_batch_config,
    resolve_bundle,
    resolve_device,
    set_torch_threads,
)
from shared.types import Embeddings

log = serve_logger(__name__)


@serve.deployment(name="TextEncoder")
class TextEncoder:
    """Tokenises and embeds texts; concurrent requests share dynamic batches.

    Python callers use `embed` through a handle; gRPC callers use `EmbedTexts`
    (vitrine.text_encoder.v1) through the Serve gRPC proxy.
    """

    def __init__(
        self,
        *,
        bundle_path: str,
        device: str,
        max_texts: int,
        max_text_chars: int,
        torch_threads: int,
    ) -> None:
        set_torch_threads(torch_threads)
        bundle = resolve_bundle(bundle_path)
        self._device = resolve_device(device)
        self._model, manifest = load_bundle(bundle, parts=frozenset({"text"}), device=self._device)
        self.model_version = manifest.bundle_id
        self.dim = self._model.heads.embed_dim
        self._batching = None  # set by reconfigure() from the user_config
        self._max_texts, self._max_chars = max_texts, max_text_chars
        log.info("text encoder: bundle %s (%s) on %s", manifest.bundle_id, bundle, self._device)

    def reconfigure(self, user_config: dict) -> None:
        self._batching = apply_batch_config(self._embed_batch, user_config)

    def info(self) -> dict:
        """Model version, dimension and the dynamic-batching settings in force."""
        return {
            "model_version": self.model_version,
            "dim": self.dim,
            "batching": self._batching.model_dump() if self._batching else None,
            "torch_threads": torch.get_num_threads(),
        }

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

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _embed_batch(self, texts: list[str]) -> list[np.ndarray]:
        return list(await asyncio.to_thread(self._forward, texts))

    @torch.inference_mode()
    def _forward(self, texts: list[str]) -> np.ndarray:
        tokens = self._model.text.backbone.tokenize(texts)
        ids = tokens["input_ids"].to(self._device)  # [b, tokens]
        mask = tokens["attention_mask"].to(self._device)
        return self._model.text(ids, mask).float().cpu().numpy()  # [b, dim]

    async def embed(self, texts: list[str]) -> Embeddings:
        """Embeddings [len(texts), dim].

        Raises:
            RequestError: a text is empty or breaks a limit (the message says which).
        """
        self._check(texts)
        rows = await asyncio.gather(*(self._embed_batch(t) for t in texts))
        return Embeddings(np.stack(rows), self.model_version)

    @grpc_method
    async def EmbedTexts(self, request: pb.EmbedTextsRequest) -> pb.EmbedTextsResponse:  # noqa: N802 - gRPC name
        return conv.response_to_proto(await self.embed(parse(conv.request_from_proto, request)))
