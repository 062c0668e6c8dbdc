"""The search pipeline: validate, encode in parallel, fuse, search. No gRPC or HTTP here."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np

from shared.models.transforms import ImageDecodeError, PixelBudgetError, request_pixels
from shared.serving.errors import DependencyError, LimitError, NotFoundError, RequestError
from shared.types import Filter, SearchQuery, SearchResult, Timing, filter_problem


@dataclass(frozen=True)
class Limits:
    default_top_k: int
    max_top_k: int
    max_text_chars: int
    max_image_bytes: int
    max_filter_conditions: int = 32
    max_query_pixels: int = 40_000_000


def validate(query: SearchQuery, limits: Limits) -> SearchQuery:
    """The query with its top_k resolved.

    Raises:
        RequestError / LimitError: what is wrong, in words for the caller.
    """
    has_reference = query.image is not None or query.product_id is not None
    if not query.text.strip() and not has_reference:
        raise RequestError("give a text, a reference (image or product_id), or both")
    if query.image is not None and not query.image:
        raise RequestError("image is empty")
    if query.product_id is not None and not query.product_id.strip():
        raise RequestError("product_id is empty")
    if len(query.text) > limits.max_text_chars:
        raise LimitError(
            f"text has {len(query.text)} characters, more than {limits.max_text_chars}"
        )
    if query.image is not None and len(query.image) > limits.max_image_bytes:
        raise LimitError(f"image is {len(query.image)} bytes, more than {limits.max_image_bytes}")
    if query.image is not None:
        _check_pixels(query.image, limits)
    if query.top_k > limits.max_top_k:
        raise LimitError(f"top_k {query.top_k} is more than the limit of {limits.max_top_k}")
    _validate_filter(query.filter, limits)
    top_k = query.top_k or limits.default_top_k
    return SearchQuery(query.text, query.image, query.product_id, top_k, query.filter)


def _check_pixels(image: bytes, limits: Limits) -> None:
    """The reference image's pixels, from its header, against the query's budget: refused here,
    it never travels to the encoder, let alone gets decoded there."""
    try:
        request_pixels([image], budget=limits.max_query_pixels, max_bytes=limits.max_image_bytes)
    except PixelBudgetError as e:
        raise LimitError(str(e)) from None
    except ImageDecodeError as e:
        raise RequestError(str(e)) from None


def _validate_filter(flt: Filter, limits: Limits) -> None:
    conditions = flt.must + flt.must_not
    if len(conditions) > limits.max_filter_conditions:
        raise LimitError(
            f"filter has {len(conditions)} conditions, more than {limits.max_filter_conditions}"
        )
    if problem := filter_problem(flt):
        raise RequestError(problem)


class Dependencies:
    """The gateway's gRPC clients of the other applications (`shared.serving.clients`)."""

    def __init__(self, *, image, text, fusion, store) -> None:
        self.image, self.text, self.fusion, self.store = image, text, fusion, store


async def run_search(
    query: SearchQuery, deps: Dependencies, *, model_version: str, deadline: float
) -> SearchResult:
    """Runs a validated query before `deadline` (time.monotonic()). Encoders run in parallel;
    fusion only for composed queries. Each downstream call gets the time that is left."""

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("deadline exceeded")
        return remaining

    t0 = time.perf_counter()
    calls = []
    if query.text.strip():
        calls.append(deps.text.embed(query.text, timeout_s=left()))
    if query.image is not None:
        calls.append(deps.image.embed(query.image, timeout_s=left()))
    elif query.product_id is not None:
        calls.append(deps.store.vector_of(query.product_id, timeout_s=left()))
    results = list(await asyncio.gather(*calls))
    text_vec = _vector(results.pop(0), model_version) if query.text.strip() else None
    reference_vec = _reference_vector(results.pop(0), query, model_version) if results else None
    t_encoded = time.perf_counter()
    if text_vec is not None and reference_vec is not None:
        fused = await deps.fusion.fuse(reference_vec, text_vec, timeout_s=left())
        vector: np.ndarray | None = _vector(fused, model_version)
    else:
        vector = text_vec if text_vec is not None else reference_vec
    if vector is None:  # validate() refuses a query with nothing to search by
        raise RequestError("give a text, a reference (image or product_id), or both")
    t_fused = time.perf_counter()
    flt = None if query.filter.is_empty() else query.filter
    hits = await deps.store.search(vector, top_k=query.top_k, filter=flt, timeout_s=left())
    t_done = time.perf_counter()
    timing = Timing(
        encode_ms=(t_encoded - t0) * 1000,
        fuse_ms=(t_fused - t_encoded) * 1000,
        search_ms=(t_done - t_fused) * 1000,
        total_ms=(t_done - t0) * 1000,
    )
    return SearchResult(tuple(hits), model_version, timing)


def _vector(embeddings, model_version: str) -> np.ndarray:
    if embeddings.model_version != model_version:
        raise DependencyError(
            f"model mismatch: an encoder serves {embeddings.model_version}, the collection holds "
            f"{model_version} vectors"
        )
    return embeddings.vectors[0]


def _reference_vector(result, query: SearchQuery, model_version: str) -> np.ndarray:
    if query.image is not None:
        return _vector(result, model_version)
    if result is None:
        raise NotFoundError(f"product {query.product_id!r} is not in the catalog")
    return result.vector
