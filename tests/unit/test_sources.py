"""What `vitrine publish` reads: products.jsonl, FashionIQ folders, image folders, synthetic:N."""

from __future__ import annotations

import json

import pytest

from shared.data.sources import SourceError, describe, load_source
from tests.support.tiny import png_bytes, write_catalog


def test_products_jsonl_file_or_its_folder(tmp_path):
    path = write_catalog(tmp_path / "c", n=3)
    for source in (str(path), str(path.parent)):
        assert describe(source) == "products.jsonl"
        products = load_source(source, cache_dir=tmp_path)
        assert [p.id for p in products] == ["p0", "p1", "p2"]
        assert products[0].attributes["baseColour"]


def test_image_folder_ids_are_relative_paths(tmp_path):
    (tmp_path / "imgs" / "shoes").mkdir(parents=True)
    (tmp_path / "imgs" / "red_running-shoe.png").write_bytes(png_bytes(1))
    (tmp_path / "imgs" / "shoes" / "boot.JPG").write_bytes(png_bytes(2))
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    assert describe(str(tmp_path / "imgs")) == "image folder"
    products = {p.id: p for p in load_source(str(tmp_path / "imgs"), cache_dir=tmp_path)}
    assert set(products) == {"red_running-shoe", "shoes/boot"}
    assert products["red_running-shoe"].title == "red running shoe"
    assert products["shoes/boot"].attributes == {"folder": "shoes"}
    assert products["red_running-shoe"].attributes == {}


def test_fashioniq_folder_every_split_and_category(tmp_path):
    root = tmp_path / "fiq"
    (root / "image_splits").mkdir(parents=True)
    (root / "images").mkdir()
    (root / "image_splits" / "split.dress.train.json").write_text(json.dumps(["d1", "d2"]))
    (root / "image_splits" / "split.shirt.val.json").write_text(json.dumps(["s1", "missing"]))
    for image_id in ("d1", "d2", "s1"):
        (root / "images" / f"{image_id}.png").write_bytes(png_bytes(3))
    assert describe(str(root)) == "fashioniq"
    products = {p.id: p for p in load_source(str(root), cache_dir=tmp_path)}
    assert set(products) == {"d1", "d2", "s1"}  # ids without an image are left out
    assert products["s1"].attributes == {"category": "shirt", "split": "val"}


def test_synthetic_is_generated_once_into_the_cache(tmp_path):
    first = load_source("synthetic:2", cache_dir=tmp_path)
    assert len(first) == 6  # 2 per category, 3 categories
    assert all(p.image.is_file() for p in first)
    assert [p.id for p in load_source("synthetic:2", cache_dir=tmp_path)] == [p.id for p in first]


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("synthetic:many", "expected synthetic:N"),
        ("synthetic:0", "at least 1"),
        ("/no/such/place", "not a products.jsonl"),
    ],
)
def test_bad_sources_are_named(source, words, tmp_path):
    with pytest.raises(SourceError, match=words):
        load_source(source, cache_dir=tmp_path)


def test_an_empty_folder_is_an_error(tmp_path):
    with pytest.raises(SourceError, match="holds no product"):
        load_source(str(tmp_path), cache_dir=tmp_path)
