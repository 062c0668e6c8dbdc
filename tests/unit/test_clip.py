"""Both towers of one CLIP checkpoint as a bundle's backbones: zero-shot with identity heads,
fine-tuning with the same losses, a bundle written and read again, and the ONNX export agreeing
with torch; on a tiny random CLIP written by save_pretrained."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from PIL import Image
from transformers import CLIPModel

from shared.models import encoders
from shared.models.bundle import load_bundle, save_bundle
from shared.models.clip import CLIPImageBackbone, CLIPTextBackbone
from shared.models.encoders_onnx import export_bundle
from shared.models.factory import build_image_backbone, build_text_backbone
from shared.models.model import HeadConfig, RetrievalModel
from tests.support.tiny_clip import PROJECTION_DIM, write_tiny_clip
from tests.unit.test_training import _catalog
from training.config import TrainConfig
from training.examples import build_examples
from training.loop import TrainInputs, configured_text_backbone, run_training

TEXTS = ["a navy blue shirt for men", "red shoes", "the black one"]
IDENTITY = HeadConfig(embed_dim=PROJECTION_DIM, fusion_hidden_dim=16, identity=True)


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    return write_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


def _images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)) for _ in range(n)]


def _zero_shot(path) -> RetrievalModel:
    image, preprocessor = build_image_backbone("clip", source=str(path), resolution=32)
    text = build_text_backbone(str(path), kind="clip")
    return RetrievalModel.build(
        heads=IDENTITY, image_backbone=image, preprocessor=preprocessor, text_backbone=text
    ).eval()


def test_identity_heads_search_in_clips_own_space(clip_path):
    """Zero-shot: the towers' embeddings are CLIP's own projected features, normalised."""
    model = _zero_shot(clip_path)
    reference = CLIPModel.from_pretrained(clip_path).eval()
    tokens = model.text_tower().backbone.tokenize(TEXTS)
    pixels = model.image_tower().preprocessor.batch(_images(2))
    with torch.no_grad():
        texts = model.text_tower()(tokens["input_ids"], tokens["attention_mask"])
        images = model.image_tower()(pixels)
        expected_texts = reference.get_text_features(**tokens)
        expected_images = reference.get_image_features(pixel_values=pixels)
    expected_texts = getattr(expected_texts, "pooler_output", expected_texts)
    expected_images = getattr(expected_images, "pooler_output", expected_images)
    torch.testing.assert_close(texts, F.normalize(expected_texts, dim=-1), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(images, F.normalize(expected_images, dim=-1), atol=1e-5, rtol=1e-4)
    assert model.image_tower().preprocessor.mean != (0.485, 0.456, 0.406)  # CLIP's own stats


def test_identity_heads_refuse_features_of_another_size(clip_path):
    image, preprocessor = build_image_backbone("clip", source=str(clip_path))
    with pytest.raises(ValueError, match="identity heads need features"):
        RetrievalModel.build(
            heads=HeadConfig(embed_dim=32, identity=True),
            image_backbone=image,
            preprocessor=preprocessor,
            text_backbone=None,
        )


def test_clip_bundle_round_trips_and_exports_to_onnx(clip_path, tmp_path):
    model = _zero_shot(clip_path)
    manifest = save_bundle(model, tmp_path / "bundle")
    assert manifest.image["backbone"]["kind"] == "clip_vision"
    assert manifest.text["backbone"]["kind"] == "clip_text"
    loaded, _ = load_bundle(tmp_path / "bundle")
    assert isinstance(loaded.text_tower().backbone, CLIPTextBackbone)
    assert isinstance(loaded.image_tower().backbone, CLIPImageBackbone)
    export_bundle(tmp_path / "bundle", sample_images=_images(2))  # checks agreement itself
    images = _images(3)
    for part, inputs in (("text", TEXTS), ("image", images)):
        served = [
            encoders.load(tmp_path / "bundle", part, runtime=r).encode(inputs)
            for r in ("torch", "onnxruntime")
        ]
        np.testing.assert_allclose(served[0], served[1], atol=0.05)
        assert served[0].shape == (len(inputs), PROJECTION_DIM)


def test_clip_towers_fine_tune_with_the_same_losses(clip_path, tmp_path):
    """The last block of each tower trains (raw inputs in the loop) with InfoNCE; both CLIP
    towers come from the one checkpoint named by the image config."""
    products = _catalog(16)
    for i, image in enumerate(_images(len(products))):
        image.save(tmp_path / f"{i}.png")
        products[i] = dataclasses.replace(products[i], image=tmp_path / f"{i}.png")
    cfg = TrainConfig.model_validate(
        {
            "image": {
                "kind": "clip",
                "source": str(clip_path),
                "resolution": 32,
                "train_last_blocks": 1,
            },
            "text": {"kind": "clip", "train_last_blocks": 1},
            "heads": {"embed_dim": 8, "image_hidden_dim": 0, "text_hidden_dim": 0},
            "optim": {"epochs": 2, "batch_size": 8, "lr": 1e-3, "words_weight": 0.5},
            "num_workers": 1,
        }
    )
    assert isinstance(configured_text_backbone(cfg), CLIPTextBackbone)
    inputs = TrainInputs(
        examples=build_examples(products),
        image_features=None,
        title_features=None,
        modifier_features=None,
        image_paths=[str(p.image) for p in products],
        image_feature_dim=PROJECTION_DIM,
        text_feature_dim=PROJECTION_DIM,
    )
    before = CLIPModel.from_pretrained(clip_path).text_model.encoder.layers[-1].mlp.fc1.weight
    losses: list[dict] = []
    model = run_training(cfg, inputs, on_epoch=lambda _m, metrics: losses.append(metrics))
    after = model.text_tower().backbone.model.text_model.encoder.layers[-1].mlp.fc1.weight
    assert not torch.equal(before, after)
    assert all(np.isfinite(m["loss"]) for m in losses) and "words" in losses[0]


def test_identity_heads_train_only_the_fusion_and_temperature():
    """A zero-shot bundle (frozen CLIP towers, identity heads) still learns its composed
    queries: the fusion and the temperature are all that trains."""
    products = _catalog()
    rng = np.random.default_rng(0)
    ex = build_examples(products)

    def feats(n: int) -> np.ndarray:
        return rng.standard_normal((n, PROJECTION_DIM)).astype(np.float32)

    inputs = TrainInputs(
        examples=ex,
        image_features=feats(len(products))[None],
        title_features=feats(len(products)),
        modifier_features=feats(len(ex.composed.texts)),
        image_paths=[str(p.image) for p in products],
        image_feature_dim=PROJECTION_DIM,
        text_feature_dim=PROJECTION_DIM,
        words_features=feats(len(ex.words.texts)),
    )
    cfg = TrainConfig.model_validate(
        {
            "heads": {"embed_dim": PROJECTION_DIM, "fusion_hidden_dim": 8, "identity": True},
            "optim": {"epochs": 1, "batch_size": 16},
        }
    )
    model = run_training(cfg, inputs)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith(("fusion.", "logit_scale")) for n in trained)
