"""Datasets: the catalog format and split, the FashionIQ loader, and the synthetic renderer.

Tests marked `data` read the real files under ../shared/data (or $VITRINE_DATA_DIR) and skip
when that folder is absent; everything else builds its data in tmp_path.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared.data.catalog import (
    CatalogFormatError,
    Product,
    load_products,
    split_products,
    write_products,
)
from shared.data.fashioniq import (
    CATEGORIES,
    SPLITS,
    image_path,
    load_fashioniq,
    load_split_ids,
    to_products,
)
from shared.data.garments import PALETTE
from shared.data.synthetic import SyntheticSummary, generate_fashioniq

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("VITRINE_DATA_DIR", ROOT.parent / "shared" / "data"))
MYNTRA = DATA_DIR / "myntra"
FASHIONIQ = DATA_DIR / "fashioniq"

needs_myntra = pytest.mark.skipif(
    not (MYNTRA / "products.jsonl").is_file(),
    reason=f"real Myntra data not found at {MYNTRA} (set VITRINE_DATA_DIR)",
)
needs_fashioniq = pytest.mark.skipif(
    not (FASHIONIQ / "captions").is_dir(),
    reason=f"real FashionIQ captions not found at {FASHIONIQ} (set VITRINE_DATA_DIR)",
)


def test_the_data_package_imports_no_heavy_runtime():
    heavy = ("ray", "grpc", "kafka", "confluent_kafka", "torch")
    code = (
        "import sys, shared.data, shared.data.synthetic; "
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# Catalog
# ---------------------------------------------------------------------------------------------


def _product(product_id: str, folder: Path, **attributes: str) -> Product:
    return Product(
        id=product_id,
        image=folder / "images" / f"{product_id}.jpg",
        title=f"Product {product_id}",
        attributes=attributes,
    )


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_catalog_round_trip_keeps_every_field_and_writes_relative_images(tmp_path):
    folder = tmp_path / "catalog"
    outside = tmp_path / "elsewhere" / "x.png"
    products = [
        _product("1", folder, gender="Men", articleType="Shirts", baseColour="Navy Blue"),
        _product("2", folder, title_case="Ünïcode ✓"),
        Product(id="3", image=outside, title="Outside", attributes={}),
    ]
    path = folder / "products.jsonl"

    write_products(path, products)

    assert load_products(path) == products
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert records[0] == {
        "id": "1",
        "image": "images/1.jpg",
        "title": "Product 1",
        "gender": "Men",
        "articleType": "Shirts",
        "baseColour": "Navy Blue",
    }
    assert records[2]["image"] == str(outside.resolve())


def test_load_resolves_images_against_the_jsonl_folder_and_normalises_attributes(
    tmp_path, monkeypatch
):
    folder = tmp_path / "catalog"
    folder.mkdir()
    line = {
        "id": 7,
        "image": "img/7.jpg",
        "title": "Seven",
        "year": 2012,
        "price": 9.5,
        "in_stock": True,
        "usage": "",
        "season": None,
    }
    path = _write_lines(folder / "products.jsonl", ["", json.dumps(line), "   "])
    monkeypatch.chdir(tmp_path)  # a relative image must not depend on the working directory

    (product,) = load_products(path)

    assert product.id == "7"
    assert product.image == (folder / "img" / "7.jpg").resolve()
    assert product.image.is_absolute()
    assert product.attributes == {"year": "2012", "price": "9.5", "in_stock": "true"}


@pytest.mark.parametrize(
    ("bad_line", "problem"),
    [
        ('{"id": "2", "image": "b.jpg", "title": ', "invalid JSON"),
        ('["2", "b.jpg", "B"]', "expected a JSON object"),
        ('{"id": "2", "image": "b.jpg"}', "missing required key(s) title"),
        ('{"id": "", "image": "b.jpg", "title": "B"}', "'id' must be a non-empty string"),
        ('{"id": "2", "image": 5, "title": "B"}', "'image' must be a non-empty string"),
        ('{"id": "2", "image": "b.jpg", "title": "B", "tags": ["x"]}', "attribute 'tags'"),
        ('{"id": "1", "image": "b.jpg", "title": "B"}', "duplicate id '1' (first on line 1)"),
    ],
)
def test_a_bad_line_raises_naming_its_number_and_problem(tmp_path, bad_line, problem):
    good = '{"id": "1", "image": "a.jpg", "title": "A"}'
    path = _write_lines(tmp_path / "products.jsonl", [good, "", bad_line])

    with pytest.raises(ValueError, match=r"products\.jsonl:3: ") as info:
        load_products(path)

    assert problem in str(info.value)
    assert isinstance(info.value, CatalogFormatError)
    assert info.value.line == 3


def test_product_rejects_reserved_attribute_keys_and_owns_its_attributes(tmp_path):
    with pytest.raises(ValueError, match="may not use the keys"):
        Product(id="1", image=tmp_path, title="A", attributes={"title": "B"})
    attributes = {"gender": "Men"}
    product = Product(id="1", image=tmp_path, title="A", attributes=attributes)
    attributes["gender"] = "Women"
    assert product.attributes == {"gender": "Men"}
    assert len({product, Product(id="1", image=tmp_path, title="A", attributes={"gender": "Men"})})


def _catalog(n: int, tmp_path: Path, start: int = 0) -> list[Product]:
    return [_product(f"p{i}", tmp_path) for i in range(start, start + n)]


def test_split_is_deterministic_disjoint_and_complete(tmp_path):
    products = _catalog(1000, tmp_path)

    train, test = split_products(products, test_fraction=0.2, seed=1)

    assert (train, test) == split_products(products, test_fraction=0.2, seed=1)
    assert {p.id for p in train}.isdisjoint(p.id for p in test)
    assert len(train) + len(test) == len(products)
    assert 150 <= len(test) <= 250
    train_ids = {p.id for p in train}
    assert [p.id for p in train] == [p.id for p in products if p.id in train_ids]  # input order
    assert split_products(products, test_fraction=0.2, seed=2)[1] != test


def test_split_never_moves_existing_products_when_the_catalog_grows(tmp_path):
    products = _catalog(300, tmp_path)
    grown = _catalog(300, tmp_path, start=300) + products[::-1]

    _, test = split_products(products, test_fraction=0.3, seed=0)
    _, grown_test = split_products(grown, test_fraction=0.3, seed=0)

    old_ids = {p.id for p in products}
    assert {p.id for p in grown_test if p.id in old_ids} == {p.id for p in test}


def test_split_fraction_edges_and_monotonicity(tmp_path):
    products = _catalog(200, tmp_path)
    assert split_products(products, test_fraction=0.0)[1] == []
    assert split_products(products, test_fraction=1.0)[0] == []
    small = {p.id for p in split_products(products, test_fraction=0.1)[1]}
    large = {p.id for p in split_products(products, test_fraction=0.4)[1]}
    assert small < large
    with pytest.raises(ValueError, match="test_fraction"):
        split_products(products, test_fraction=1.5)


@pytest.mark.data
@needs_myntra
def test_real_myntra_catalog_loads_with_attributes_and_images():
    products = load_products(MYNTRA / "products.jsonl")

    assert len(products) == 2438
    assert len({p.id for p in products}) == 2438
    assert all("articleType" in p.attributes and "gender" in p.attributes for p in products)
    # The source has one blank baseColour; blank values are dropped, never kept as "".
    without_colour = [p for p in products if "baseColour" not in p.attributes]
    assert len(without_colour) <= 1
    assert all(value for p in products for value in p.attributes.values())
    assert all(p.image.is_absolute() and p.image.is_file() for p in products)


# ---------------------------------------------------------------------------------------------
# FashionIQ (real captions, stand-in images)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def fashioniq_with_standins(tmp_path) -> tuple[Path, list[str]]:
    """The real captions and splits (linked, not copied) plus tiny PNG/JPEG stand-in images."""
    root = tmp_path / "fashioniq"
    root.mkdir()
    for folder in ("captions", "image_splits"):
        (root / folder).symlink_to(FASHIONIQ / folder, target_is_directory=True)
    (root / "images").mkdir()
    ids = [t.candidate for t in load_fashioniq(FASHIONIQ, "dress", "val")[:3]]
    for image_id, ext in zip(ids, ("png", "jpg", "webp"), strict=True):
        Image.new("RGB", (4, 4), (200, 10, 10)).save(root / "images" / f"{image_id}.{ext}")
    return root, ids


@pytest.mark.data
@needs_fashioniq
@pytest.mark.parametrize("category", CATEGORIES)
def test_real_fashioniq_captions_load_for_every_split(category):
    for split in SPLITS:
        raw = json.loads((FASHIONIQ / "captions" / f"cap.{category}.{split}.json").read_text())
        triplets = load_fashioniq(FASHIONIQ, category, split)

        assert len(triplets) == len(raw) > 1000
        assert all(t.category == category and len(t.captions) == 2 for t in triplets)
        assert all(c == c.strip() for t in triplets for c in t.captions)
        assert triplets[0].candidate == raw[0]["candidate"]
        if split == "test":  # the official test split withholds its targets
            assert all(t.target is None for t in triplets)
        else:
            assert all(isinstance(t.target, str) for t in triplets)


@pytest.mark.data
@needs_fashioniq
def test_real_fashioniq_split_ids_and_triplets_agree():
    triplets = load_fashioniq(FASHIONIQ, "dress", "train")
    ids = load_split_ids(FASHIONIQ, "dress", "train")

    assert len(ids) == 11452 == len(set(ids))
    assert triplets[0].target == "B008BHCT58"
    assert triplets[0].query_text == "is solid black with no sleeves and is black with straps"
    assert {t.target for t in triplets} <= set(ids)


@pytest.mark.data
@needs_fashioniq
def test_image_path_finds_any_extension_and_names_a_missing_id(fashioniq_with_standins):
    root, ids = fashioniq_with_standins

    found = [image_path(root, image_id) for image_id in ids]

    assert [p.suffix for p in found] == [".png", ".jpg", ".webp"]
    assert all(p.is_file() and p.stem == i for p, i in zip(found, ids, strict=True))
    with pytest.raises(FileNotFoundError, match="'B00NOTHERE'"):
        image_path(root, "B00NOTHERE")


@pytest.mark.data
@needs_fashioniq
def test_to_products_uses_split_ids_with_images(fashioniq_with_standins):
    root, ids = fashioniq_with_standins
    val_ids = set(load_split_ids(root, "dress", "val"))

    products = to_products(root, "dress", "val", skip_missing=True)

    assert {p.id for p in products} == set(ids) & val_ids
    assert all(p.attributes == {"category": "dress", "split": "val"} for p in products)
    with pytest.raises(FileNotFoundError):
        to_products(root, "dress", "val")


def test_fashioniq_rejects_unknown_categories_and_malformed_entries(tmp_path):
    with pytest.raises(ValueError, match="unknown FashionIQ category 'skirt'"):
        load_fashioniq(tmp_path, "skirt", "train")
    (tmp_path / "captions").mkdir()
    bad = [{"target": "a", "candidate": "b", "captions": ["x", "y"]}, {"candidate": "c"}]
    (tmp_path / "captions" / "cap.dress.train.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"cap\.dress\.train\.json\[1\]: 'captions'"):
        load_fashioniq(tmp_path, "dress", "train")


# ---------------------------------------------------------------------------------------------
# Synthetic FashionIQ
# ---------------------------------------------------------------------------------------------

N_PER_CATEGORY = 20
SEED = 3


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> SyntheticSummary:
    root = tmp_path_factory.mktemp("synthetic")
    return generate_fashioniq(root, n_per_category=N_PER_CATEGORY, seed=SEED, image_size=64)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_synthetic_same_seed_gives_identical_bytes(synthetic, tmp_path):
    again = generate_fashioniq(
        tmp_path / "a", n_per_category=N_PER_CATEGORY, seed=SEED, image_size=64
    )
    other = generate_fashioniq(
        tmp_path / "b", n_per_category=N_PER_CATEGORY, seed=SEED + 1, image_size=64
    )

    expected = _files(synthetic.root)
    assert len(expected) == 3 * N_PER_CATEGORY + 2 * 3 * len(SPLITS) + 1
    assert _files(again.root) == expected
    assert (other.root / "products.jsonl").read_bytes() != expected["products.jsonl"]


def test_synthetic_layout_loads_through_the_fashioniq_and_catalog_loaders(synthetic):
    products = {p.id: p for p in load_products(synthetic.products_path)}

    assert synthetic.n_images == len(products) == 3 * N_PER_CATEGORY
    assert synthetic.n_triplets > N_PER_CATEGORY
    for category in CATEGORIES:
        assert synthetic.split_sizes[category] == {"train": 14, "val": 3, "test": 3}
        for split in SPLITS:
            ids = load_split_ids(synthetic.root, category, split)
            triplets = load_fashioniq(synthetic.root, category, split)
            assert len(ids) == synthetic.split_sizes[category][split]
            assert len(triplets) == synthetic.triplet_counts[category][split]
            assert all({t.candidate, t.target} <= set(ids) for t in triplets)
            assert all(image_path(synthetic.root, i) == products[i].image for i in ids)
            assert {p.id for p in to_products(synthetic.root, category, split)} == set(ids)
    for product in products.values():
        assert product.image.is_file()
        assert {"articleType", "baseColour", "gender", "pattern", "sleeve"} <= set(
            product.attributes
        )
        assert product.attributes["baseColour"] in product.title


_VISUAL = ("baseColour", "pattern", "sleeve", "length")
_PATTERN_WORDS = {"solid": "solid", "stripes": "stripes", "dots": "polka dots", "checks": "checks"}
_SLEEVE_WORDS = {"none": "sleeveless", "short": "short sleeves", "long": "long sleeves"}


def _mentions(caption: str, attribute: str, value: str) -> bool:
    if attribute == "baseColour":
        return re.search(rf"\b{value.lower()}\b", caption) is not None
    if attribute == "pattern":
        return _PATTERN_WORDS[value] in caption
    if attribute == "sleeve":
        return _SLEEVE_WORDS[value] in caption
    return re.search(rf"\b{value}\b(?! sleeves)", caption) is not None


def _all_triplets(root: Path):
    for category in CATEGORIES:
        for split in SPLITS:
            yield from load_fashioniq(root, category, split)


def test_synthetic_captions_name_the_one_or_two_changed_attributes(synthetic):
    products = {p.id: p for p in load_products(synthetic.products_path)}

    for triplet in _all_triplets(synthetic.root):
        source = products[triplet.candidate].attributes
        target = products[triplet.target].attributes
        changed = [a for a in _VISUAL if source.get(a) != target.get(a)]
        assert 1 <= len(changed) <= 2, triplet
        assert len(triplet.captions) == 2 and all(triplet.captions)
        for attribute in changed:
            assert _mentions(triplet.captions[0], attribute, target[attribute]), triplet


def _garment_colour(path: Path) -> str:
    """The palette colour nearest the median of the picture's central 12% x 12% patch."""
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    side = pixels.shape[0]
    lo, hi = round(side * 0.44), round(side * 0.56)
    median = np.median(pixels[lo:hi, lo:hi].reshape(-1, 3), axis=0)
    return min(PALETTE, key=lambda name: float(np.sum((median - PALETTE[name]) ** 2)))


def test_synthetic_images_show_the_colour_their_attributes_and_captions_claim(synthetic):
    products = {p.id: p for p in load_products(synthetic.products_path)}
    seen = {product_id: _garment_colour(p.image) for product_id, p in products.items()}

    assert seen == {i: p.attributes["baseColour"] for i, p in products.items()}
    colour_changes = [
        t for t in _all_triplets(synthetic.root) if seen[t.candidate] != seen[t.target]
    ]
    assert len(colour_changes) >= 5
    for triplet in colour_changes:
        assert f"is {seen[triplet.target].lower()}" in triplet.captions[0]


def test_synthetic_refuses_to_overwrite_unless_asked_and_validates_arguments(synthetic, tmp_path):
    with pytest.raises(FileExistsError):
        generate_fashioniq(synthetic.root, n_per_category=1)
    root = tmp_path / "small"
    generate_fashioniq(root, n_per_category=5, image_size=32)
    (root / "notes.txt").write_text("kept")
    summary = generate_fashioniq(root, n_per_category=1, image_size=32, overwrite=True)
    assert len(list((root / "images").iterdir())) == summary.n_images == 3
    assert (root / "notes.txt").read_text() == "kept"
    with pytest.raises(ValueError, match="sum to 1"):
        generate_fashioniq(tmp_path / "x", n_per_category=5, splits=(("train", 0.5),))
    with pytest.raises(ValueError, match="n_per_category"):
        generate_fashioniq(tmp_path / "y", n_per_category=0)
    with pytest.raises(ValueError, match="split names"):
        generate_fashioniq(tmp_path / "z", n_per_category=5, splits=(("a.b", 1.0),))
    assert not (tmp_path / "x").exists()  # arguments are checked before anything is written
