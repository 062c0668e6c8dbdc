"""What the gateway accepts: a query's checks and the defaults it resolves (top_k, mode, RRF k,
the offset a page token points at). Every refusal names what is wrong for the caller."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from services.gateway import paging
from shared.catalogs import catalog_problem
from shared.models.transforms import ImageDecodeError, PixelBudgetError, request_pixels
from shared.serving.errors import LimitError, RequestError
from shared.types import (
    MAX_FILTER_KEY_CHARS,
    Filter,
    SearchMode,
    SearchQuery,
    filter_problem,
    is_field_name,
)
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
    # Top hits that facets, groups and the adaptive cut-off look at.
    candidates: int = 200
    max_facets: int = 8
    max_group_size: int = 100
    max_examples: int = 32  # positive_ids + negative_ids


def validate(query: SearchQuery, limits: Limits) -> SearchQuery:
    """The query with its top_k, mode, RRF k and offset (from a page token) resolved.

    Raises:
        RequestError / LimitError: what is wrong, in words for the caller.
    """
    has_reference = query.image is not None or query.product_id is not None
    if not query.text.strip() and not has_reference and not query.positive_ids:
        raise RequestError(
            "give a text, a reference (image or product_id), or both; or positive_ids"
        )
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
    if problem := catalog_problem(query.catalog):
        raise RequestError(problem)
    _validate_filter(query.filter, limits)
    _check_refinements(query, limits)
    _check_examples(query, limits)
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


def _field(name: str, what: str) -> None:
    if not is_field_name(name):
        raise RequestError(f"{what} {name[:MAX_FILTER_KEY_CHARS]!r} is not a payload field name")


def _check_refinements(query: SearchQuery, limits: Limits) -> None:
    if len(query.facets) > limits.max_facets:
        raise LimitError(f"{len(query.facets)} facet fields, more than {limits.max_facets}")
    if len(set(query.facets)) != len(query.facets):
        raise RequestError("a facet field is named twice")
    for name in query.facets:
        _field(name, "facet")
    if query.group_by:
        _field(query.group_by, "group_by")
    elif query.group_size:
        raise RequestError("group_size needs group_by")
    if query.group_size > limits.max_group_size:
        raise LimitError(f"group_size {query.group_size} is more than {limits.max_group_size}")
    if not (math.isfinite(query.diversity) and 0.0 <= query.diversity <= 1.0):
        raise RequestError("diversity must be between 0 and 1")
    if query.diversity and query.adaptive_cutoff:
        raise RequestError(
            "adaptive_cutoff reads the score curve, and a diversified ranking is not ordered by "
            "score: use one or the other"
        )


def _check_examples(query: SearchQuery, limits: Limits) -> None:
    examples = (*query.positive_ids, *query.negative_ids)
    if len(examples) > limits.max_examples:
        raise LimitError(f"{len(examples)} example products, more than {limits.max_examples}")
    if any(not pid.strip() for pid in examples):
        raise RequestError("an example product id is empty")
    if len(query.negative_text) > limits.max_text_chars:
        raise LimitError(f"negative_text is longer than {limits.max_text_chars} characters")
    if query.text_weight is not None:
        has_reference = query.image is not None or query.product_id is not None
        if not (math.isfinite(query.text_weight) and 0.0 <= query.text_weight <= 1.0):
            raise RequestError("text_weight must be between 0 and 1")
        if not (has_reference and query.text.strip()):
            raise RequestError("text_weight weighs a composed query: give a reference and a text")
    if query.mode is SearchMode.LEXICAL and (
        examples or query.negative_text.strip() or query.diversity
    ):
        raise RequestError(
            "lexical mode matches words only: example products, negative_text and diversity "
            "need the embedding (dense or hybrid mode)"
        )
