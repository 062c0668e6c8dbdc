"""Both towers of one CLIP-family checkpoint (CLIP, SigLIP) as a bundle's backbones: zero-shot
with identity heads, fine-tuning with the same losses, a bundle written and read again, and the
ONNX export agreeing with torch; on tiny random checkpoints written by save_pretrained."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from PIL import Image
from transformers import CLIPModel, SiglipModel

from shared.models import encoders
from shared.models.bundle import load_bundle, save_bundle
from shared.models.clip import CLIPImageBackbone, CLIPTextBackbone
from shared.models.encoders_onnx import export_bundle
from shared.models.factory import build_image_backbone, build_text_backbone
from shared.models.model import HeadConfig, RetrievalModel
from tests.support.tiny_clip import PROJECTION_DIM, write_tiny_clip, write_tiny_siglip
from tests.unit.test_training import _catalog
from training.config import TrainConfig
from training.examples import build_examples
from training.loop import TrainInputs, configured_text_backbone, run_training

TEXTS = ["a navy blue shirt for men", "red shoes", "the black one"]
IDENTITY = HeadConfig(embed_dim=PROJECTION_DIM, fusion_hidden_dim=16, identity=True)


WRITERS = {"clip": (write_tiny_clip, CLIPModel), "siglip": (write_tiny_siglip, SiglipModel)}


@pytest.fixture(scope="module", params=sorted(WRITERS))
def clip_path(request, tmp_path_factory):
    write, _ = WRITERS[request.param]
    return write(tmp_path_factory.mktemp(f"tiny-{request.param}"))


def _reference(path):
    """The checkpoint as transformers' own full model loads it."""
    return WRITERS[path.name][1].from_pretrained(path).eval()


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
    """Zero-shot: the towers' embeddings are the checkpoint's own features, normalised (SigLIP's
    texts as its processor feeds them: padded to full length, no mask)."""
    model = _zero_shot(clip_path)
    reference = _reference(clip_path)
    tokens = model.text_tower().backbone.tokenize(TEXTS)
    pixels = model.image_tower().preprocessor.batch(_images(2))
    reference_tokens = {"input_ids": tokens["input_ids"]}
    if clip_path.name == "clip":
        reference_tokens["attention_mask"] = tokens["attention_mask"]
    with torch.no_grad():
        texts = model.text_tower()(tokens["input_ids"], tokens["attention_mask"])
        images = model.image_tower()(pixels)
        expected_texts = reference.get_text_features(**reference_tokens)
        expected_images = reference.get_image_features(pixel_values=pixels)
    expected_texts = getattr(expected_texts, "pooler_output", expected_texts)
    expected_images = getattr(expected_images, "pooler_output", expected_images)
    torch.testing.assert_close(texts, F.normalize(expected_texts, dim=-1), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(images, F.normalize(expected_images, dim=-1), atol=1e-5, rtol=1e-4)
    assert model.image_tower().preprocessor.mean != (0.485, 0.456, 0.406)  # the model's own stats


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
    last_layer = "text_model.encoder.layers.1.mlp.fc1"
    before = _reference(clip_path).get_submodule(last_layer).weight
    losses: list[dict] = []
    model = run_training(cfg, inputs, on_epoch=lambda _m, metrics: losses.append(metrics))
    trained = model.text_tower().backbone.model
    after = trained.get_submodule(last_layer.removeprefix(_text_prefix(trained))).weight
    assert not torch.equal(before, after)
    assert all(np.isfinite(m["loss"]) for m in losses) and "words" in losses[0]


def _text_prefix(model) -> str:
    """CLIP's text tower keeps its layers under text_model; SigLIP's at its root."""
    return "" if hasattr(model, "text_model") else "text_model."


def test_siglip_reads_every_text_at_full_length(tmp_path):
    """SigLIP pools the last position, so a text's embedding must not depend on the batch it
    is in: texts are padded to the model's full length, in torch and in the ONNX export."""
    path = write_tiny_siglip(tmp_path / "ckpt")
    model = _zero_shot(path)
    backbone = model.text_tower().backbone
    assert backbone.family == "siglip" and backbone.padding == "max_length"
    assert backbone.tokenize(["red"])["input_ids"].shape == (1, 16)
    manifest = save_bundle(model, tmp_path / "bundle")
    assert manifest.text["backbone"]["padding"] == "max_length"
    # fp32: int8-dynamic quantization scales activations per call, batch-dependent by design.
    export_bundle(tmp_path / "bundle", sample_images=_images(2), text_quantization="none")
    for runtime in ("torch", "onnxruntime"):
        encoder = encoders.load(tmp_path / "bundle", "text", runtime=runtime)
        alone = encoder.encode(["red"])
        beside_a_longer_text = encoder.encode(["red", "a navy blue striped shirt for men"])[:1]
        np.testing.assert_allclose(alone, beside_a_longer_text, atol=1e-5)


def test_other_checkpoints_are_refused_by_the_clip_kinds(tmp_path):
    from shared.models.text_backbone_hf import packaged_minilm_path

    with pytest.raises(ValueError, match="'bert' checkpoint"):
        build_text_backbone(str(packaged_minilm_path()), kind="clip")


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
