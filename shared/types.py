"""Internal value types that cross process boundaries.

Proto messages stop at the edge of a process: inside a process, and across Ray handles, code
passes these dataclasses and numpy arrays. `shared.conversions` maps them to and from protos.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CATALOG_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Embeddings:
    """A batch of embeddings and the model bundle that produced them.

    Attributes:
        vectors: float32 array of shape [batch, dim].
        model_version: identifier of the producing model bundle.
    """

    vectors: np.ndarray
    model_version: str

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2:
            raise ValueError(f"embeddings must be 2-D [batch, dim], got shape {self.vectors.shape}")

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Embeddings)
            and self.model_version == other.model_version
            and self.vectors.shape == other.vectors.shape
            and bool(np.array_equal(self.vectors, other.vectors))
        )

    # Unhashable (array fields); typeshed types __hash__ as a method, so mypy rejects None.
    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class FusionInput:
    """The two halves of a batch of composed queries, row i of each belonging together."""

    image_vectors: np.ndarray  # [batch, dim]
    text_vectors: np.ndarray  # [batch, dim]

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, FusionInput)
            and np.array_equal(self.image_vectors, other.image_vectors)
            and np.array_equal(self.text_vectors, other.text_vectors)
        )

    # Unhashable (array fields); typeshed types __hash__ as a method, so mypy rejects None.
    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Range:
    """Numeric bounds; None means open on that side."""

    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None


@dataclass(frozen=True)
class Missing:
    """Matches a point whose field is absent (or null, or an empty list)."""


MatchValue = str | int | bool | Range | tuple[str, ...] | Missing
"""A condition's match: a keyword, an integer, a boolean, a numeric range, any-of keywords, or
the field's absence."""


@dataclass(frozen=True)
class Condition:
    key: str
    match: MatchValue


@dataclass(frozen=True)
class Filter:
    """Payload conditions: every `must` holds and no `must_not` holds."""

    must: tuple[Condition, ...] = ()
    must_not: tuple[Condition, ...] = ()

    def is_empty(self) -> bool:
        return not self.must and not self.must_not


# A payload field a filter may name: letters, digits, `_` and `-`, nested with dots. The store's
# JSON paths give other characters meanings of their own (`[]`, quotes).
FILTER_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*(\.[A-Za-z0-9_][A-Za-z0-9_-]*)*")
MAX_FILTER_KEY_CHARS = 128


def is_field_name(key: str) -> bool:
    """Whether `key` may name a payload field (in a filter, a facet or a grouping)."""
    return len(key) <= MAX_FILTER_KEY_CHARS and bool(FILTER_KEY.fullmatch(key))


def filter_problem(flt: Filter) -> str | None:
    """What makes a filter unusable (a malformed key, a bound that is not a finite number), in
    words for the caller; None when it is fine."""
    for c in flt.must + flt.must_not:
        if not c.key:
            return "a filter condition has no key"
        if not is_field_name(c.key):
            return (
                f"filter key {c.key[:MAX_FILTER_KEY_CHARS]!r} is not a field name (letters, digits, "
                f"_ and -, nested with dots, at most {MAX_FILTER_KEY_CHARS} characters)"
            )
        if isinstance(c.match, Range):
            bounds = [c.match.gt, c.match.gte, c.match.lt, c.match.lte]
            if all(b is None for b in bounds):
                return f"range on {c.key!r} has no bound"
            if any(b is not None and not math.isfinite(b) for b in bounds):
                return f"range on {c.key!r} has a bound that is not a finite number"
        if isinstance(c.match, tuple) and not c.match:
            return f"any_of on {c.key!r} lists no values"
    return None


class SearchMode(enum.Enum):
    """How a query's words are matched: by the text embedding (dense), by BM25 over titles
    (lexical), or both fused by Reciprocal Rank Fusion (hybrid)."""

    DENSE = "dense"
    LEXICAL = "lexical"
    HYBRID = "hybrid"


@dataclass(frozen=True)
class SearchQuery:
    """A search: text, a reference (image bytes or product id), or both (composed)."""

    text: str = ""
    image: bytes | None = None
    product_id: str | None = None
    top_k: int = 0
    filter: Filter = field(default_factory=Filter)
    # None: the gateway's default mode. Lexical and hybrid need text.
    mode: SearchMode | None = None
    rrf_k: int = 0  # 0: the default (shared.vectorstore.lexical.DEFAULT_RRF_K)
    offset: int = 0  # hits to skip (paging); a page token sets it too
    page_token: str = ""  # from a previous answer's next_page_token
    score_threshold: float | None = None  # hits scoring below are left out
    # Refinements over the top candidates (see vitrine.search.v1.SearchRequest).
    facets: tuple[str, ...] = ()
    group_by: str = ""
    group_size: int = 0  # 0: one per group
    adaptive_cutoff: bool = False
    diversity: float = 0.0  # MMR; 0 is off
    # More / less like these products, and words the hits should not look like.
    positive_ids: tuple[str, ...] = ()
    negative_ids: tuple[str, ...] = ()
    negative_text: str = ""
    # Composed queries: a weighted sum instead of the learned fusion (None: the fusion).
    text_weight: float | None = None
    catalog: str = ""  # "": the default catalog (or the key's one catalog); shared.catalogs

    @property
    def refines(self) -> bool:
        """Whether the answer is computed over the top candidates (facets, groups, cut-off)."""
        return bool(self.facets or self.group_by or self.adaptive_cutoff)


@dataclass(frozen=True)
class Facet:
    """Counts of one payload field's values among a query's top candidates."""

    field: str
    values: tuple[tuple[str, int], ...]  # (value, count), most frequent first


@dataclass(frozen=True)
class Hit:
    product_id: str
    score: float
    payload: Mapping[str, Any]  # a dict, or the gateway's lazily read StructPayload


@dataclass(frozen=True)
class Timing:
    """Milliseconds spent per stage of one search."""

    encode_ms: float = 0.0
    fuse_ms: float = 0.0
    search_ms: float = 0.0
    total_ms: float = 0.0


@dataclass(frozen=True)
class SearchResult:
    hits: tuple[Hit, ...]
    model_version: str
    timing: Timing = field(default_factory=Timing)
    next_page_token: str = ""  # empty on the last page
    mode: SearchMode | None = None  # the mode the query ran in
    facets: tuple[Facet, ...] = ()
    candidates: int = 0  # top candidates that facets, groups and the cut-off looked at


class Op(enum.Enum):
    UPSERT = "upsert"
    DELETE = "delete"
    UPDATE = "update"  # title and attributes only: no image, no re-embedding


@dataclass(frozen=True)
class CatalogEvent:
    """One change to the catalog, as carried on the Kafka topic (keyed by product_id)."""

    product_id: str
    op: Op
    image_bytes: bytes | None = None
    image_uri: str | None = None
    title: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    event_time: dt.datetime | None = None
    schema_version: int = CATALOG_SCHEMA_VERSION
    # Orders a product's events (0: use event_time; see protos/vitrine/catalog/v1).
    version: int = 0
    catalog: str = ""  # "": the default catalog (shared.catalogs)


@dataclass(frozen=True)
class BatchingInfo:
    """A replica's dynamic batching: the user_config in force and what it has done."""

    max_batch_size: int
    batch_wait_timeout_s: float
    batches: int = 0
    items: int = 0
    mean_batch_size: float = 0.0
    mean_queue_wait_ms: float = 0.0
    mean_compute_ms: float = 0.0


@dataclass(frozen=True)
class ReplicaInfo:
    """What one replica of an internal service runs with (vitrine.replica.v1)."""

    application: str
    replica_id: str
    model_version: str
    dim: int
    runtime: str
    threads: int
    cpu_budget: float
    batching: BatchingInfo | None = None
