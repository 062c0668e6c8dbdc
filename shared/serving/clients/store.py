"""The client of the vector store."""

from __future__ import annotations

from collections.abc import Sequence

from shared.api.vitrine.store.v1 import store_pb2_grpc
from shared.conversions import store as store_conv
from shared.serving.apps import VECTOR_STORE
from shared.serving.clients.base import ServiceClient
from shared.types import Hit
from shared.vectorstore.base import (
    Deletion,
    Point,
    PointQuery,
    RetrieveQuery,
    StoredPoint,
    WriteResult,
)
from shared.vectorstore.versions import PayloadUpdate


class VectorStoreClient(ServiceClient):
    """vitrine.store.v1: searches, reads and versioned writes of the catalog's points."""

    def __init__(self, app_name: str = VECTOR_STORE, *, max_items: int = 64, **kw) -> None:
        super().__init__(app_name, store_pb2_grpc.VectorStoreServiceStub, **kw)
        self._searches = self.coalescer(self._search_many, max_items=max_items)
        self._vectors = self.coalescer(self._retrieve_many, max_items=max_items)

    async def _search_many(
        self, queries: list[PointQuery], timeout_s: float | None
    ) -> list[list[Hit]]:
        request = store_conv.search_batch_request_to_proto(queries)
        reply = await self.call("SearchPointsBatch", request, timeout_s=timeout_s)
        return store_conv.search_batch_response_from_proto(reply)

    async def search(self, query: PointQuery, *, timeout_s: float | None = None) -> list[Hit]:
        """The query's hits, in a call shared with concurrent queries."""
        return await self._searches.call(query, timeout_s=timeout_s)

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
        product_ids: Sequence[str],
        *,
        with_vectors: bool = False,
        with_payload: bool = True,
        timeout_s: float | None = None,
    ) -> list[StoredPoint]:
        """The stored points of `product_ids` (those the store holds)."""
        request = store_conv.retrieve_request_to_proto(
            RetrieveQuery(tuple(product_ids), with_vectors, with_payload)
        )
        reply = await self.call("RetrievePoints", request, timeout_s=timeout_s)
        return store_conv.retrieve_response_from_proto(reply)

    async def upsert(
        self, points: Sequence[Point], *, timeout_s: float | None = None
    ) -> WriteResult:
        """Writes points (a point older than the stored version is skipped as stale); durable
        when it returns."""
        request = store_conv.upsert_request_to_proto(points)
        reply = await self.call("UpsertPoints", request, timeout_s=timeout_s)
        return store_conv.write_response_from_proto(reply)

    async def update(
        self, updates: Sequence[PayloadUpdate], *, timeout_s: float | None = None
    ) -> WriteResult:
        """Title and attribute changes without re-embedding (a product the store does not hold,
        or holds at a newer version, is skipped as stale)."""
        request = store_conv.update_request_to_proto(updates)
        reply = await self.call("UpdatePayloads", request, timeout_s=timeout_s)
        return store_conv.write_response_from_proto(reply)

    async def scroll(
        self, query: store_conv.ScrollQuery, *, timeout_s: float | None = None
    ) -> tuple[list[Point], str | None]:
        """A page of every point (or tombstone) and the next page's offset (None after the
        last); a point's version is in `version`, a point read without its vector has an empty
        one."""
        request = store_conv.scroll_request_to_proto(query)
        reply = await self.call("ScrollPoints", request, timeout_s=timeout_s)
        return store_conv.scroll_response_from_proto(reply)

    async def delete(
        self, deletions: Sequence[Deletion], *, timeout_s: float | None = None
    ) -> WriteResult:
        """Deletes products (as versioned tombstones when a deletion has a version)."""
        request = store_conv.delete_request_to_proto(deletions)
        reply = await self.call("DeletePoints", request, timeout_s=timeout_s)
        return store_conv.write_response_from_proto(reply)
