"""The internal clients (shared/serving/clients) over real gRPC, against servicers of the real
generated interfaces on loopback: fixed targets, the token on every call, the one status
mapping, the synchronous facade the ingestion worker uses, and its retries."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

from shared.api.vitrine.image_encoder.v1 import image_encoder_pb2_grpc
from shared.api.vitrine.store.v1 import store_pb2_grpc
from shared.conversions import image_encoder as image_conv
from shared.conversions import store as store_conv
from shared.serving.apps import IMAGE_ENCODER
from shared.serving.auth import InternalToken
from shared.serving.clients import (
    ImageEncoderClient,
    LoopThread,
    ReplicaInfoClient,
    VectorStoreClient,
    shared_loop,
)
from shared.serving.errors import DependencyError, LimitError, RequestError
from shared.types import Embeddings
from shared.vectorstore.base import Deletion, Point, WriteResult
from tests.support.tiny import png_bytes

TOKEN = InternalToken("t" * 40)
REFUSED = b"not an image"


class _Encoder(image_encoder_pb2_grpc.ImageEncoderServiceServicer):
    """Embeds each image as [its length] * 4; refuses REFUSED as the real encoder refuses an
    image it cannot decode, and a call without the token as every internal service does."""

    def __init__(self) -> None:
        self.calls: list[list[bytes]] = []

    async def EmbedImages(self, request, context):  # noqa: N802
        metadata = dict(context.invocation_metadata())
        if metadata.get("x-vitrine-internal-token") != "t" * 40:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid internal credential")
        images = image_conv.request_from_proto(request)
        self.calls.append(images)
        if REFUSED in images:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "image cannot be decoded")
        if len(images) > 8:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "more than 8 images")
        vectors = np.array([[len(i)] * 4 for i in images], dtype=np.float32)
        return image_conv.response_to_proto(Embeddings(vectors, "m1"))


class _Store(store_pb2_grpc.VectorStoreServiceServicer):
    def __init__(self) -> None:
        self.points: dict[str, Point] = {}

    async def UpsertPoints(self, request, context):  # noqa: N802
        points = store_conv.upsert_request_from_proto(request)
        self.points.update({p.product_id: p for p in points})
        return store_conv.write_response_to_proto(WriteResult(len(points)))

    async def DeletePoints(self, request, context):  # noqa: N802
        deletions = store_conv.delete_request_from_proto(request)
        gone = [d for d in deletions if self.points.pop(d.product_id, None) is not None]
        return store_conv.write_response_to_proto(WriteResult(len(gone)))


@pytest.fixture(scope="module")
def services():
    """(address, encoder, store): both servicers on one loopback server, on a loop of its own."""
    loop = LoopThread("test-server")
    encoder, store = _Encoder(), _Store()

    async def start():
        server = grpc.aio.server()
        image_encoder_pb2_grpc.add_ImageEncoderServiceServicer_to_server(encoder, server)
        store_pb2_grpc.add_VectorStoreServiceServicer_to_server(store, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = loop.run(start())
    yield f"127.0.0.1:{port}", encoder, store
    loop.run(server.stop(None))
    loop.close()


def test_fixed_targets_carry_the_token_and_convert_both_ways(services):
    address, encoder, store = services
    run = shared_loop().run
    images = ImageEncoderClient(targets=[address], internal_token=TOKEN)
    embedded = run(images.embed_many([b"ab", b"abcd"], timeout_s=10))
    assert embedded.vectors[:, 0].tolist() == [2, 4] and embedded.model_version == "m1"
    assert encoder.calls[-1] == [b"ab", b"abcd"]
    points = VectorStoreClient(targets=[address], internal_token=TOKEN)
    written = run(points.upsert([Point("p1", np.ones(4, np.float32), {"title": "t"})]))
    assert written.count == 1 and store.points["p1"].payload == {"title": "t"}
    assert run(points.delete([Deletion("p1"), Deletion("p2")])).count == 1


def test_statuses_become_this_librarys_exceptions(services):
    address, _, _ = services
    run = shared_loop().run
    client = ImageEncoderClient(targets=[address], internal_token=TOKEN)
    with pytest.raises(RequestError, match="image cannot be decoded"):
        run(client.embed_many([b"ok", REFUSED]))
    with pytest.raises(LimitError, match="more than 8"):
        run(client.embed_many([b"x"] * 9))
    no_token = ImageEncoderClient(targets=[address])
    with pytest.raises(DependencyError) as refused:
        run(no_token.embed_many([b"x"]))
    assert refused.value.status == grpc.StatusCode.UNAUTHENTICATED
    down = ImageEncoderClient(targets=["127.0.0.1:1"], internal_token=TOKEN)
    with pytest.raises(DependencyError) as unavailable:
        run(down.embed_many([b"x"], timeout_s=10))
    assert unavailable.value.status == grpc.StatusCode.UNAVAILABLE


def test_call_each_asks_every_target_and_keeps_each_failure(services):
    address, _, _ = services
    client = ReplicaInfoClient(IMAGE_ENCODER, targets=[address, "127.0.0.1:1"])
    answers = dict(shared_loop().run(client.info_each(timeout_s=10)))
    # The test server has no ReplicaService: UNIMPLEMENTED there, UNAVAILABLE where none runs.
    assert answers[address].status == grpc.StatusCode.UNIMPLEMENTED
    assert answers["127.0.0.1:1"].status == grpc.StatusCode.UNAVAILABLE


def test_the_workers_processor_dead_letters_what_the_encoder_refuses(services):
    from services.ingestion.app import grpc_processor
    from services.ingestion.config import IngestionSettings
    from shared.types import CatalogEvent, Op

    address, _, store = services
    settings = IngestionSettings(image_encoder_address=address, vector_store_address=address)
    processor = grpc_processor(settings, token=TOKEN)
    good, bad = png_bytes(1), REFUSED
    events = [
        (CatalogEvent("good", Op.UPSERT, image_bytes=good, title="g"), good),
        (CatalogEvent("bad", Op.UPSERT, image_bytes=bad, title="b"), bad),
    ]
    result = processor.write(events, sources=["record-good", "record-bad"])
    assert result.upserted == 1 and store.points["good"].vector[0] == len(good)
    assert [(source, reason) for source, reason, _ in result.rejected] == [
        ("record-bad", "image encoder: image cannot be decoded")
    ]


def test_the_worker_retries_an_outage_and_stops_on_a_refusal():
    from services.ingestion.retries import with_retries

    retried, outcomes = [], [DependencyError("down"), TimeoutError("slow"), "written"]

    def write():
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    written = with_retries(write, stop=lambda: False, max_backoff_s=0.01, on_retry=retried.append)
    assert written == "written"
    assert retried == [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED]
    refused = DependencyError("no token", status=grpc.StatusCode.UNAUTHENTICATED)
    with pytest.raises(DependencyError):
        with_retries(lambda: (_ for _ in ()).throw(refused), stop=lambda: False)


def test_vitrine_index_writes_through_the_workers_processor(services, tmp_path):
    """`vitrine index` writes the worker's payload (title, attributes, the image's file URI, a
    thumbnail), and names the products refused after writing the rest."""
    from operations.indexing import IndexingError, index_catalog
    from tests.support.tiny import write_catalog

    address, _, store = services
    catalog = write_catalog(tmp_path / "catalog", n=3, prefix="ix")
    (tmp_path / "catalog" / "ix2.png").write_bytes(REFUSED)  # not an image: refused
    with pytest.raises(IndexingError, match=r"1 products refused \(2 indexed\): ix2: image"):
        index_catalog(catalog, address=address, token=TOKEN, batch_size=2, progress=False)
    stored = store.points["ix0"]
    assert stored.version == 0  # unversioned: an index overwrites whatever the store holds
    assert stored.payload["title"].endswith("shirt 0") and "baseColour" in stored.payload
    assert stored.payload["image_uri"] == (tmp_path / "catalog" / "ix0.png").as_uri()
    assert stored.payload["thumbnail"].startswith("data:image/")
    assert "ix2" not in store.points


def test_a_call_to_a_gone_replica_is_sent_to_another_within_the_deadline(services):
    """Two targets, one of them down (a killed replica Serve still publishes): every call is
    answered, whichever target the round robin picks first; with both down it is UNAVAILABLE."""
    address, encoder, _ = services
    run = shared_loop().run
    client = ImageEncoderClient(targets=["127.0.0.1:1", address], internal_token=TOKEN)
    for _ in range(4):
        assert run(client.embed_many([b"abc"], timeout_s=10)).vectors[0, 0] == 3

    async def side_by_side(n: int) -> list:
        # Calls running beside each other do not hand one call the dead target twice.
        return await asyncio.gather(*(client.embed_many([b"abc"], timeout_s=10) for _ in range(n)))

    assert all(reply.vectors[0, 0] == 3 for reply in run(side_by_side(16)))
    refused = ImageEncoderClient(targets=["127.0.0.1:1", address], internal_token=TOKEN)
    with pytest.raises(RequestError):  # a caller's mistake is not retried elsewhere
        run(refused.embed_many([REFUSED], timeout_s=10))
    down = ImageEncoderClient(targets=["127.0.0.1:1", "127.0.0.1:2"], internal_token=TOKEN)
    with pytest.raises(DependencyError) as unavailable:
        run(down.embed_many([b"x"], timeout_s=10))
    assert unavailable.value.status == grpc.StatusCode.UNAVAILABLE
