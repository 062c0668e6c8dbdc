"""The training loop, examples and config, without Ray (the smoke test runs them under Ray)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.data.catalog import Product
from training.config import TrainConfig
from training.examples import build_examples, sample_composed
from training.loop import TrainInputs, _schedule, run_training

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


@pytest.mark.parametrize("loss", ["info_nce", "triplet", "cmpm"])
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
        assert ex.composed.texts[t] == f"in {target.attributes['baseColour'].lower()}"
    assert ex.attribute_groups[0] != ex.attribute_groups[1]


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
