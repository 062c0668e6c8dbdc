"""The baseline of `bench serving`: the deployments' own classes with no Serve around them,
behind a plain grpc.aio server in a process of its own."""

from __future__ import annotations

import asyncio
import multiprocessing
import tempfile
import threading
from pathlib import Path

import grpc

from operations.ports import free_port
from shared.api.vitrine.fusion.v1 import fusion_pb2_grpc
from shared.api.vitrine.image_encoder.v1 import image_encoder_pb2_grpc
from shared.api.vitrine.store.v1 import store_pb2_grpc
from shared.api.vitrine.text_encoder.v1 import text_encoder_pb2_grpc
from shared.conversions import fusion as fusion_conv
from shared.conversions import image_encoder as image_conv
from shared.conversions import store as store_conv
from shared.conversions import text_encoder as text_conv
from shared.types import Embeddings
from shared.vectorstore import open_store


class PlainServer:
    """The deployments' own classes, unwrapped from Serve, optionally behind a plain grpc.aio
    server on `port` (run in a process of its own, so the client's GIL does not slow it)."""

    def __init__(self, bundle: Path, port: int | None = None) -> None:
        from services.fusion.deployment import Fusion
        from services.image_encoder.deployment import ImageEncoder
        from services.text_encoder.deployment import TextEncoder

        self.image = ImageEncoder.func_or_class(
            bundle_path=str(bundle),
            device="cpu",
            max_images=64,
            max_image_bytes=2**24,
            max_image_pixels=40_000_000,
            torch_threads=1,
        )
        self.text = TextEncoder.func_or_class(
            bundle_path=str(bundle),
            device="cpu",
            max_texts=256,
            max_text_chars=1000,
            torch_threads=1,
        )
        self.fusion = Fusion.func_or_class(
            bundle_path=str(bundle), device="cpu", max_rows=1024, torch_threads=1
        )
        self.port = port
        if port is None:
            return
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True).start()
        ready.wait()

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        server = grpc.aio.server()
        outer = self

        # The same work as the deployments (convert, validate, forward, convert back), with no
        # Serve around it (and no batcher: each call is its own forward pass).
        class Image(image_encoder_pb2_grpc.ImageEncoderServiceServicer):
            async def EmbedImages(self, request, context):  # noqa: N802
                decoded = outer.image._decode(list(request.images))
                vectors = await asyncio.to_thread(outer.image._forward, decoded)
                return image_conv.response_to_proto(Embeddings(vectors, outer.image.model_version))

        class Text(text_encoder_pb2_grpc.TextEncoderServiceServicer):
            async def EmbedTexts(self, request, context):  # noqa: N802
                texts = list(request.texts)
                outer.text._check(texts)
                vectors = await asyncio.to_thread(outer.text._forward, texts)
                return text_conv.response_to_proto(Embeddings(vectors, outer.text.model_version))

        class Fuse(fusion_pb2_grpc.FusionServiceServicer):
            async def Fuse(self, request, context):  # noqa: N802
                pair = fusion_conv.request_from_proto(request)
                outer.fusion._check(pair)
                vectors = await asyncio.to_thread(
                    outer.fusion._forward, pair.image_vectors.copy(), pair.text_vectors.copy()
                )
                return fusion_conv.response_to_proto(
                    Embeddings(vectors, outer.fusion.model_version)
                )

        image_encoder_pb2_grpc.add_ImageEncoderServiceServicer_to_server(Image(), server)
        text_encoder_pb2_grpc.add_TextEncoderServiceServicer_to_server(Text(), server)
        fusion_pb2_grpc.add_FusionServiceServicer_to_server(Fuse(), server)
        store = open_store(
            f"edge:{tempfile.mkdtemp()}", model_version="plain", dim=256, indexed_fields={}
        )

        class Store(store_pb2_grpc.VectorStoreServiceServicer):
            async def RetrievePoints(self, request, context):  # noqa: N802
                query = store_conv.retrieve_request_from_proto(request)
                points = await asyncio.to_thread(
                    store.retrieve, list(query.product_ids), with_vectors=query.with_vectors
                )
                return store_conv.retrieve_response_to_proto(points)

        store_pb2_grpc.add_VectorStoreServiceServicer_to_server(Store(), server)
        server.add_insecure_port(f"127.0.0.1:{self.port}")
        self._loop.run_until_complete(server.start())
        ready.set()
        self._loop.run_forever()


def _plain_server_main(bundle: str, port: int, ready) -> None:
    PlainServer(Path(bundle), port)
    ready.set()
    threading.Event().wait()


def start_plain_server(bundle: Path) -> int:
    context = multiprocessing.get_context("spawn")
    ready, port = context.Event(), free_port()
    context.Process(target=_plain_server_main, args=(str(bundle), port, ready), daemon=True).start()
    if not ready.wait(300):
        raise RuntimeError("the plain gRPC server did not start")
    return port
