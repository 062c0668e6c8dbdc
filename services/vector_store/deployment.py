"""The vector-store deployment: the one process that owns the collection.

Qdrant Edge locks its folder, so in the embedded default exactly one replica holds it and every
other service (gateway, ingestion) reaches it over gRPC (shared.serving.clients). With a Qdrant server
location the same deployment is a thin, stateless client and may scale out.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np
from pydantic import SecretStr
from ray import serve

from shared.api.vitrine.replica.v1 import replica_pb2 as replica_pb
from shared.api.vitrine.store.v1 import store_pb2 as pb
from shared.conversions import replica as replica_conv
from shared.conversions import store as conv
from shared.logs import serve_logger
from shared.models.bundle import Manifest
from shared.observability.metrics import RpcMetrics, make
from shared.observability.tracing import TracingConfig
from shared.observability.tracing import setup as trace_setup
from shared.serving.apps import VECTOR_STORE_DEPLOYMENT
from shared.serving.auth import InternalToken
from shared.serving.errors import RequestError, grpc_method, parse
from shared.serving.ray_fixes import bind_replica_ports_alone
from shared.serving.replica import replica_info
from shared.serving.runtime import resolve_bundle
from shared.types import Filter, Hit, filter_problem
from shared.vectorstore import (
    Deletion,
    Point,
    StoredPoint,
    StoreError,
    WriteResult,
    open_versioned_store,
)
from shared.vectorstore.base import PointQuery
from shared.vectorstore.versions import PayloadUpdate, versioned_point

log = serve_logger(__name__)

MAX_TOP_K = 1000
MAX_DEPTH = 10_000  # offset + top_k
MAX_TEXT_CHARS = 10_000
MAX_BATCH_QUERIES = 1024
# How often the size gauges are set: Ray 2.60 exports a gauge only when it is set and its
# metrics agent drops it two report intervals (the floor is 1 s) after, so it is set every second.
GAUGE_INTERVAL_S = 1.0


@serve.deployment(name=VECTOR_STORE_DEPLOYMENT)
class VectorStore:
    """Search, upsert, delete and retrieve in the collection of the configured model bundle."""

    def __init__(
        self,
        *,
        internal_token: InternalToken | None = None,
        tracing: TracingConfig | None = None,
        bundle_path: str,
        location: str,
        indexed_fields: dict[str, str],
        api_key: SecretStr | None,
        optimize_interval_s: float,
        quantization: str = "none",
    ) -> None:
        bind_replica_ports_alone()  # before Serve binds this replica's ports
        trace_setup("vector-store", tracing)
        self._internal_token = internal_token  # checked by every grpc_method
        self._rpc_metrics = RpcMetrics("vitrine_store_requests", "vitrine_store_request_seconds")
        gauges = ("vitrine_store_points", "vitrine_store_indexed_vectors", "vitrine_replica_up")
        self._gauges = {n: make(n) for n in gauges}
        self._index_failures = make("vitrine_store_index_failures")
        manifest = Manifest.read(resolve_bundle(bundle_path))
        self.model_version = manifest.bundle_id
        self._writes = open_versioned_store(
            location,
            model_version=manifest.bundle_id,
            dim=manifest.heads["embed_dim"],
            indexed_fields=indexed_fields,
            api_key=api_key.get_secret_value() if api_key else None,
            quantization=quantization,
        )
        self._store = self._writes.store
        self._dirty = asyncio.Event()
        loop = asyncio.get_event_loop()
        self._optimizer = loop.create_task(self._optimize_loop(optimize_interval_s))
        self._gauge_task = loop.create_task(self._gauge_loop())
        log.info("vector store: %s at %s", self._store.info(), location)

    async def _optimize_loop(self, interval_s: float) -> None:
        """Builds HNSW indexes for new points in the background, one build at a time."""
        while True:
            await self._dirty.wait()
            await asyncio.sleep(interval_s)
            self._dirty.clear()
            try:
                await asyncio.to_thread(self._store.optimize)
            except Exception:
                self._index_failures.inc()
                log.exception("index build failed; will retry after the next write")

    async def _gauge_loop(self) -> None:
        """Sets the gauges every GAUGE_INTERVAL_S, from the collection's size as last read (read
        on a thread: it may wait for an index build)."""
        sizes = (0, 0)
        reading: asyncio.Task | None = None
        while True:
            if reading is None or reading.done():
                if reading is not None and reading.exception() is None:
                    sizes = reading.result()
                reading = asyncio.create_task(asyncio.to_thread(self._sizes))
            self._gauges["vitrine_replica_up"].set(1.0)
            self._gauges["vitrine_store_points"].set(sizes[0])
            self._gauges["vitrine_store_indexed_vectors"].set(sizes[1])
            await asyncio.sleep(GAUGE_INTERVAL_S)

    def _sizes(self) -> tuple[int, int]:
        info = self._store.info()
        return info.points, info.indexed_vectors

    def info(self) -> dict:
        return {"model_version": self.model_version, **asdict(self._store.info())}

    @grpc_method
    async def GetReplicaInfo(self, request: replica_pb.GetReplicaInfoRequest):  # noqa: N802
        info = replica_info(
            model_version=self.model_version,
            dim=self._store.info().dim,
            runtime=type(self._store).__name__,
            threads=0,
        )
        return replica_conv.info_to_proto(info)

    async def search(
        self, vector: np.ndarray, *, top_k: int, filter: Filter | None = None, exact: bool = False
    ) -> list[Hit]:
        """The top_k products by cosine similarity, best first.

        Raises:
            RequestError: the vector does not fit the collection.
        """
        try:
            return await asyncio.to_thread(
                self._store.search, vector, top_k=top_k, filter=filter, exact=exact
            )
        except StoreError as e:
            raise RequestError(str(e)) from None

    async def search_batch(self, queries: Sequence[PointQuery]) -> list[list[Hit]]:
        """`search` for each query, planned as one batch by the engine.

        Raises:
            RequestError: a query does not fit the collection.
        """
        try:
            return await asyncio.to_thread(self._store.search_batch, queries)
        except StoreError as e:
            raise RequestError(str(e)) from None

    async def upsert(self, points: Sequence[Point]) -> WriteResult:
        """Writes the points that are not stale (`shared.vectorstore.versions`); durable when
        it returns."""
        result = await asyncio.to_thread(self._writes.upsert, points)
        self._dirty.set()
        return result

    async def delete(self, deletions: Sequence[Deletion | str]) -> WriteResult:
        """Deletes the products whose delete is not stale (a bare id is unversioned)."""
        versioned = [Deletion(d) if isinstance(d, str) else d for d in deletions]
        result = await asyncio.to_thread(self._writes.delete, versioned)
        self._dirty.set()
        return result

    async def retrieve(
        self, product_ids: Sequence[str], *, with_vectors: bool = False, with_payload: bool = True
    ) -> list[StoredPoint]:
        return await asyncio.to_thread(
            self._store.retrieve, product_ids, with_vectors=with_vectors, with_payload=with_payload
        )

    async def count(self, filter: Filter | None = None) -> int:
        return await asyncio.to_thread(self._store.count, filter)

    # gRPC (vitrine.store.v1.VectorStoreService), for the gateway's query path and for
    # writers outside Python or outside the Ray cluster.

    @grpc_method
    async def SearchPoints(self, request: pb.SearchPointsRequest):  # noqa: N802
        query = parse(conv.search_request_from_proto, request)
        _check_query(query)
        return conv.search_response_to_proto((await self.search_batch([query]))[0])

    @grpc_method
    async def SearchPointsBatch(self, request: pb.SearchPointsBatchRequest):  # noqa: N802
        queries = parse(conv.search_batch_request_from_proto, request)
        if len(queries) > MAX_BATCH_QUERIES:
            raise RequestError(f"{len(queries)} queries in one call, more than {MAX_BATCH_QUERIES}")
        for i, query in enumerate(queries):
            try:
                _check_query(query)
            except RequestError as e:
                raise RequestError(f"query {i}: {e}") from None
        return conv.search_batch_response_to_proto(await self.search_batch(queries))

    @grpc_method
    async def RetrievePoints(self, request: pb.RetrievePointsRequest):  # noqa: N802
        query = conv.retrieve_request_from_proto(request)
        points = await self.retrieve(
            list(query.product_ids),
            with_vectors=query.with_vectors,
            with_payload=query.with_payload,
        )
        return conv.retrieve_response_to_proto(points)

    @grpc_method
    async def UpsertPoints(self, request: pb.UpsertPointsRequest):  # noqa: N802
        points = parse(conv.upsert_request_from_proto, request)
        try:
            result = await self.upsert(points)
        except StoreError as e:
            raise RequestError(str(e)) from None
        return conv.write_response_to_proto(result)

    async def update(self, updates: Sequence[PayloadUpdate]) -> WriteResult:
        """Title and attribute changes without re-embedding (`VersionedWrites.update`)."""
        result = await asyncio.to_thread(self._writes.update, updates)
        self._dirty.set()
        return result

    @grpc_method
    async def UpdatePayloads(self, request: pb.UpdatePayloadsRequest):  # noqa: N802
        updates = conv.update_request_from_proto(request)
        if any(not u.product_id for u in updates):
            raise RequestError("an empty product id")
        try:
            return conv.write_response_to_proto(await self.update(updates))
        except StoreError as e:
            raise RequestError(str(e)) from None

    @grpc_method
    async def DeletePoints(self, request: pb.DeletePointsRequest):  # noqa: N802
        deletions = parse(conv.delete_request_from_proto, request)
        if any(not d.product_id for d in deletions):
            raise RequestError("an empty product id")
        return conv.write_response_to_proto(await self.delete(deletions))

    async def scroll(
        self, offset: str | None, limit: int, *, with_vectors: bool, tombstones: bool = False
    ) -> tuple[list[Point], str | None]:
        """A page of every point (or tombstone) as the writes that would store it again, and
        the next page's offset (None after the last).

        Raises:
            RequestError: an offset this store did not give.
        """
        store = self._writes.tombstones if tombstones else self._store
        try:
            page, following = await asyncio.to_thread(
                store.scroll, offset, limit, with_vectors=with_vectors and not tombstones
            )
        except StoreError as e:
            raise RequestError(str(e)) from None
        return [versioned_point(p) for p in page], following

    @grpc_method
    async def ScrollPoints(self, request: pb.ScrollPointsRequest):  # noqa: N802
        query = parse(conv.scroll_request_from_proto, request)
        page, following = await self.scroll(
            query.offset, query.limit, with_vectors=query.with_vectors, tombstones=query.tombstones
        )
        return conv.scroll_response_to_proto((page, following))

    def __del__(self) -> None:
        self._optimizer.cancel()
        self._gauge_task.cancel()
        self._writes.close()


def _check_query(query: PointQuery) -> None:
    if not 1 <= query.top_k <= MAX_TOP_K:
        raise RequestError(f"top_k must be 1..{MAX_TOP_K}, got {query.top_k}")
    if query.offset + query.top_k > MAX_DEPTH:
        raise RequestError(f"offset + top_k must be at most {MAX_DEPTH}")
    if len(query.text) > MAX_TEXT_CHARS:
        raise RequestError(f"text has more than {MAX_TEXT_CHARS} characters")
    if query.score_threshold is not None and not math.isfinite(query.score_threshold):
        raise RequestError("score_threshold is not a finite number")
    if query.filter is not None and (problem := filter_problem(query.filter)):
        raise RequestError(problem)
