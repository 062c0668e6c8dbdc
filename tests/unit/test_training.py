"""The training loop, examples and config, without Ray (the smoke test runs them under Ray)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from shared.data.catalog import Product, load_products
from shared.data.queries import (
    CHANGES,
    EVAL_MODIFIER_PHRASINGS,
    EVAL_WORD_PHRASINGS,
    TRAIN_MODIFIER_PHRASINGS,
    TRAIN_WORD_PHRASINGS,
    attribute_written,
    composed_change,
    composed_colour_change,
    composed_reworded,
    training_modifiers,
    training_words,
)
from tests.unit.test_data import MYNTRA
from training.batches import schedule as _schedule
from training.config import TrainConfig
from training.examples import build_examples, sample_composed, sample_words, unbranded
from training.loop import TrainInputs, run_training

COLOURS = ["Blue", "Black", "Red", "White"]


def _catalog(n: int = 48) -> list[Product]:
    return [
        Product(
            id=str(i),
            image=f"/nowhere/{i}.jpg",
            title=f"{COLOURS[i % 4]} {'Shirts' if i % 3 else 'Tshirts'} {i}",
            attributes={
                "articleType": "Shirts" if i % 3 else "Tshirts",
                "baseColour": COLOURS[i % 4],
                "gender": "Men",
            },
        )
        for i in range(n)
    ]


def _inputs(products: list[Product], dim: int = 12) -> TrainInputs:
    rng = np.random.default_rng(0)
    ex = build_examples(products)
    # Features that carry the attributes, so that there is something to learn.
    base = rng.standard_normal((len(products), dim)).astype(np.float32)
    images = np.stack([base, base + 0.05 * rng.standard_normal(base.shape).astype(np.float32)])
    return TrainInputs(
        examples=ex,
        image_features=images,
        title_features=base + 0.1 * rng.standard_normal(base.shape).astype(np.float32),
        modifier_features=rng.standard_normal((len(ex.composed.texts), dim)).astype(np.float32),
        image_paths=[str(p.image) for p in products],
        image_feature_dim=dim,
        text_feature_dim=dim,
        words_features=rng.standard_normal((len(ex.words.texts), dim)).astype(np.float32),
    )


def _config(**optim) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "heads": {
                "embed_dim": 8,
                "image_hidden_dim": 16,
                "text_hidden_dim": 16,
                "fusion_hidden_dim": 8,
            },
            "optim": {"epochs": 6, "batch_size": 16, "lr": 3e-3, **optim},
        }
    )


@pytest.mark.parametrize(
    "loss", ["info_nce", "triplet", "triplet_all", "contrastive", "cmpm", "corrnet"]
)
def test_training_lowers_the_loss(loss):
    history = []
    model = run_training(
        _config(loss=loss), _inputs(_catalog()), on_epoch=lambda m, metrics: history.append(metrics)
    )
    assert len(history) == 6 and {"t2i", "composed", "loss"} <= set(history[0])
    assert history[-1]["loss"] < history[0]["loss"]
    assert not model.training


def test_training_is_deterministic():
    a = run_training(_config(epochs=2), _inputs(_catalog()))
    b = run_training(_config(epochs=2), _inputs(_catalog()))
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, msg=name)


def test_composed_examples_target_the_new_colour():
    products = _catalog()
    ex = build_examples(products)
    refs, texts, targets = sample_composed(
        ex.composed, np.arange(len(ex.composed.references)), np.random.default_rng(0)
    )
    for r, t, g in zip(refs, texts, targets, strict=True):
        ref, target = products[r], products[g]
        assert target.attributes["articleType"] == ref.attributes["articleType"]
        assert target.attributes["baseColour"] != ref.attributes["baseColour"]
        assert ex.composed.texts[t] in training_modifiers(target.attributes["baseColour"])
    assert ex.attribute_groups[0] != ex.attribute_groups[1]


def test_training_texts_never_use_an_evaluation_phrasing():
    """Every shopper-style text training sees comes from the TRAIN_ templates, and none equals
    a query of the evaluation sets (attribute words in every EVAL_ phrasing, composed queries
    reworded), on the synthetic catalog and, when present, the team folder's Myntra catalog."""
    catalogs = [_catalog()]
    myntra = MYNTRA / "products.jsonl"
    if myntra.is_file():
        catalogs.append(load_products(myntra))
    for products in catalogs:
        ex = build_examples(products, composed_kinds=("colour", "type", "gender"))
        evaluated = {q.text for q in attribute_written(products, min_group=1)}
        composed = composed_colour_change(products, max_queries=10**6)
        evaluated |= {q.text for q in composed_reworded(composed)}
        for kind in CHANGES:
            evaluated |= {q.text for q in composed_change(products, kind, max_queries=10**6)}
        assert ex.words.texts and ex.composed.texts
        assert not evaluated & set(ex.words.texts)
        assert not evaluated & set(ex.composed.texts)
        assert {q.text for q in composed_reworded(composed)} - {q.text for q in composed}
        sampled, texts = sample_words(
            ex.words, np.arange(len(ex.words.products)), np.random.default_rng(0)
        )
        for product, text in zip(sampled, texts, strict=True):
            assert ex.words.texts[text] in training_words(products[product])
    assert set(EVAL_WORD_PHRASINGS).isdisjoint(TRAIN_WORD_PHRASINGS)
    assert set(EVAL_MODIFIER_PHRASINGS).isdisjoint(TRAIN_MODIFIER_PHRASINGS)
    assert all(set(c.train).isdisjoint(c.evaluate) for c in CHANGES.values())


def test_type_and_gender_changes_keep_everything_else():
    products = [
        dataclasses.replace(p, attributes={**p.attributes, "subCategory": "Topwear"})
        for p in _catalog()
    ] + [
        dataclasses.replace(
            p,
            id=f"w{p.id}",
            attributes={**p.attributes, "gender": "Women", "subCategory": "Topwear"},
        )
        for p in _catalog(12)
    ]
    for kind in CHANGES:
        queries = composed_change(products, kind, seed=1)
        assert queries and composed_change(products, kind, seed=1) == queries
        change = CHANGES[kind]
        for q in queries:
            ref = products[q.reference]
            assert q.reference not in q.relevant and q.value != ref.attributes[change.changes]
            for t in q.relevant:
                target = products[t].attributes
                assert target[change.changes] == q.value
                assert all(target[k] == ref.attributes[k] for k in change.keeps)
    ex = build_examples(products, composed_kinds=("colour", "type", "gender"))
    refs, texts, targets = sample_composed(
        ex.composed, np.arange(len(ex.composed.references)), np.random.default_rng(0)
    )
    kinds = {text.split()[0] for text in (ex.composed.texts[t] for t in texts)}
    assert {"for", "as"} & kinds  # gender and type changes are sampled beside colours


def test_shopper_words_loss_trains_the_text_head():
    """The words loss is part of the objective: with it, the loss has a "words" term."""
    inputs = _inputs(_catalog())
    seen: list[dict] = []
    run_training(_config(epochs=1), inputs, on_epoch=lambda _m, metrics: seen.append(metrics))
    assert seen[0]["words"] > 0
    seen.clear()
    run_training(_config(epochs=1, words_weight=0.0), inputs, on_epoch=lambda _m, m: seen.append(m))
    assert "words" not in seen[0]


def test_schedule_warms_up_then_decays():
    values = [_schedule(s, 100, 10) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert values[10] == pytest.approx(1.0) and values[-1] < 0.01
    assert all(a >= b for a, b in zip(values[10:], values[11:], strict=False))


def test_config_errors_name_the_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  epochs: 0\n  lrr: 1\n")
    with pytest.raises(ValueError, match=r"optim\.epochs.*optim\.lrr|optim\.lrr.*optim\.epochs"):
        TrainConfig.from_file(path)
    with pytest.raises(ValueError, match="cannot read"):
        TrainConfig.from_file(tmp_path / "missing.yaml")


def test_eval_refuses_a_bundle_fit_on_the_catalog_it_would_measure(tmp_path):
    from training.evaluate import seen_in_training as _seen_in_training

    catalog = tmp_path / "products.jsonl"
    catalog.write_text("")
    data = {"path": str(catalog), "products": 900}
    assert "fit_on: all" in _seen_in_training({"fit_on": "all", "data": data}, catalog)
    assert "fit_on: all" in _seen_in_training({"fit_on": "all", "data": data}, tmp_path)
    assert _seen_in_training({"fit_on": "train", "data": data}, catalog) is None
    assert _seen_in_training({"data": data}, catalog) is None  # bundles before refitting
    other = tmp_path / "other.jsonl"
    assert _seen_in_training({"fit_on": "all", "data": data}, other) is None


def test_compare_table_puts_bundles_side_by_side():
    from training.report import compare_table

    a = {"text_to_image_own": {"R@10": 0.5, "P@10": 0.05, "F1@10": 0.09}}
    b = {
        "text_to_image_own": {"R@10": 0.7, "P@10": 0.07, "F1@10": 0.12},
        "shopper_words": {"R@10": 0.6, "P@10": 0.3, "F1@10": 0.4},
    }
    table = compare_table([a, b], names=["old", "new"])
    lines = table.splitlines()
    assert lines[0].startswith("| query set | old R@10 | new R@10 | old P@10")
    assert "| text->image (own image) | 0.500 | **0.700** |" in table
    assert any(line.startswith("| shopper words") and "| - |" in line for line in lines)


def test_refit_is_the_default_for_catalog_training_only():
    catalog = TrainConfig.model_validate({"data": {"kind": "catalog", "path": "x.jsonl"}})
    assert catalog.refits()
    assert not TrainConfig.model_validate({"data": {"kind": "synthetic"}}).refits()
    assert not catalog.model_copy(update={"refit_on_all": False}).refits()
    for name in ("catalog", "myntra", "myntra-floor"):
        cfg = TrainConfig.from_file(
            Path(__file__).resolve().parents[2] / f"training/configs/{name}.yaml"
        )
        assert cfg.refits() == (name != "myntra")


def test_titles_lose_their_brand_before_the_gender_word():
    assert unbranded("Nike Men Town Navy Blue T-Shirts") == "Men Town Navy Blue T-Shirts"
    assert unbranded("Palm Tree Girls Sp Jace White Skirts") == "Girls Sp Jace White Skirts"
    assert unbranded("Men Navy Blue Shirt") == "Men Navy Blue Shirt"  # no brand before it
    assert unbranded("Fastrack Black Watch") == "Fastrack Black Watch"  # no gender word


def test_brand_drop_trains_on_unbranded_titles():
    """With brand_drop, the title loss sees the unbranded titles' features: two runs that differ
    only in those features end with different text heads."""
    products = [
        dataclasses.replace(p, title=f"Brand{i % 5} Men {p.title}")
        for i, p in enumerate(_catalog())
    ]
    assert build_examples(products).unbranded_titles[0].startswith("Men ")
    same, other = _inputs(products), _inputs(products)
    same.unbranded_features = same.title_features.copy()
    noise = np.random.default_rng(1).standard_normal(other.title_features.shape)
    other.unbranded_features = noise.astype(np.float32)
    heads = [
        run_training(_config(epochs=1, brand_drop=1.0), inputs).text.head.linear.weight
        for inputs in (same, other)
    ]
    assert not torch.equal(*heads)
    plain = run_training(_config(epochs=1), _inputs(products)).text.head.linear.weight
    assert torch.equal(plain, run_training(_config(epochs=1), same).text.head.linear.weight)


def test_same_type_runs_put_hard_negatives_in_each_batch():
    from training.batches import blocked_permutation, epoch_batches

    keys = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2] * 4)
    rng = np.random.default_rng(0)
    order = blocked_permutation(keys, 4, rng)
    assert sorted(order) == list(range(len(keys)))
    runs = order.reshape(-1, 4)
    assert all(len(set(keys[run])) == 1 for run in runs)  # 16 of each key: whole runs of 4
    assert list(blocked_permutation(keys, 0, np.random.default_rng(0))) == list(
        np.random.default_rng(0).permutation(len(keys))
    )
    products = _catalog()  # articleType: Shirts or Tshirts
    inputs = _inputs(products)
    cfg = _config(same_type_run=8, batch_size=16)
    types = inputs.examples.type_groups
    for batch in epoch_batches(inputs, cfg, epoch=0, rank=0, world=1):
        counts = np.bincount(types[batch["products"]], minlength=2)
        assert all(c % 8 == 0 for c in counts)  # whole runs of 8 of one type


def test_attribute_loss_trains_classifiers_outside_the_bundle():
    from training.loop import build_worker_model
    from training.objective import TrainModule

    products = _catalog()
    ex = build_examples(products)
    assert ex.attribute_classes == [2, 4, 1, 0]  # articleType, baseColour, gender; no usage
    assert (ex.attribute_labels[:, 3] == -1).all()
    seen: list[dict] = []
    model = run_training(
        _config(epochs=2, attribute_weight=1.0),
        _inputs(products),
        on_epoch=lambda _m, metrics: seen.append(metrics),
    )
    assert seen[1]["attributes"] < seen[0]["attributes"]
    assert not any("attribute" in name for name in model.state_dict())
    off = _config(attribute_weight=0.0)
    inputs = _inputs(products)
    assert len(TrainModule(build_worker_model(off, inputs), inputs, off).attribute_heads) == 0


def test_correlation_term_joins_the_ranking_loss():
    seen: list[dict] = []
    run_training(
        _config(epochs=2, correlation_weight=1.0),
        _inputs(_catalog()),
        on_epoch=lambda _m, metrics: seen.append(metrics),
    )
    assert -1.0 <= seen[0]["correlation"] <= 1.0
    assert seen[1]["correlation"] > seen[0]["correlation"]  # the views grow more correlated
