"""A query against the vector store (every mode), as the store's interface takes it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.types import Filter, SearchMode
from shared.vectorstore.lexical import DEFAULT_RRF_K


def same_vector(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.shape == b.shape and bool(np.array_equal(a, b))


# Candidates each branch of a hybrid query passes to the fusion (at least offset + top_k).
HYBRID_CANDIDATES = 100
# Hits past a page that a lexical or hybrid query also ranks, so that products tied in score
# at the page's end are ordered by id whatever the engine returned (VectorStore.search_batch).
TIE_SLACK = 32


@dataclass(frozen=True, eq=False)
class PointQuery:
    """A query against the store: nearest neighbours of `vector` (dense), BM25 over titles of
    `text` (lexical), or both fused by Reciprocal Rank Fusion with constant `rrf_k` (hybrid).

    Hits `offset`..`offset + top_k` of the ranking are returned, those scoring below
    `score_threshold` left out (the mode's score: cosine, BM25 or RRF).
    """

    vector: np.ndarray | None  # [dim] float32; None only for a lexical query
    top_k: int
    filter: Filter | None = None
    exact: bool = False
    text: str = ""
    mode: SearchMode = SearchMode.DENSE
    rrf_k: int = DEFAULT_RRF_K
    offset: int = 0
    score_threshold: float | None = None
    diversity: float = 0.0  # Maximal Marginal Relevance; 0 is off, 1 diversity only
    # Examples: near a positive, far from every negative (the engine's recommend query).
    positives: tuple[np.ndarray, ...] = ()
    negatives: tuple[np.ndarray, ...] = ()

    def _key(self) -> tuple:
        return (
            self.top_k, self.filter, self.exact, self.text, self.mode, self.rrf_k, self.offset,
            self.score_threshold, self.diversity, len(self.positives), len(self.negatives),
        )  # fmt: skip

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, PointQuery)
            and self._key() == other._key()
            and same_vector(self.vector, other.vector)
            and all(map(same_vector, self.positives, other.positives))
            and all(map(same_vector, self.negatives, other.negatives))
        )

    @property
    def mmr_vector(self) -> np.ndarray | None:
        """The vector MMR measures relevance against: the query's, or its positives' mean."""
        if self.vector is not None:
            return self.vector
        return np.mean(self.positives, axis=0) if self.positives else None

    @property
    def candidates(self) -> int:
        """How many hits each branch of a hybrid query ranks."""
        return max(HYBRID_CANDIDATES, self.offset + self.top_k)
