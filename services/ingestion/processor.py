"""The batch processor of the ingestion worker: catalog records become vectors in the store.

The worker (services.ingestion.consumer) runs one loop: poll a batch; decode and validate each
record (a bad one goes to the dead-letter topic with its reason and original bytes); embed the
images of the upserts in batches with the image encoder; write upserts and deletes to the vector
store; commit the offsets only after the store acknowledged. Encoder or store outages are
retried with backoff and nothing is committed meanwhile, so a crash at any point replays the
uncommitted batch: point ids are derived from product ids, so a replay overwrites instead of
duplicating.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from services.ingestion.fetch_policy import FetchPolicy, PoisonError, TransientError
from services.ingestion.fetching import Fetcher
from services.ingestion.validation import EventLimits, event_version
from shared.catalogs import CATALOG_FIELD, qualify
from shared.models.transforms import ImageDecodeError, probe_image, thumbnail_data_uri
from shared.observability import tracing
from shared.streaming.dlq import REASON_HEADER, TRANSIENT_HEADER
from shared.streaming.events import decode
from shared.types import CatalogEvent, Op

if TYPE_CHECKING:
    import numpy as np

    from shared.vectorstore import Deletion, Point, WriteResult
    from shared.vectorstore.versions import PayloadUpdate

log = logging.getLogger(__name__)


__all__ = [
    "REASON_HEADER",
    "TRANSIENT_HEADER",
    "BatchProcessor",
    "BatchResult",
    "PoisonError",
    "TransientError",
]


class SourceRecord(Protocol):
    """What `process` reads of a record: kafka-python's ConsumerRecord, or an encoded event
    (shared.streaming.events.Record). Its `timestamp` (ms) is read when it has one."""

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def headers(self) -> Iterable[tuple[str, bytes | None]] | None: ...


# A write's item: the event, its image (upserts) and the source the caller gave with it.
_Item = tuple[CatalogEvent, bytes | None, Any]
_Upsert = tuple[CatalogEvent, bytes, Any]


@dataclass
class BatchResult:
    upserted: int = 0
    deleted: int = 0
    updated: int = 0  # title/attribute changes applied without re-embedding
    dead_lettered: int = 0
    # Writes the store skipped because it holds a newer version of the product.
    stale: int = 0
    # Dead letters whose failure may pass (marked for `vitrine dlq replay --transient`).
    transient: int = 0
    reasons: list[str] = field(default_factory=list)
    # (source, reason, transient) of the records to dead-letter: poison found while validating,
    # and valid-looking images the encoder refused one by one. The source is the caller's own
    # record (or `write`'s sources entry), handed back as it came.
    rejected: list[tuple[Any, str, bool]] = field(default_factory=list)

    def add(self, other: BatchResult) -> None:
        self.upserted += other.upserted
        self.deleted += other.deleted
        self.updated += other.updated
        self.stale += other.stale
        self.rejected.extend(other.rejected)


class BatchProcessor:
    """Turns a batch of records into store writes; no Kafka here.

    Args:
        embed: encoded images -> vectors [n, dim] (the image encoder).
        upsert: points -> WriteResult (or None), durable when it returns (the vector store).
        delete: deletions -> WriteResult (or None).
        update: payload updates -> WriteResult (or None); None refuses update events.
        fetcher: fetches image URIs under the fetch policy.
        limits: sizes an event may have.
        encode_batch, encode_concurrency: images per encoder call, calls in flight.
        encode_max_bytes: image bytes per encoder call at most (under the gRPC message limit).
        thumbnail_px: stores a thumbnail this big in the payload (0: none).
        fetch_concurrency: records validated (and their images fetched) at once.
        gather_s: how long `process` waits for more records to become ready before writing
            the ready ones, so a slow fetch never holds back the rest of its batch.
    """

    def __init__(
        self,
        *,
        embed: Callable[[list[bytes]], np.ndarray],
        upsert: Callable[[list[Point]], WriteResult | None],
        delete: Callable[[list[Deletion]], WriteResult | None],
        update: Callable[[list[PayloadUpdate]], WriteResult | None] | None = None,
        fetcher: Fetcher | None = None,
        limits: EventLimits | None = None,
        encode_batch: int = 32,
        encode_concurrency: int = 1,
        thumbnail_px: int = 0,
        fetch_concurrency: int = 16,
        gather_s: float = 0.02,
        encode_max_bytes: int = 48 * 2**20,
    ) -> None:
        self._embed, self._upsert, self._delete = embed, upsert, delete
        self._update = update
        self._fetcher = fetcher or Fetcher(FetchPolicy())
        self._max_bytes = self._fetcher.policy.max_bytes
        self._limits = limits or EventLimits()
        self._thumbnail_px = thumbnail_px
        self._encode_batch, self._encode_max_bytes = encode_batch, encode_max_bytes
        self._gather_s = gather_s
        self._validators = ThreadPoolExecutor(fetch_concurrency, thread_name_prefix="validate")
        # Chunks in flight at once: with 2, the encoder starts the next chunk while the previous
        # one's reply travels back and is written, instead of idling.
        self._pool = (
            ThreadPoolExecutor(encode_concurrency, thread_name_prefix="embed")
            if encode_concurrency > 1
            else None
        )
        # Thumbnails are made while the chunk's encoder call is out, not after it returns: with
        # the encoder on ONNX Runtime, making them in turn held ingestion at 0.80x of the
        # encoder's own throughput (docs/BENCHMARKS.md, "Streaming ingestion").
        self._thumbnails = (
            ThreadPoolExecutor(encode_concurrency, thread_name_prefix="thumbnail")
            if thumbnail_px
            else None
        )

    def validate(
        self,
        value: bytes | None,
        headers,
        *,
        key: bytes | None = None,
        timestamp_ms: int | None = None,
    ) -> tuple[CatalogEvent, bytes | None]:
        """The event (with its version) and its image bytes (upserts). Nothing a record holds
        makes this raise anything but PoisonError (or its TransientError): an unexpected
        failure is the record's too, named by type.

        Raises:
            PoisonError: what is wrong with the record.
        """
        try:
            return self._validate(value, headers, key, timestamp_ms)
        except PoisonError:
            raise
        except Exception as e:  # a record must never stop the worker (it would replay forever)
            log.exception("record failed validation unexpectedly")
            raise PoisonError(f"unexpected {type(e).__name__}: {e}") from None

    def _validate(self, value, headers, key, timestamp_ms) -> tuple[CatalogEvent, bytes | None]:
        try:
            event = decode(value, headers, key=key)
        except ValueError as e:
            raise PoisonError(f"not a catalog event: {e}") from None
        if not event.product_id:
            raise PoisonError("product_id is missing")
        self._limits.check(event)
        # The store's key of the product is catalog-qualified (shared.catalogs).
        key = qualify(event.catalog, event.product_id)
        event = replace(event, product_id=key, version=event_version(event, timestamp_ms))
        if event.op == Op.DELETE:
            return event, None
        if event.op == Op.UPDATE:
            if event.image_bytes or event.image_uri:
                raise PoisonError("an update changes title and attributes only; send an upsert")
            if not (event.title or event.attributes):
                raise PoisonError("an update with no title and no attributes changes nothing")
            if self._update is None:
                raise PoisonError("this writer takes no update events")
            return event, None
        if event.image_bytes:
            image = event.image_bytes
        elif event.image_uri:
            image = self._fetcher.fetch(event.image_uri)
        else:
            raise PoisonError("an upsert needs image_bytes or image_uri")
        try:
            # The header only: the encoder decodes the pixels (and refuses a truncated body,
            # which `write` then dead-letters alone); decoding twice would cost the pipeline.
            probe_image(image, max_bytes=self._max_bytes)
        except ImageDecodeError as e:
            raise PoisonError(f"image: {e}") from None
        return event, image

    def process(
        self,
        records: Sequence[SourceRecord],
        *,
        retry: Callable[[Callable[[], BatchResult]], BatchResult] = lambda fn: fn(),
    ) -> BatchResult:
        """Validates `records` (Kafka records: key, value, headers, timestamp) concurrently and
        writes the valid ones as they become ready: a record whose image is slow to fetch holds
        back only the other records of its key, never the rest of the batch.

        The records of one key are written together once all of them are validated, so the
        last valid event of a product in the batch still wins. `retry` wraps each write (the
        worker retries it while a dependency is down). Poison comes back in `rejected`.
        """
        result = BatchResult()
        futures: list[Future] = [
            self._validators.submit(
                self.validate,
                r.value,
                r.headers,
                key=r.key,
                timestamp_ms=getattr(r, "timestamp", None),
            )
            for r in records
        ]
        groups: dict[object, list[int]] = {}
        for i, r in enumerate(records):
            groups.setdefault(r.key if r.key is not None else ("record", i), []).append(i)
        remaining = set(futures)
        ready: list[tuple[CatalogEvent, bytes | None]] = []
        sources: list[SourceRecord] = []
        while groups or ready:
            done: set[Future] = set()
            if remaining:
                timeout = self._gather_s if ready else None
                done, remaining = wait(remaining, timeout=timeout, return_when=FIRST_COMPLETED)
            for group_key in [
                k for k, ids in groups.items() if all(futures[i].done() for i in ids)
            ]:
                for i in groups.pop(group_key):
                    try:
                        ready.append(futures[i].result())
                        sources.append(records[i])
                    except PoisonError as e:
                        transient = isinstance(e, TransientError)
                        result.rejected.append((records[i], str(e), transient))
            if ready and (not done or not remaining or len(ready) >= self._encode_batch):
                wave, wave_sources, ready, sources = ready, sources, [], []
                result.add(retry(partial(self.write, wave, wave_sources)))
        return result

    def write(
        self,
        events: list[tuple[CatalogEvent, bytes | None]],
        sources: Sequence[Any] | None = None,
    ) -> BatchResult:
        """Embeds and writes valid events; of a product's events in the batch, the one with the
        highest version wins (the last among equal versions).

        `embed` raising PoisonError means the encoder refused an image that passed local
        validation: the chunk is then embedded image by image, and the refused ones come back in
        `rejected` with their `sources` entry (the Kafka record) instead of failing the batch.
        """
        from shared.vectorstore import Deletion, Point, product_payload

        sources = sources if sources is not None else [None] * len(events)
        latest: dict[str, _Item] = {}
        updates = [e for e, _ in events if e.op == Op.UPDATE]
        for (event, image), source in zip(events, sources, strict=True):
            if event.op == Op.UPDATE:  # applied after the batch's upserts, if not stale
                continue
            # The highest version of a product wins (the later one among equals), in the order
            # of its last occurrence: a batch may hold a product's events out of order.
            current = latest.get(event.product_id)
            if current is None or event.version >= current[0].version:
                latest.pop(event.product_id, None)
                latest[event.product_id] = (event, image, source)
        upserts = [_with_image(item) for item in latest.values() if item[0].op == Op.UPSERT]
        deletes = [
            Deletion(e.product_id, e.version) for e, _, _ in latest.values() if e.op == Op.DELETE
        ]
        result = BatchResult()
        chunks = self._chunks(upserts)
        # The batch's span is the parent of the encoder calls on the pool's threads too.
        embed = partial(self._embed_traced, tracing.current(), rejected=result.rejected)
        for embedded in self._pool.map(embed, chunks) if self._pool else map(embed, chunks):
            points = [
                Point(
                    e.product_id,
                    v,
                    product_payload(e.title, e.attributes, image_uri=e.image_uri, thumbnail=thumb)
                    | ({CATALOG_FIELD: e.catalog} if e.catalog else {}),
                    version=e.version,
                )
                for e, v, thumb in embedded
            ]
            written = self._upsert(points)
            result.upserted += written.count if written is not None else len(points)
            result.stale += written.stale if written is not None else 0
        if deletes:
            written = self._delete(deletes)
            result.deleted += written.count if written is not None else len(deletes)
            result.stale += written.stale if written is not None else 0
        if updates and self._update is not None:
            written = self._update([_payload_update(e) for e in updates])
            result.updated += written.count if written is not None else len(updates)
            result.stale += written.stale if written is not None else 0
        return result

    def _chunks(self, upserts: list[_Upsert]) -> list[list[_Upsert]]:
        """Upserts in encoder calls of at most `encode_batch` images and `encode_max_bytes`
        image bytes (the internal gRPC message limit; one image always fits)."""
        chunks: list[list[_Upsert]] = []
        chunk: list[_Upsert] = []
        size = 0
        for item in upserts:
            n = len(item[1])
            if chunk and (len(chunk) >= self._encode_batch or size + n > self._encode_max_bytes):
                chunks.append(chunk)
                chunk, size = [], 0
            chunk.append(item)
            size += n
        if chunk:
            chunks.append(chunk)
        return chunks

    def _embed_traced(self, trace: Any, chunk: list[_Upsert], *, rejected: list) -> list:
        with tracing.attached(trace):
            return self._embed_chunk(chunk, rejected=rejected)

    def _embed_chunk(
        self, chunk: list[_Upsert], *, rejected: list[tuple[Any, str, bool]]
    ) -> list[tuple[CatalogEvent, np.ndarray, str]]:
        """(event, vector, thumbnail) of each image the encoder accepted."""
        images = [img for _, img, _ in chunk]
        thumbnails = (
            self._thumbnails.submit(lambda: [self._thumbnail(img) for img in images])
            if self._thumbnails is not None
            else None
        )
        try:
            vectors = self._embed(images)
            thumbs = thumbnails.result() if thumbnails is not None else [""] * len(chunk)
            return [
                (e, v, thumb) for (e, _, _), v, thumb in zip(chunk, vectors, thumbs, strict=True)
            ]
        except PoisonError as e:
            if len(chunk) == 1:
                rejected.append((chunk[0][2], f"image encoder: {e}", False))
                return []
            log.warning("the encoder refused a batch (%s); embedding it image by image", e)
        return [pair for item in chunk for pair in self._embed_chunk([item], rejected=rejected)]

    def _thumbnail(self, image: bytes) -> str:
        # The encoder accepted the image, so it decodes; a thumbnail is a courtesy, never a
        # reason to refuse a product.
        if not self._thumbnail_px:
            return ""
        try:
            return thumbnail_data_uri(image, px=self._thumbnail_px)
        except ImageDecodeError as e:
            log.warning("no thumbnail: %s", e)
            return ""


def _payload_update(event: CatalogEvent) -> PayloadUpdate:
    from shared.vectorstore.versions import PayloadUpdate

    return PayloadUpdate(event.product_id, event.title or None, event.attributes, event.version)


def _with_image(item: _Item) -> _Upsert:
    event, image, source = item
    if image is None:  # validate() returns every upsert's image
        raise ValueError(f"the upsert of {event.product_id!r} came without its image")
    return event, image, source
