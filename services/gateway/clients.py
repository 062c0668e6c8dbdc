"""gRPC clients of the encoders, fusion and the vector store, dialling the targets Serve publishes.

Each client keeps one channel per target (replica or proxy), refreshes the list in the
background, spreads calls round-robin, passes the caller's remaining deadline on as the call's
timeout, and turns gRPC statuses back into the gateway's exceptions. The one-item methods a query
uses (`embed`, `fuse`, `search`, `vector_of`) coalesce concurrent queries' items into shared
calls (shared.serving.coalescing).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import grpc
import numpy as np

from shared.api.vitrine.fusion.v1 import fusion_pb2_grpc
from shared.api.vitrine.image_encoder.v1 import image_encoder_pb2_grpc
from shared.api.vitrine.store.v1 import store_pb2_grpc
from shared.api.vitrine.text_encoder.v1 import text_encoder_pb2_grpc
from shared.conversions import fusion as fusion_conv
from shared.conversions import image_encoder as image_conv
from shared.conversions import store as store_conv
from shared.conversions import text_encoder as text_conv
from shared.logs import serve_logger
from shared.serving.auth import InternalToken
from shared.serving.coalescing import Coalescer
from shared.serving.endpoints import grpc_targets
from shared.serving.errors import DependencyError, LimitError, RequestError
from shared.types import Embeddings, Filter, FusionInput, Hit
from shared.vectorstore.base import PointQuery, RetrieveQuery, StoredPoint

log = serve_logger(__name__)

REFRESH_S = 2.0
CALLS_PER_TARGET = 2  # default coalesced calls out at once per replica target
MESSAGE_SLACK_BYTES = 64 * 1024  # room for the message's own fields beside the image bytes
CLOSE_GRACE_S = 60.0  # longer than any call's deadline
# NOT_FOUND is not among them: no dependency answers it for a caller's mistake, and Serve's gRPC
# proxy answers it for an application that is gone ("Application 'vector-store' not found"),
# which is a dependency down (tests/integration/reliability/test_limits_and_degraded.py).
_CALLER_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT: RequestError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: LimitError,
}


class ServiceClient:
    """Round-robin gRPC stubs over the published targets of one Serve application."""

    def __init__(
        self,
        app_name: str,
        stub_class: Callable,
        *,
        max_message_bytes: int,
        calls_per_target: int = CALLS_PER_TARGET,
        internal_token: InternalToken | None = None,
    ) -> None:
        self.app_name = app_name
        self.calls_per_target = calls_per_target
        self._stub_class = stub_class
        # Without the token every internal service answers UNAUTHENTICATED.
        self._metadata = (
            internal_token.metadata(app_name) if internal_token else (("application", app_name),)
        )
        self._options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        self._channels: dict[str, tuple[grpc.aio.Channel, object]] = {}
        self._cycle = iter(())
        self._refresher: asyncio.Task | None = None
        self._closing: set[asyncio.Task] = set()
        self._coalescers: list[Coalescer] = []

    async def refresh(self) -> None:
        targets = await grpc_targets(self.app_name)
        if set(targets) == set(self._channels):
            return
        old = self._channels
        self._channels = {t: old.get(t) or self._connect(t) for t in targets}
        for target, (channel, _) in old.items():
            if target not in self._channels:
                # Closed later, not now: closing cancels the calls still in flight on it, and
                # Serve's published list does change under running calls (a replica replaced,
                # or a flip between replica ports and the proxy's).
                self._closing.add(asyncio.create_task(channel.close(grace=CLOSE_GRACE_S)))
                self._closing = {t for t in self._closing if not t.done()}
        self._cycle = itertools.cycle(list(self._channels.values()))
        for coalescer in self._coalescers:
            coalescer.max_in_flight = self.calls_per_target * max(1, len(self._channels))
        log.info("%s: gRPC targets %s", self.app_name, targets)

    def _connect(self, target: str):
        channel = grpc.aio.insecure_channel(target, options=self._options)
        return channel, self._stub_class(channel)

    async def _refresh_forever(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as e:  # the controller may be restarting; keep the old list
                log.warning("%s: cannot refresh targets: %s", self.app_name, e)
            await asyncio.sleep(REFRESH_S)

    def start(self) -> None:
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_forever())

    @property
    def max_message_bytes(self) -> int:
        return self._options[0][1]

    def coalescer(self, send, *, max_items: int, **kw) -> Coalescer:
        """A Coalescer over this service that keeps `calls_per_target` calls out per published
        target (by default two: one computing, one waiting in the replica's batcher)."""
        coalescer = Coalescer(send, max_items=max_items, max_in_flight=self.calls_per_target, **kw)
        self._coalescers.append(coalescer)
        return coalescer

    async def call(self, method: str, request, *, timeout_s: float | None):
        if not self._channels:
            await self.refresh()
        if not self._channels:
            raise DependencyError(f"{self.app_name} has no running replica")
        _, stub = next(self._cycle)
        try:
            return await getattr(stub, method)(request, timeout=timeout_s, metadata=self._metadata)
        except grpc.aio.AioRpcError as e:
            raise _exception(self.app_name, e) from None


def _exception(app_name: str, e: grpc.aio.AioRpcError) -> Exception:
    code = e.code()
    if code in _CALLER_ERRORS:
        return _CALLER_ERRORS[code](e.details())
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return TimeoutError(f"{app_name} did not answer within the deadline")
    return DependencyError(f"{app_name} failed: {code.name}: {e.details()}")


class TextEncoderClient(ServiceClient):
    def __init__(self, app_name: str, *, max_items: int = 64, **kw) -> None:
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
    def __init__(self, app_name: str, *, max_items: int = 16, **kw) -> None:
        super().__init__(app_name, image_encoder_pb2_grpc.ImageEncoderServiceStub, **kw)
        self._one = self.coalescer(
            self._embed_rows,
            max_items=max_items,
            weigh=len,
            max_weight=self.max_message_bytes - MESSAGE_SLACK_BYTES,
        )

    async def _embed_rows(self, images: list[bytes], timeout_s: float | None) -> list[Embeddings]:
        reply = await self.call(
            "EmbedImages", image_conv.request_to_proto(images), timeout_s=timeout_s
        )
        return _rows(image_conv.response_from_proto(reply))

    async def embed(self, image: bytes, *, timeout_s: float | None = None) -> Embeddings:
        """One image's embedding [1, dim], in a call shared with concurrent queries."""
        return await self._one.call(image, timeout_s=timeout_s)


class FusionClient(ServiceClient):
    def __init__(self, app_name: str, *, max_items: int = 64, **kw) -> None:
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


class VectorStoreClient(ServiceClient):
    def __init__(self, app_name: str, *, max_items: int = 64, **kw) -> None:
        super().__init__(app_name, store_pb2_grpc.VectorStoreServiceStub, **kw)
        self._searches = self.coalescer(self._search_many, max_items=max_items)
        self._vectors = self.coalescer(self._retrieve_many, max_items=max_items)

    async def _search_many(
        self, queries: list[PointQuery], timeout_s: float | None
    ) -> list[list[Hit]]:
        request = store_conv.search_batch_request_to_proto(queries)
        reply = await self.call("SearchPointsBatch", request, timeout_s=timeout_s)
        return store_conv.search_batch_response_from_proto(reply)

    async def search(
        self, vector, *, top_k: int, filter: Filter | None, timeout_s: float | None = None
    ) -> list[Hit]:
        """The top_k hits, in a call shared with concurrent queries."""
        return await self._searches.call(PointQuery(vector, top_k, filter), timeout_s=timeout_s)

    async def _retrieve_many(
        self, product_ids: list[str], timeout_s: float | None
    ) -> list[StoredPoint | None]:
        points = await self.retrieve(
            product_ids, with_vectors=True, with_payload=False, timeout_s=timeout_s
        )
        found = {p.product_id: p for p in points}
        return [found.get(pid) for pid in product_ids]

    async def vector_of(self, product_id: str, *, timeout_s: float | None = None):
        """A stored product's point with its vector, or None; in a call shared with concurrent
        queries."""
        return await self._vectors.call(product_id, timeout_s=timeout_s)

    async def retrieve(
        self,
        product_ids: list[str],
        *,
        with_vectors: bool = False,
        with_payload: bool = True,
        timeout_s: float | None = None,
    ) -> list[StoredPoint]:
        request = store_conv.retrieve_request_to_proto(
            RetrieveQuery(tuple(product_ids), with_vectors, with_payload)
        )
        reply = await self.call("RetrievePoints", request, timeout_s=timeout_s)
        return store_conv.retrieve_response_from_proto(reply)


def _rows(embeddings: Embeddings) -> list[Embeddings]:
    """Each row of a multi-item answer as its own one-row Embeddings."""
    return [
        Embeddings(embeddings.vectors[i : i + 1], embeddings.model_version)
        for i in range(len(embeddings.vectors))
    ]
