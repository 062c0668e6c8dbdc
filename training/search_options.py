"""Search options measured on a catalog, in the real engine: negative examples and negative
text, MMR diversity, and the composed query's text weight.

- Negation: queries written from gender and article type ("men shirts"); the colour most
  frequent in a query's plain top 10 is the one negated, by an example of it (its top product
  of that colour: the engine's recommend query, best score) or by words (the colour's name:
  the query moves away from their embedding, as the gateway does with negative_text). The share of top-10 hits of that colour is
  compared with the same query without the negation; the share of hits of the asked type and
  gender shows what it costs. The example is left out of every variant's hits.
- Diversity: the attribute-written queries ("men navy blue shirts") at several MMR settings:
  distinct (articleType, baseColour) pairs in the top 10, against R@10 (the relevance paid).
- Text weight: composed colour-change queries (docs/QUALITY.md protocol) with the weighted sum
  (1 - w) * reference + w * text at several w, against the learned fusion.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shared.data.catalog import Product
from shared.data.queries import EVAL_WORD_PHRASINGS, attribute_written, composed_colour_change
from shared.models.metrics import rank, retrieval_metrics
from shared.models.weighting import away_from, weighted_sum
from shared.types import Condition, Filter
from shared.vectorstore import VectorStore
from shared.vectorstore.base import PointQuery
from training.evaluate import Fuser, TextEmbedder
from training.search_modes import gallery_store

K = 10


def _index(hits) -> list[int]:
    return [int(h.product_id[1:]) for h in hits]


def _type_queries(products: Sequence[Product], min_group: int = 10) -> list[tuple[str, set]]:
    groups: dict[tuple[str, str], set[int]] = defaultdict(set)
    for i, p in enumerate(products):
        gender, article = p.attributes.get("gender"), p.attributes.get("articleType")
        if gender and article and p.attributes.get("baseColour"):
            groups[(gender, article)].add(i)
    return [
        (f"{gender} {article}".lower(), members)
        for (gender, article), members in sorted(groups.items())
        if len(members) >= min_group
    ]


def negation_metrics(
    store: VectorStore, embed_text: TextEmbedder, products: Sequence[Product]
) -> dict[str, Any]:
    """Share of top-10 hits with the negated colour (and with the asked type), per variant."""
    queries = _type_queries(products)
    vectors = embed_text([q for q, _ in queries])
    colour = [p.attributes.get("baseColour", "") for p in products]
    shares: dict[str, list[float]] = defaultdict(list)
    on_type: dict[str, list[float]] = defaultdict(list)
    used = 0
    for (_, members), vector in zip(queries, vectors, strict=True):
        plain = _index(store.query(PointQuery(vector, K, exact=True)))
        negated, count = Counter(colour[i] for i in plain).most_common(1)[0]
        if count == K:  # nothing else to show instead
            continue
        example = next(i for i in plain if colour[i] == negated)
        skip = Filter(must_not=(Condition("product_id", (f"g{example}",)),))
        (unwanted,) = embed_text([negated.lower()])
        variants = {
            "plain": PointQuery(vector, K, skip, True),
            "negative example": PointQuery(
                vector, K, skip, True, negatives=(store_vector(store, example),)
            ),
            "negative text": PointQuery(away_from(vector, unwanted), K, skip, True),
        }
        for name, query in variants.items():
            hits = _index(store.query(query))
            shares[name].append(sum(colour[i] == negated for i in hits) / K)
            on_type[name].append(sum(i in members for i in hits) / K)
        used += 1
    return {
        "queries": used,
        "negated_colour_share@10": {k: float(np.mean(v)) for k, v in shares.items()},
        "asked_type_share@10": {k: float(np.mean(v)) for k, v in on_type.items()},
    }


def store_vector(store: VectorStore, index: int) -> np.ndarray:
    (point,) = store.retrieve([f"g{index}"], with_vectors=True, with_payload=False)
    assert point.vector is not None
    return point.vector


def diversity_metrics(
    store: VectorStore,
    embed_text: TextEmbedder,
    products: Sequence[Product],
    settings: Sequence[float] = (0.0, 0.3, 0.6, 0.9),
) -> dict[str, Any]:
    """R@10 and distinct (articleType, baseColour) pairs in the top 10 per MMR setting."""
    queries = attribute_written(products, phrasings=EVAL_WORD_PHRASINGS[:1])
    vectors = embed_text([q.text for q in queries])
    relevant = [set(q.relevant) for q in queries]
    pair = [(p.attributes.get("articleType"), p.attributes.get("baseColour")) for p in products]
    out: dict[str, Any] = {"queries": len(queries)}
    for d in settings:
        ranked = [_index(store.query(PointQuery(v, K, exact=True, diversity=d))) for v in vectors]
        recall = retrieval_metrics(np.array(ranked), relevant, ks=(K,))[f"R@{K}"]
        distinct = float(np.mean([len({pair[i] for i in row}) for row in ranked]))
        out[f"{d:g}"] = {f"R@{K}": recall, f"distinct_pairs@{K}": distinct}
    return out


def composed_weight_metrics(
    images: np.ndarray,
    embed_text: TextEmbedder,
    fuse_pairs: Fuser,
    products: Sequence[Product],
    weights: Sequence[float] = (0.3, 0.5, 0.7, 0.85),
) -> dict[str, Any]:
    """R/P/F1@10 of composed colour-change queries: learned fusion vs weighted sums."""
    queries = composed_colour_change(products, max_queries=1500, seed=0)
    refs = np.array([q.reference for q in queries])
    texts = embed_text([q.text for q in queries])
    relevant = [set(q.relevant) for q in queries]
    candidates = {"learned fusion": fuse_pairs(images[refs], texts)}
    for w in weights:
        candidates[f"text weight {w:g}"] = np.stack(
            [weighted_sum(images[r], t, w) for r, t in zip(refs, texts, strict=True)]
        )
    return {
        "queries": len(queries),
        **{
            name: retrieval_metrics(rank(q, images, k=K, exclude=refs), relevant, ks=(K,))
            for name, q in candidates.items()
        },
    }


def evaluate_search_options(model, products: Sequence[Product], *, cache_dir: Path | None):
    """All three, for a torch model (gallery features from the feature cache)."""
    from shared.models.inference import embed_texts, fuse
    from training.evaluate import image_embeddings

    images = image_embeddings(model, products, cache_dir=cache_dir)

    def embed(texts: list[str]) -> np.ndarray:
        return embed_texts(model, texts)

    with gallery_store(images, products) as store:
        result = {
            "negation": negation_metrics(store, embed, products),
            "diversity": diversity_metrics(store, embed, products),
        }
    result["text_weight"] = composed_weight_metrics(
        images, embed, lambda i, t: fuse(model, i, t), products
    )
    return result
