"""Retrieval metrics, cross-checked against an independent implementation (pytrec_eval)."""

from __future__ import annotations

import numpy as np
import pytest
import pytrec_eval

from shared.data.catalog import Product
from shared.data.queries import composed_colour_change, text_to_image_attribute, text_to_image_own
from shared.models.metrics import fashioniq_protocol, rank, retrieval_metrics

KS = (1, 5, 10, 20, 30, 50)


def _random_case(seed: int, n_queries: int = 40, gallery: int = 120):
    rng = np.random.default_rng(seed)
    ranked = np.stack([rng.permutation(gallery)[:50] for _ in range(n_queries)])
    relevant = [
        set(rng.choice(gallery, size=rng.integers(1, 15), replace=False).tolist())
        for _ in range(n_queries)
    ]
    return ranked, relevant


@pytest.mark.parametrize("seed", range(5))
def test_recall_and_precision_match_pytrec_eval(seed):
    ranked, relevant = _random_case(seed)
    qrels = {f"q{i}": {f"d{d}": 1 for d in rel} for i, rel in enumerate(relevant)}
    run = {
        f"q{i}": {f"d{d}": float(50 - r) for r, d in enumerate(row)} for i, row in enumerate(ranked)
    }
    measures = {f"recall.{','.join(map(str, KS))}", f"P.{','.join(map(str, KS))}"}
    reference = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    ours = retrieval_metrics(ranked, relevant, ks=KS)
    for k in KS:
        ref_r = np.mean([reference[q][f"recall_{k}"] for q in reference])
        ref_p = np.mean([reference[q][f"P_{k}"] for q in reference])
        assert ours[f"R@{k}"] == pytest.approx(ref_r, abs=1e-9)
        assert ours[f"P@{k}"] == pytest.approx(ref_p, abs=1e-9)
        per_query_f1 = [
            0.0
            if reference[q][f"P_{k}"] + reference[q][f"recall_{k}"] == 0
            else 2
            * reference[q][f"P_{k}"]
            * reference[q][f"recall_{k}"]
            / (reference[q][f"P_{k}"] + reference[q][f"recall_{k}"])
            for q in reference
        ]
        assert ours[f"F1@{k}"] == pytest.approx(np.mean(per_query_f1), abs=1e-9)


def test_rank_orders_by_cosine_and_excludes():
    gallery = np.eye(4, dtype=np.float32)
    query = np.array([[0.9, 0.1, 0.0, 0.4]], dtype=np.float32)
    assert rank(query, gallery, k=3).tolist() == [[0, 3, 1]]
    assert rank(query, gallery, k=3, exclude=[0]).tolist() == [[3, 1, 2]]


def test_metrics_reject_empty_relevant_sets():
    with pytest.raises(ValueError, match="at least one relevant"):
        retrieval_metrics(np.zeros((1, 5), int), [set()], ks=(1,))


def test_fashioniq_protocol_averages_categories():
    out = fashioniq_protocol(
        {"dress": {"R@10": 0.2, "R@50": 0.4}, "shirt": {"R@10": 0.4, "R@50": 0.6}}
    )
    assert out["mean/R@10"] == pytest.approx(0.3) and out["mean/R@50"] == pytest.approx(0.5)
    assert out["mean"] == pytest.approx(0.4)


def _p(i: int, article: str, colour: str, gender: str = "Men") -> Product:
    attrs = {"articleType": article, "baseColour": colour, "gender": gender}
    return Product(id=str(i), image=f"/x/{i}.jpg", title=f"{colour} {article}", attributes=attrs)


CATALOG = [
    _p(0, "Shirts", "Blue"),
    _p(1, "Shirts", "Black"),
    _p(2, "Shirts", "Black"),
    _p(3, "Shirts", "Blue", "Women"),
    _p(4, "Tshirts", "Red"),
    _p(5, "Shirts", "Blue"),
]


def test_text_queries():
    own = text_to_image_own(CATALOG)
    assert [q.relevant for q in own][:2] == [frozenset({0}), frozenset({1})]
    attr = {q.product: q.relevant for q in text_to_image_attribute(CATALOG)}
    assert (
        attr[0] == frozenset({0, 5}) and attr[1] == frozenset({1, 2}) and attr[4] == frozenset({4})
    )


def test_composed_colour_change_protocol():
    queries = composed_colour_change(CATALOG, seed=0)
    by_ref = {q.reference: q for q in queries}
    # Blue men's shirts can only become black; black ones only blue; nothing else has options.
    assert set(by_ref) == {0, 1, 2, 5}
    assert by_ref[0].text == "in black" and by_ref[0].relevant == frozenset({1, 2})
    assert by_ref[1].text == "in blue" and by_ref[1].relevant == frozenset({0, 5})
    assert all(q.reference not in q.relevant for q in queries)
    assert composed_colour_change(CATALOG, seed=0) == queries
    assert len(composed_colour_change(CATALOG, max_queries=2)) == 2
