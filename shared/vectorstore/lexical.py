"""The lexical index: BM25 over product titles, as a sparse vector beside the dense one.

Both backends index the same sparse vectors, made here by Qdrant's own BM25 model (the
`qdrant_edge` package's, which needs no server and no download): a document vector holds each
title token's term-frequency weight (with BM25's k, b and average length), a query vector a 1.0
per unique token, and the engine multiplies in the inverse document frequency over the
collection (`Modifier.IDF`). A Qdrant server gets the same vectors through qdrant-client, so
the embedded engine and a cluster score a title alike.

Only the title is indexed: attributes such as baseColour or articleType are filters (and, on
the Myntra data, the relevance definition of docs/QUALITY.md, which indexing them would make
trivial). Titles still carry colour and type words in most catalogs.
"""

from __future__ import annotations

import functools
from typing import Any

import qdrant_edge as qe

LEXICAL_VECTOR = "title"  # the sparse vector's name in a collection
LEXICAL_FIELD = "title"  # the payload field it indexes
# Reciprocal Rank Fusion's k. Cormack et al. (2009) used 60; on shopper-worded queries over the
# Myntra products the bundle trained on, k 5-20 gave hybrid R@10 0.890-0.895 and k 60 0.877
# (docs/QUALITY.md, "Search modes"), so the default is 10.
DEFAULT_RRF_K = 10
# Myntra titles have about 6 tokens after stop words (2,438 products); BM25's length
# normalisation is relative to this.
AVG_TITLE_TOKENS = 6.0


@functools.cache
def _model() -> qe.Bm25:
    return qe.Bm25(qe.Bm25Config(avg_len=AVG_TITLE_TOKENS))


def document_vector(payload: dict[str, Any]) -> tuple[list[int], list[float]]:
    """The sparse (indices, values) of a point's title; empty when it has none."""
    title = payload.get(LEXICAL_FIELD)
    if not isinstance(title, str) or not title.strip():
        return [], []
    sparse = _model().embed_document(title)
    return list(sparse.indices), list(sparse.values)


def query_vector(text: str) -> tuple[list[int], list[float]]:
    """The sparse (indices, values) of a query; empty when no word of it is indexable (stop
    words only, punctuation)."""
    sparse = _model().embed_query(text)
    return list(sparse.indices), list(sparse.values)
