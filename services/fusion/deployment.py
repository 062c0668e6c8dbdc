"""The fusion deployment: image and text embeddings of composed queries in, query embeddings out.

The additive-attention fusion module of the model bundle (shared.models.heads).
"""

from __future__ import annotations

import numpy as np
from ray import serve

from shared.api.vitrine.fusion.v1 import fusion_pb2 as pb
from shared.conversions import fusion as conv
from shared.logs import serve_logger
from shared.observability.tracing import TracingConfig
from shared.observability.tracing import setup as trace_setup
from shared.serving.apps import FUSION_DEPLOYMENT
from shared.serving.auth import InternalToken
from shared.serving.errors import LimitError, RequestError, grpc_method, parse
from shared.serving.ray_fixes import bind_replica_ports_alone
from shared.serving.replica import BatchedModelReplica
from shared.types import Embeddings, FusionInput

log = serve_logger(__name__)


@serve.deployment(name=FUSION_DEPLOYMENT)
class Fusion(BatchedModelReplica):
    """Fuses (image, text) embedding pairs; concurrent requests share dynamic batches."""

    def __init__(
        self,
        *,
        internal_token: InternalToken | None = None,
        tracing: TracingConfig | None = None,
        bundle_path: str,
        device: str,
        max_rows: int,
        torch_threads: int,
        runtime: str = "auto",
    ) -> None:
        bind_replica_ports_alone()  # before Serve binds this replica's ports
        trace_setup("fusion", tracing)
        self._internal_token = internal_token  # checked by every grpc_method
        self._start(
            "fusion",
            bundle_path=bundle_path,
            device=device,
            runtime=runtime,
            torch_threads=torch_threads,
            forward=self._forward_pairs,
        )
        self._max_rows = max_rows

    def _check(self, pair: FusionInput) -> None:
        image, text = pair.image_vectors, pair.text_vectors
        if image.shape != text.shape:
            raise RequestError(
                f"image embeddings {image.shape} and text embeddings {text.shape} differ in shape"
            )
        if image.shape[0] == 0:
            raise RequestError("no embeddings given")
        if image.shape[1] != self.dim:
            raise RequestError(f"embeddings are {image.shape[1]}-d; this model fuses {self.dim}-d")
        if image.shape[0] > self._max_rows:
            raise LimitError(f"{image.shape[0]} pairs in one request, more than {self._max_rows}")
        if not (np.isfinite(image).all() and np.isfinite(text).all()):
            raise RequestError("embeddings contain NaN or infinite values")

    def _forward_pairs(self, pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Runs on the batcher's thread."""
        image = np.stack([p[0] for p in pairs])  # [b, dim]
        text = np.stack([p[1] for p in pairs])  # [b, dim]
        return self._forward(image, text)

    def _forward(self, image: np.ndarray, text: np.ndarray) -> np.ndarray:
        return self._model.fuse(image, text)  # [b, dim]

    async def fuse(self, pair: FusionInput) -> Embeddings:
        """Query embeddings [n, dim] for n (image, text) embedding pairs.

        Raises:
            RequestError: shapes disagree with each other or with the model, or values are not finite.
        """
        self._check(pair)
        rows = await self._batcher.submit(
            [
                (np.asarray(i, np.float32), np.asarray(t, np.float32))
                for i, t in zip(pair.image_vectors, pair.text_vectors, strict=True)
            ]
        )
        return Embeddings(np.stack(rows), self.model_version)

    @grpc_method
    async def Fuse(self, request: pb.FuseRequest) -> pb.FuseResponse:  # noqa: N802 - gRPC name
        return conv.response_to_proto(await self.fuse(parse(conv.request_from_proto, request)))

    def __del__(self) -> None:
        if hasattr(self, "_batcher"):
            self._batcher.close()
