"""Dense vs lexical vs hybrid search, measured in the real engine on shopper-worded queries.

The gallery's image embeddings and titles go into a Qdrant Edge collection in a temporary
folder, exactly as the platform's vector store writes them (the lexical index over titles
only). Each query of `shared.data.queries.attribute_written` ("men navy blue shirts", in each of
the evaluation phrasings) then runs
in each mode through the store's own query path, and the rankings are scored with the same
R/P/F1@K as every other query set of docs/QUALITY.md.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shared.data.catalog import Product
from shared.data.queries import attribute_written
from shared.models.metrics import DEFAULT_KS, retrieval_metrics
from shared.types import SearchMode
from shared.vectorstore import Point, VectorStore, open_store
from shared.vectorstore.base import PointQuery
from shared.vectorstore.lexical import DEFAULT_RRF_K
from training.evaluate import TextEmbedder


@contextlib.contextmanager
def gallery_store(images: np.ndarray, products: Sequence[Product]) -> Iterator[VectorStore]:
    """A Qdrant Edge collection in a temporary folder holding the gallery as the platform
    writes it (point id `g<index>`, title and attributes as payload)."""
    with (
        tempfile.TemporaryDirectory(prefix="vitrine-eval-") as root,
        open_store(
            f"edge:{Path(root)}", model_version="eval", dim=images.shape[1], indexed_fields={}
        ) as store,
    ):
        store.upsert(
            [
                Point(f"g{i}", images[i], {"title": p.title, **p.attributes})
                for i, p in enumerate(products)
            ]
        )
        yield store


def _ranked(hits_per_query: list[list[str]], k: int) -> np.ndarray:
    """Gallery indices [Q, k] of `g<index>` ids, padded with -1 where a mode found fewer than
    k hits."""
    out = np.full((len(hits_per_query), k), -1, dtype=np.int64)
    for row, hits in enumerate(hits_per_query):
        found = [int(pid[1:]) for pid in hits[:k]]
        out[row, : len(found)] = found
    return out


def search_mode_metrics(
    images: np.ndarray,
    embed_text: TextEmbedder,
    products: Sequence[Product],
    *,
    rrf_k: int = DEFAULT_RRF_K,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, Any]:
    """R/P/F1@K of each search mode on the attribute-written queries over the gallery
    `products`, whose image embeddings are `images` [len(products), dim]."""
    queries = attribute_written(products)
    if not queries:
        return {"queries": 0}
    k = max(ks)
    vectors = embed_text([q.text for q in queries])
    relevant = [set(q.relevant) for q in queries]
    result: dict[str, Any] = {
        "queries": len(queries),
        "gallery_size": len(products),
        "rrf_k": rrf_k,
        "lexical_fields": ["title"],
    }
    with gallery_store(images, products) as store:
        for mode in SearchMode:
            asked = [
                PointQuery(
                    vectors[n] if mode is not SearchMode.LEXICAL else None,
                    k,
                    exact=True,
                    text=q.text,
                    mode=mode,
                    rrf_k=rrf_k,
                )
                for n, q in enumerate(queries)
            ]
            hits = [[h.product_id for h in found] for found in store.search_batch(asked)]
            result[mode.value] = retrieval_metrics(_ranked(hits, k), relevant, ks=ks)
    return result


def evaluate_search_modes(
    model, products: Sequence[Product], *, cache_dir: Path | None, rrf_k: int = DEFAULT_RRF_K
) -> dict[str, Any]:
    """`search_mode_metrics` of a torch model (gallery features from the feature cache when
    `cache_dir` is given)."""
    from shared.models.inference import embed_texts
    from training.evaluate import image_embeddings

    images = image_embeddings(model, products, cache_dir=cache_dir)
    return search_mode_metrics(
        images, lambda texts: embed_texts(model, texts), products, rrf_k=rrf_k
    )
