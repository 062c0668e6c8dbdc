"""The search pipeline: encode in parallel, fuse, search, refine over the top candidates. No
gRPC or HTTP here; queries arrive validated (services.gateway.validation)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from services.gateway import paging, refine
from shared.catalogs import qualify, scoped, unqualify
from shared.models.weighting import away_from, weighted_sum
from shared.observability import tracing
from shared.serving.errors import DependencyError, NotFoundError, RequestError
from shared.types import (
    Condition,
    Filter,
    SearchMode,
    SearchQuery,
    SearchResult,
    Timing,
)
from shared.vectorstore.base import PRODUCT_ID_FIELD, PointQuery


class Dependencies:
    """The gateway's gRPC clients of the other applications (`shared.serving.clients`)."""

    def __init__(self, *, image, text, fusion, store) -> None:
        self.image, self.text, self.fusion, self.store = image, text, fusion, store


@dataclass
class _Vectors:
    """What the encoders and the store gave a query: its search vector and its examples."""

    vector: np.ndarray | None
    positives: tuple[np.ndarray, ...]
    negatives: tuple[np.ndarray, ...]


async def run_search(
    query: SearchQuery,
    deps: Dependencies,
    *,
    model_version: str,
    deadline: float,
    candidates: int = 200,
) -> SearchResult:
    """Runs a validated query before `deadline` (time.monotonic()). Encoders run in parallel;
    fusion only for composed queries. Each downstream call gets the time that is left. Facets,
    groups and the adaptive cut-off are computed over the top `candidates` hits."""

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("deadline exceeded")
        return remaining

    t0 = time.perf_counter()
    vectors, t_encoded = await _encode(query, deps, model_version, left)
    t_fused = time.perf_counter()
    asked = _point_query(query, vectors)
    with tracing.span("search"):
        hits, more, facets, pool = await _search(query, asked, deps, left, candidates)
    t_done = time.perf_counter()
    timing = Timing(
        encode_ms=(t_encoded - t0) * 1000,
        fuse_ms=(t_fused - t_encoded) * 1000,
        search_ms=(t_done - t_fused) * 1000,
        total_ms=(t_done - t0) * 1000,
    )
    next_token = paging.encode(query.offset + query.top_k, query) if more else ""
    # The store's keys are catalog-qualified; callers see their own product ids.
    hits = [dataclasses.replace(h, product_id=unqualify(h.product_id)[1]) for h in hits]
    return SearchResult(
        tuple(hits), model_version, timing, next_token, query.mode, facets, len(pool)
    )


async def _search(
    query: SearchQuery, asked: PointQuery, deps: Dependencies, left, candidates: int
) -> tuple[list, bool, tuple, list]:
    """(hits, more pages?, facets, the candidates looked at) of the store's answer."""
    if not query.refines:
        hits = await deps.store.search(asked, timeout_s=left())
        return hits, len(hits) == query.top_k, (), []
    depth = max(candidates, query.offset + query.top_k)
    pool = await deps.store.search(
        dataclasses.replace(asked, top_k=depth, offset=0), timeout_s=left()
    )
    facets = refine.facets(pool, query.facets)
    ranked = pool
    if query.group_by:
        ranked = refine.grouped(ranked, query.group_by, query.group_size or 1)
    if query.adaptive_cutoff:
        ranked = refine.cut_at_gap(ranked)
    hits = ranked[query.offset : query.offset + query.top_k]
    return hits, len(ranked) > query.offset + query.top_k, facets, pool


async def _encode(
    query: SearchQuery, deps: Dependencies, model_version: str, left
) -> tuple[_Vectors, float]:
    """The query's vectors, and when encoding ended (fusion, if any, comes after it)."""
    embed_text = bool(query.text.strip()) and query.mode is not SearchMode.LEXICAL
    negative_text = bool(query.negative_text.strip())
    examples = [*query.positive_ids, *query.negative_ids]
    calls = []
    if embed_text:
        calls.append(deps.text.embed(query.text, timeout_s=left()))
    if query.image is not None:
        calls.append(deps.image.embed(query.image, timeout_s=left()))
    elif query.product_id is not None:
        reference = qualify(query.catalog, query.product_id)
        calls.append(deps.store.vector_of(reference, timeout_s=left()))
    calls += [deps.store.vector_of(qualify(query.catalog, p), timeout_s=left()) for p in examples]
    if negative_text:
        calls.append(deps.text.embed(query.negative_text, timeout_s=left()))
    with tracing.span("encode"):
        results = list(await asyncio.gather(*calls))
    unwanted = _vector(results.pop(), model_version) if negative_text else None
    own = len(results) - len(examples)  # the text's and the reference's, before the examples
    found = [_example(p, pid) for p, pid in zip(results[own:], examples, strict=True)]
    results = results[:own]
    text_vec = _vector(results.pop(0), model_version) if embed_text else None
    reference_vec = _reference_vector(results.pop(0), query, model_version) if results else None
    t_encoded = time.perf_counter()
    if text_vec is not None and reference_vec is not None and query.text_weight is not None:
        vector: np.ndarray | None = weighted_sum(reference_vec, text_vec, query.text_weight)
    elif text_vec is not None and reference_vec is not None:
        with tracing.span("fuse"):
            fused = await deps.fusion.fuse(reference_vec, text_vec, timeout_s=left())
        vector = _vector(fused, model_version)
    else:
        vector = text_vec if text_vec is not None else reference_vec
    positives = tuple(found[: len(query.positive_ids)])
    negatives = tuple(found[len(query.positive_ids) :])
    if unwanted is not None and vector is not None:
        vector = away_from(vector, unwanted)  # words: the query moves away from them
    elif unwanted is not None:
        negatives += (unwanted,)  # no query vector to move: a negative example
    if vector is None and not positives and query.mode is not SearchMode.LEXICAL:
        # validate() refuses a query with nothing to search by
        raise RequestError("give a text, a reference (image or product_id), or both")
    return _Vectors(vector, positives, negatives), t_encoded


def _example(point, product_id: str) -> np.ndarray:
    if point is None:
        raise NotFoundError(f"example product {product_id!r} is not in the catalog")
    return point.vector


def _point_query(query: SearchQuery, vectors: _Vectors) -> PointQuery:
    mode = query.mode or SearchMode.DENSE
    flt = scoped(query.filter, query.catalog)  # one catalog's products only
    if examples := (*query.positive_ids, *query.negative_ids):  # never answer an example
        keys = tuple(qualify(query.catalog, p) for p in examples)
        flt = Filter(flt.must, (*flt.must_not, Condition(PRODUCT_ID_FIELD, keys)))
    return PointQuery(
        vectors.vector,
        query.top_k,
        flt,
        text=query.text if mode is not SearchMode.DENSE else "",
        mode=mode,
        rrf_k=query.rrf_k,
        offset=query.offset,
        score_threshold=query.score_threshold,
        diversity=query.diversity,
        positives=vectors.positives,
        negatives=vectors.negatives,
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
