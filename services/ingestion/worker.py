"""The ingestion worker: catalog events from Kafka become vectors in the store.

One loop: poll a batch; decode and validate each record (a bad one goes to the dead-letter topic
with its reason and original bytes); embed the images of the upserts in batches with the image
encoder; write upserts and deletes to the vector store; commit the offsets only after the store
acknowledged. Encoder or store outages are retried with backoff and nothing is committed
meanwhile, so a crash at any point replays the uncommitted batch: point ids are derived from
product ids, so a replay overwrites instead of duplicating.
"""

from __future__ import annotations

import http.client
import logging
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

import grpc

from shared.models.transforms import ImageDecodeError, probe_image, thumbnail_data_uri
from shared.streaming.events import decode
from shared.types import CatalogEvent, Op

log = logging.getLogger(__name__)

REASON_HEADER = "vitrine-dlq-reason"


class PoisonError(ValueError):
    """A record that can never be indexed; it goes to the dead-letter topic."""


@dataclass
class BatchResult:
    upserted: int = 0
    deleted: int = 0
    dead_lettered: int = 0
    reasons: list[str] = field(default_factory=list)
    # (source, reason) of valid-looking records the image encoder refused one by one; the worker
    # dead-letters them like any other poison.
    rejected: list[tuple[object, str]] = field(default_factory=list)


def fetch_image(uri: str, *, max_bytes: int, timeout_s: float) -> bytes:
    """The bytes behind a file:// or http(s):// URI, at most max_bytes.

    Raises:
        PoisonError: unsupported scheme, malformed, unreachable, truncated, too large.
    """
    if not uri.startswith(("file://", "http://", "https://")):
        raise PoisonError(f"image_uri {uri!r}: only file://, http:// and https:// are supported")
    try:
        with urllib.request.urlopen(uri, timeout=timeout_s) as response:  # noqa: S310 - scheme checked
            data = response.read(max_bytes + 1)
    except (OSError, ValueError, http.client.HTTPException) as e:
        # OSError: unreachable, refused, timed out; ValueError and InvalidURL (an
        # HTTPException): a malformed URI such as http://h:abc/x; IncompleteRead (an
        # HTTPException): a truncated response. Each crashed the worker before.
        raise PoisonError(f"image_uri {uri!r}: {type(e).__name__}: {e}") from None
    if len(data) > max_bytes:
        raise PoisonError(f"image_uri {uri!r}: more than {max_bytes} bytes")
    return data


class BatchProcessor:
    """Turns a batch of records into store writes; no Kafka here.

    Args:
        embed: encoded images -> vectors [n, dim] (the image encoder).
        upsert: points -> None, durable when it returns (the vector store).
        delete: product ids -> None.
        max_image_bytes, image_fetch_timeout_s: limits for images.
        encode_batch, encode_concurrency: images per encoder call, calls in flight.
        thumbnail_px: stores a thumbnail this big in the payload (0: none).
    """

    def __init__(
        self,
        *,
        embed: Callable[[list[bytes]], object],
        upsert: Callable[[list], None],
        delete: Callable[[list[str]], None],
        max_image_bytes: int,
        image_fetch_timeout_s: float,
        encode_batch: int = 32,
        encode_concurrency: int = 1,
        thumbnail_px: int = 0,
    ) -> None:
        self._embed, self._upsert, self._delete = embed, upsert, delete
        self._thumbnail_px = thumbnail_px
        self._max_bytes, self._timeout = max_image_bytes, image_fetch_timeout_s
        self._encode_batch = encode_batch
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
        self, value: bytes | None, headers, *, key: bytes | None = None
    ) -> tuple[CatalogEvent, bytes | None]:
        """The event and its image bytes (upserts). Nothing a record holds makes this raise
        anything but PoisonError: an unexpected failure is the record's too, named by type.

        Raises:
            PoisonError: what is wrong with the record.
        """
        try:
            return self._validate(value, headers, key)
        except PoisonError:
            raise
        except Exception as e:  # a record must never stop the worker (it would replay forever)
            log.exception("record failed validation unexpectedly")
            raise PoisonError(f"unexpected {type(e).__name__}: {e}") from None

    def _validate(self, value, headers, key) -> tuple[CatalogEvent, bytes | None]:
        try:
            event = decode(value, headers, key=key)
        except ValueError as e:
            raise PoisonError(f"not a catalog event: {e}") from None
        if not event.product_id:
            raise PoisonError("product_id is missing")
        if event.op == Op.DELETE:
            return event, None
        if event.image_bytes:
            image = event.image_bytes
        elif event.image_uri:
            image = fetch_image(event.image_uri, max_bytes=self._max_bytes, timeout_s=self._timeout)
        else:
            raise PoisonError("an upsert needs image_bytes or image_uri")
        try:
            # The header only: the encoder decodes the pixels (and refuses a truncated body,
            # which `write` then dead-letters alone); decoding twice would cost the pipeline.
            probe_image(image, max_bytes=self._max_bytes)
        except ImageDecodeError as e:
            raise PoisonError(f"image: {e}") from None
        return event, image

    def write(
        self,
        events: list[tuple[CatalogEvent, bytes | None]],
        sources: list[object] | None = None,
    ) -> BatchResult:
        """Embeds and writes valid events; the last event of a product in the batch wins.

        `embed` raising PoisonError means the encoder refused an image that passed local
        validation: the chunk is then embedded image by image, and the refused ones come back in
        `rejected` with their `sources` entry (the Kafka record) instead of failing the batch.
        """
        from shared.vectorstore import Point, product_payload

        sources = sources if sources is not None else [None] * len(events)
        latest: dict[str, tuple[CatalogEvent, bytes | None, object]] = {}
        for (event, image), source in zip(events, sources, strict=True):
            latest.pop(event.product_id, None)  # keep order of last occurrence
            latest[event.product_id] = (event, image, source)
        upserts = [item for item in latest.values() if item[0].op == Op.UPSERT]
        deletes = [e.product_id for e, _, _ in latest.values() if e.op == Op.DELETE]
        result = BatchResult(deleted=len(deletes))
        chunks = [
            upserts[start : start + self._encode_batch]
            for start in range(0, len(upserts), self._encode_batch)
        ]
        embed = partial(self._embed_chunk, rejected=result.rejected)
        for embedded in self._pool.map(embed, chunks) if self._pool else map(embed, chunks):
            self._upsert(
                [
                    Point(
                        e.product_id,
                        v,
                        product_payload(
                            e.title, e.attributes, image_uri=e.image_uri, thumbnail=thumb
                        ),
                    )
                    for e, v, thumb in embedded
                ]
            )
            result.upserted += len(embedded)
        if deletes:
            self._delete(deletes)
        return result

    def _embed_chunk(self, chunk, *, rejected: list) -> list[tuple[CatalogEvent, object, str]]:
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
                rejected.append((chunk[0][2], f"image encoder: {e}"))
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


RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def with_retries(
    fn: Callable[[], object],
    *,
    stop: Callable[[], bool],
    max_backoff_s: float = 10,
    on_retry: Callable[[grpc.RpcError], None] = lambda _: None,
):
    """Runs fn until it succeeds, backing off while a dependency is unavailable."""
    backoff = 0.2
    while True:
        try:
            return fn()
        except grpc.RpcError as e:
            if e.code() not in RETRYABLE or stop():
                raise
            on_retry(e)
            log.warning("dependency unavailable (%s); retrying in %.1f s", e.code().name, backoff)
            time.sleep(backoff)
            backoff = min(max_backoff_s, backoff * 2)
