"""The vector store as `vitrine snapshot` and `vitrine restore` reach it: the running platform's
vector-store application over gRPC (RemoteStore), or a stopped platform's engine opened in this
process (LocalStore)."""

from __future__ import annotations

from shared.vectorstore.base import Deletion, Point, WriteResult

TIMEOUT_S = 120.0


class RemoteStore:
    """The running platform's store, through Serve's gRPC proxy (or a replica's port).

    Args:
        address: host:port of Serve's gRPC proxy.
        app_name: the vector-store application.
        token: the InternalToken the calls carry.
    """

    def __init__(self, address: str, *, app_name: str, token) -> None:
        from shared.serving.clients.blocking import shared_loop
        from shared.serving.clients.replica import ReplicaInfoClient
        from shared.serving.clients.store import VectorStoreClient

        self._loop = shared_loop()
        options = {"targets": [address], "internal_token": token}
        self._client = VectorStoreClient(app_name, **options)
        info = self._loop.run(ReplicaInfoClient(app_name, **options).info(timeout_s=TIMEOUT_S))
        self.model_version, self.dim = info.model_version, info.dim
        self.source = f"application {app_name} at {address}"

    def scroll(self, offset, limit, *, with_vectors, tombstones):
        from shared.conversions.store import ScrollQuery

        query = ScrollQuery(offset, limit, with_vectors, tombstones)
        return self._loop.run(self._client.scroll(query, timeout_s=TIMEOUT_S))

    def upsert(self, points: list[Point]) -> WriteResult:
        return self._loop.run(self._client.upsert(points, timeout_s=TIMEOUT_S))

    def delete(self, deletions: list[Deletion]) -> WriteResult:
        return self._loop.run(self._client.delete(deletions, timeout_s=TIMEOUT_S))

    def close(self) -> None:
        self._loop.run(self._client.close())


class LocalStore:
    """A stopped platform's store, opened here (an embedded engine allows one process: the
    platform must not be running on it).

    Args:
        location: the store location (VITRINE_VECTOR_STORE_STORE_LOCATION's forms).
        bundle: the model bundle whose collection to open.
        indexed_fields: the payload indexes a new collection gets.
    """

    def __init__(self, location: str, *, bundle, indexed_fields: dict[str, str]) -> None:
        from shared.models.bundle import Manifest
        from shared.serving.runtime import resolve_bundle
        from shared.vectorstore import open_versioned_store

        manifest = Manifest.read(resolve_bundle(bundle))
        self.model_version, self.dim = manifest.bundle_id, manifest.heads["embed_dim"]
        self._writes = open_versioned_store(
            location, model_version=self.model_version, dim=self.dim, indexed_fields=indexed_fields
        )
        self.source = f"location {location}"

    def scroll(self, offset, limit, *, with_vectors, tombstones):
        from shared.vectorstore.versions import versioned_point

        store = self._writes.tombstones if tombstones else self._writes.store
        page, following = store.scroll(offset, limit, with_vectors=with_vectors and not tombstones)
        return [versioned_point(p) for p in page], following

    def upsert(self, points: list[Point]) -> WriteResult:
        return self._writes.upsert(points)

    def delete(self, deletions: list[Deletion]) -> WriteResult:
        return self._writes.delete(deletions)

    def close(self) -> None:
        self._writes.store.optimize()  # indexed now, not at the platform's first write
        self._writes.close()
