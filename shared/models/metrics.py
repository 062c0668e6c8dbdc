"""Retrieval metrics: Recall@K, Precision@K, F1@K, and the FashionIQ protocol.

For a query with relevant set R and ranked list L: R@K = |R ∩ L[:K]| / |R|,
P@K = |R ∩ L[:K]| / K, F1@K = 2 P R / (P + R) (0 when both are 0), each averaged over queries.
FashionIQ has one target per query, so its R@K is the hit rate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_KS = (1, 5, 10, 20, 30, 50)


def rank(
    queries: np.ndarray,
    gallery: np.ndarray,
    *,
    k: int,
    exclude: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """Top-k gallery indices by cosine similarity for each query, best first.

    Args:
        queries: [Q, D] L2-normalised.
        gallery: [G, D] L2-normalised.
        k: list length (capped at G).
        exclude: per query, one gallery index to leave out (e.g. the reference item), or -1.

    Returns:
        int array [Q, min(k, G)].
    """
    sims = queries @ gallery.T  # [Q, G]
    if exclude is not None:
        rows = np.arange(len(queries))
        cols = np.asarray(exclude)
        valid = cols >= 0
        sims[rows[valid], cols[valid]] = -np.inf
    k = min(k, gallery.shape[0])
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(sims, top, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(top, order, axis=1)


def retrieval_metrics(
    ranked: np.ndarray, relevant: Sequence[set[int]], *, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """R@K, P@K and F1@K averaged over queries.

    Args:
        ranked: [Q, >= max(ks)] gallery indices, best first.
        relevant: per query, the set of relevant gallery indices (non-empty).
    """
    if len(ranked) != len(relevant):
        raise ValueError(f"{len(ranked)} rankings but {len(relevant)} relevant sets")
    if any(not r for r in relevant):
        raise ValueError("every query needs at least one relevant item")
    out: dict[str, float] = {}
    for k in ks:
        hits = np.array(
            [
                len(rel.intersection(row[:k].tolist()))
                for row, rel in zip(ranked, relevant, strict=True)
            ]
        )
        sizes = np.array([len(rel) for rel in relevant])
        recall = hits / sizes
        precision = hits / k
        denom = recall + precision
        f1 = np.divide(
            2 * recall * precision, denom, out=np.zeros_like(denom, dtype=float), where=denom > 0
        )
        out[f"R@{k}"] = float(recall.mean())
        out[f"P@{k}"] = float(precision.mean())
        out[f"F1@{k}"] = float(f1.mean())
    return out


def fashioniq_protocol(recalls_by_category: dict[str, dict[str, float]]) -> dict[str, float]:
    """FashionIQ's summary: R@10 and R@50 per category, their means, and the overall average."""
    out: dict[str, float] = {}
    for cat, m in sorted(recalls_by_category.items()):
        out[f"{cat}/R@10"] = m["R@10"]
        out[f"{cat}/R@50"] = m["R@50"]
    cats = list(recalls_by_category)
    out["mean/R@10"] = float(np.mean([recalls_by_category[c]["R@10"] for c in cats]))
    out["mean/R@50"] = float(np.mean([recalls_by_category[c]["R@50"] for c in cats]))
    out["mean"] = (out["mean/R@10"] + out["mean/R@50"]) / 2
    return out
