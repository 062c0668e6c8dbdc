"""gRPC clients of the encoders, fusion and the vector store, dialling the targets Serve publishes.

Each client keeps one channel per target (replica or proxy), refreshes the list in the
background, spreads calls round-robin, passes the caller's remaining deadline on as the call's
timeout, and turns gRPC statuses back into the gateway's exceptions.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import grpc

from shared.api.vitrine.fusion.v1 import fusion_pb2_grpc
from shared.api.vitrine.image_encoder.v1 import image_encoder_pb2_grpc
from shared.api.vitrine.store.v1 import store_pb2_grpc
from shared.api.vitrine.text_encoder.v1 import text_encoder_pb2_grpc
from shared.conversions import fusion as fusion_conv
from shared.conversions import image_encoder as image_conv
from shared.conversions import store as store_conv
from shared.conversions import text_encoder as text_conv
from shared.logs import serve_logger
from shared.serving.endpoints import grpc_targets
from shared.serving.errors import DependencyError, LimitError, NotFoundError, RequestError
from shared.types import Embeddings, Filter, FusionInput, Hit
from shared.vectorstore.base import PointQuery, RetrieveQuery, StoredPoint

log = serve_logger(__name__)

REFRESH_S = 2.0
CLOSE_GRACE_S = 60.0  # longer than any call's deadline
_CALLER_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT: RequestError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: LimitError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
}


class ServiceClient:
    """Round-robin gRPC stubs over the published targets of one Serve application."""

    def __init__(self, app_name: str, stub_class: Callable, *, max_message_bytes: int) -> None:
        self.app_name = app_name
        self._stub_class = stub_class
        self._metadata = (("application", app_name),)
        self._options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        self._channels: dict[str, tuple[grpc.aio.Channel, object]] = {}
        self._cycle = iter(())
        self._refresher: asyncio.Task | None = None
        self._closing: set[asyncio.Task] = set()

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
    def __init__(self, app_name: str, **kw) -> None:
        super().__init__(app_name, text_encoder_pb2_grpc.TextEncoderServiceStub, **kw)

    async def embed(self, texts: list[str], *, timeout_s: float | None = None) -> Embeddings:
        reply = await self.call(
            "EmbedTexts", text_conv.request_to_proto(texts), timeout_s=timeout_s
        )
        return text_conv.response_from_proto(reply)


class ImageEncoderClient(ServiceClient):
    def __init__(self, app_name: str, **kw) -> None:
        super().__init__(app_name, image_encoder_pb2_grpc.ImageEncoderServiceStub, **kw)

    async def embed(self, images: list[bytes], *, timeout_s: float | None = None) -> Embeddings:
        reply = await self.call(
            "EmbedImages", image_conv.request_to_proto(images), timeout_s=timeout_s
        )
        return image_conv.response_from_proto(reply)


class FusionClient(ServiceClient):
    def __init__(self, app_name: str, **kw) -> None:
        super().__init__(app_name, fusion_pb2_grpc.FusionServiceStub, **kw)

    async def fuse(self, pair: FusionInput, *, timeout_s: float | None = None) -> Embeddings:
        reply = await self.call("Fuse", fusion_conv.request_to_proto(pair), timeout_s=timeout_s)
        return fusion_conv.response_from_proto(reply)


class VectorStoreClient(ServiceClient):
    def __init__(self, app_name: str, **kw) -> None:
        super().__init__(app_name, store_pb2_grpc.VectorStoreServiceStub, **kw)

    async def search(
        self, vector, *, top_k: int, filter: Filter | None, timeout_s: float | None = None
    ) -> list[Hit]:
        request = store_conv.search_request_to_proto(PointQuery(vector, top_k, filter))
        reply = await self.call("SearchPoints", request, timeout_s=timeout_s)
        return store_conv.search_response_from_proto(reply)

    async def retrieve(
        self, product_ids: list[str], *, with_vectors: bool = False, timeout_s: float | None = None
    ) -> list[StoredPoint]:
        request = store_conv.retrieve_request_to_proto(
            RetrieveQuery(tuple(product_ids), with_vectors)
        )
        reply = await self.call("RetrievePoints", request, timeout_s=timeout_s)
        return store_conv.retrieve_response_from_proto(reply)
