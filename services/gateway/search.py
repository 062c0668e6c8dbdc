"""The search pipeline: validate, encode in parallel, fuse, search. No gRPC or HTTP here."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np

from services.gateway import paging
from shared.models.transforms import ImageDecodeError, PixelBudgetError, request_pixels
from shared.serving.errors import DependencyError, LimitError, NotFoundError, RequestError
from shared.types import Filter, SearchMode, SearchQuery, SearchResult, Timing, filter_problem
from shared.vectorstore.base import PointQuery
from shared.vectorstore.lexical import DEFAULT_RRF_K

MAX_RRF_K = 10_000


@dataclass(frozen=True)
class Limits:
    default_top_k: int
    max_top_k: int
    max_text_chars: int
    max_image_bytes: int
    max_filter_conditions: int = 32
    max_query_pixels: int = 40_000_000
    # Deepest hit a page may reach (offset + top_k): deep pages cost the engine as much as one
    # long answer.
    max_depth: int = 1000
    # The mode of a text-only query that names none (image and composed queries: dense).
    default_mode: SearchMode = SearchMode.HYBRID


def validate(query: SearchQuery, limits: Limits) -> SearchQuery:
    """The query with its top_k, mode, RRF k and offset (from a page token) resolved.

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
    resolved = dataclasses.replace(
        query, top_k=top_k, mode=_mode(query, limits), rrf_k=query.rrf_k or DEFAULT_RRF_K
    )
    # A page token holds the fingerprint of the resolved query (paging.encode gets it).
    return dataclasses.replace(resolved, offset=_offset(resolved, top_k, limits), page_token="")


def _mode(query: SearchQuery, limits: Limits) -> SearchMode:
    has_text = bool(query.text.strip())
    has_reference = query.image is not None or query.product_id is not None
    if query.mode is SearchMode.LEXICAL and (has_reference or not has_text):
        raise RequestError("lexical mode matches words only: give a text and no reference")
    if query.mode is SearchMode.HYBRID and not has_text:
        raise RequestError("hybrid mode needs a text to match by words")
    if query.rrf_k > MAX_RRF_K:
        raise RequestError(f"rrf_k {query.rrf_k} is more than {MAX_RRF_K}")
    if query.score_threshold is not None and not math.isfinite(query.score_threshold):
        raise RequestError("score_threshold is not a finite number")
    if query.mode is not None:
        return query.mode
    if not has_text or has_reference:
        return SearchMode.DENSE  # the default mode is for text-only queries
    return limits.default_mode


def _offset(query: SearchQuery, top_k: int, limits: Limits) -> int:
    if query.page_token and query.offset:
        raise RequestError("give offset or page_token, not both")
    offset = paging.decode(query.page_token, query) if query.page_token else query.offset
    if offset + top_k > limits.max_depth:
        raise LimitError(
            f"offset {offset} + top_k {top_k} reaches past hit {limits.max_depth}, the deepest "
            "page served (max_depth); narrow the query with a filter instead"
        )
    return offset


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
    embed_text = bool(query.text.strip()) and query.mode is not SearchMode.LEXICAL
    if embed_text:
        calls.append(deps.text.embed(query.text, timeout_s=left()))
    if query.image is not None:
        calls.append(deps.image.embed(query.image, timeout_s=left()))
    elif query.product_id is not None:
        calls.append(deps.store.vector_of(query.product_id, timeout_s=left()))
    results = list(await asyncio.gather(*calls))
    text_vec = _vector(results.pop(0), model_version) if embed_text else None
    reference_vec = _reference_vector(results.pop(0), query, model_version) if results else None
    t_encoded = time.perf_counter()
    if text_vec is not None and reference_vec is not None:
        fused = await deps.fusion.fuse(reference_vec, text_vec, timeout_s=left())
        vector: np.ndarray | None = _vector(fused, model_version)
    else:
        vector = text_vec if text_vec is not None else reference_vec
    if vector is None and query.mode is not SearchMode.LEXICAL:
        # validate() refuses a query with nothing to search by
        raise RequestError("give a text, a reference (image or product_id), or both")
    t_fused = time.perf_counter()
    hits = await deps.store.search(_point_query(query, vector), timeout_s=left())
    t_done = time.perf_counter()
    timing = Timing(
        encode_ms=(t_encoded - t0) * 1000,
        fuse_ms=(t_fused - t_encoded) * 1000,
        search_ms=(t_done - t_fused) * 1000,
        total_ms=(t_done - t0) * 1000,
    )
    full = len(hits) == query.top_k
    next_token = paging.encode(query.offset + query.top_k, query) if full else ""
    return SearchResult(tuple(hits), model_version, timing, next_token, query.mode)


def _point_query(query: SearchQuery, vector: np.ndarray | None) -> PointQuery:
    mode = query.mode or SearchMode.DENSE
    return PointQuery(
        vector,
        query.top_k,
        None if query.filter.is_empty() else query.filter,
        text=query.text if mode is not SearchMode.DENSE else "",
        mode=mode,
        rrf_k=query.rrf_k,
        offset=query.offset,
        score_threshold=query.score_threshold,
    )


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
