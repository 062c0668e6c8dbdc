"""Flickr30k / COCO Captions sets as catalogs: the loaders on stand-in images, `vitrine data
import-captions`, and the every-caption query set of the evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cli.app import main
from shared.data.captions import CaptionFormatError, captions_of, load_coco, load_flickr
from shared.data.catalog import load_products
from training.evaluate import catalog_metrics

CAPTIONS = {
    "1000092795.jpg": ["Two young guys with shaggy hair look at their hands.", "Two friends."],
    "10002456.jpg": ["Several men in hard hats are operating a giant pulley system."],
    "1000268201.jpg": ["A child in a pink dress is climbing up a set of stairs."],
}


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, name in enumerate(CAPTIONS):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(folder / name)
    return folder


def test_flickr_token_file_and_kaggle_csv(images, tmp_path):
    token = tmp_path / "results_20130124.token"
    token.write_text(
        "".join(f"{name}#{n}\t{c}\n" for name, cs in CAPTIONS.items() for n, c in enumerate(cs))
        + "missing.jpg#0\tAn image that is not in the folder.\n"
    )
    found = load_flickr(token, images)
    assert [p.id for p in found.products] == ["1000092795", "10002456", "1000268201"]
    assert found.missing_images == 1
    first = found.products[0]
    assert first.title == CAPTIONS["1000092795.jpg"][0]
    assert captions_of(first) == CAPTIONS["1000092795.jpg"]
    csv_file = tmp_path / "results.csv"
    csv_file.write_text(
        "image_name| comment_number| comment\n"
        + "".join(f"{name}| {n}| {c}\n" for name, cs in CAPTIONS.items() for n, c in enumerate(cs))
    )
    assert load_flickr(csv_file, images).products == found.products
    bad = tmp_path / "bad.token"
    bad.write_text("no tab here\n")
    with pytest.raises(CaptionFormatError, match="line 1"):
        load_flickr(bad, images)
    (tmp_path / "secret.jpg").write_bytes(b"not in the image folder")
    for name in ("../secret.jpg", str(tmp_path / "secret.jpg")):
        bad.write_text(f"{name}#0\tA caption that names a file outside the folder.\n")
        with pytest.raises(CaptionFormatError, match="outside the image folder"):
            load_flickr(bad, images)


def test_coco_captions_and_the_cli(images, tmp_path, capsys):
    names = list(CAPTIONS)
    coco = {
        "images": [{"id": i, "file_name": n} for i, n in enumerate(names)],
        "annotations": [
            {"image_id": i, "caption": c} for i, n in enumerate(names) for c in CAPTIONS[n]
        ],
    }
    path = tmp_path / "captions_val2014.json"
    path.write_text(json.dumps(coco))
    found = load_coco(path, images)
    assert len(found.products) == 3 and found.missing_images == 0
    out = tmp_path / "catalog" / "products.jsonl"
    assert (
        main(
            [
                "data",
                "import-captions",
                "--format",
                "coco",
                str(path),
                str(images),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "3 images, 4 captions" in capsys.readouterr().out
    assert load_products(out) == found.products
    (tmp_path / "broken.json").write_text("{}")
    broken = ["data", "import-captions", "--format", "coco", str(tmp_path / "broken.json")]
    assert main([*broken, str(images), "--out", str(out)]) == 2
    assert "not a COCO captions file" in capsys.readouterr().err


def test_every_caption_is_a_query_for_its_own_image(images, tmp_path):
    token = tmp_path / "t.token"
    token.write_text(
        "".join(f"{name}#{n}\t{c}\n" for name, cs in CAPTIONS.items() for n, c in enumerate(cs))
    )
    products = load_flickr(token, images).products
    owner = {c: i for i, p in enumerate(products) for c in captions_of(p)}
    gallery = np.eye(3, dtype=np.float32)

    def embed(texts):  # each caption onto its own image's axis
        return np.stack([gallery[owner.get(t, 0)] for t in texts])

    metrics = catalog_metrics(gallery, embed, lambda i, t: i, products, ks=(1, 10))
    assert metrics["queries"]["text_to_image_captions"] == 4
    assert metrics["text_to_image_captions"]["R@1"] == 1.0
