"""Evaluation of a model on a catalog (text->image and composed queries) and on FashionIQ data.

Every composed evaluation reports the learned fusion with three baselines measured in the same
run: image-only (the reference's embedding), text-only (the modifier's), and sum fusion.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared.data import fashioniq
from shared.data.captions import captions_of
from shared.data.catalog import Product
from shared.data.queries import (
    ComposedQuery,
    attribute_written,
    composed_change,
    composed_colour_change,
    composed_reworded,
    text_to_image_attribute,
    text_to_image_own,
)
from shared.models.encoders import Fusion, ImageEncoder, TextEncoder
from shared.models.heads import sum_fusion
from shared.models.inference import embed_texts, fuse, image_features, open_image
from shared.models.metrics import DEFAULT_KS, fashioniq_protocol, rank, retrieval_metrics
from shared.models.model import RetrievalModel
from training.features import cached_image_features


@torch.inference_mode()
def image_embeddings(
    model: RetrievalModel,
    products: Sequence[Product],
    *,
    cache_dir: Path | None,
    label: str = "gallery",
) -> np.ndarray:
    """[N, D] image embeddings; backbone features come from the cache when `cache_dir` is given."""
    tower = model.image_tower()
    views = [False, True] if tower.test_time_flip else [False]
    embeddings = []
    for flip in views:
        if cache_dir is not None:
            feats = cached_image_features(
                tower.backbone,
                tower.preprocessor,
                products,
                cache_dir=cache_dir,
                flip=flip,
                label=label,
            )
        else:
            feats = image_features(
                tower.backbone,
                tower.preprocessor,
                lambda i: open_image(products[i].image),
                len(products),
                flip=flip,
                desc=label,
            )
        embeddings.append(tower.head.eval()(torch.from_numpy(feats)))
    if len(embeddings) == 1:
        return embeddings[0].numpy()
    return torch.nn.functional.normalize(torch.stack(embeddings).sum(0), dim=-1).numpy()


def seen_in_training(training: dict, catalog: Path) -> str | None:
    """Why evaluating a bundle on `catalog` would measure products it was fit on, or None: a
    bundle fit on every product of a catalog has no held-out products left in it."""
    trained_on = training.get("data", {}).get("path")
    if training.get("fit_on") != "all" or not trained_on:
        return None
    products = catalog / "products.jsonl" if catalog.is_dir() else catalog
    if Path(trained_on).resolve() != products.resolve():
        return None
    count = training["data"].get("products", "the")
    return (
        f"this bundle was fit on all {count} products it trained on from {products} (manifest "
        "training.fit_on: all), so no split of that catalog is held out from it; its held-out "
        "report is the manifest's metrics.held_out. Train with refit_on_all: false to evaluate "
        "a bundle on this catalog."
    )


TextEmbedder = Callable[[list[str]], np.ndarray]  # texts -> [n, dim]
Fuser = Callable[[np.ndarray, np.ndarray], np.ndarray]  # image, text [n, dim] -> [n, dim]


def _composed_rows(
    embed_text: TextEmbedder,
    fuse_pairs: Fuser,
    images: np.ndarray,
    queries: Sequence[ComposedQuery],
    *,
    ks: Sequence[int],
) -> tuple[dict[str, dict[str, float]], int]:
    if not queries:
        return {}, 0
    refs = np.array([q.reference for q in queries])
    texts = sorted({q.text for q in queries})
    text_emb = dict(zip(texts, embed_text(texts), strict=True))
    mods = np.stack([text_emb[q.text] for q in queries])
    candidates = {
        "fusion": fuse_pairs(images[refs], mods),
        "sum": sum_fusion(torch.from_numpy(images[refs]), torch.from_numpy(mods)).numpy(),
        "image_only": images[refs],
        "text_only": mods,
    }
    relevant = [set(q.relevant) for q in queries]
    k = max(ks)
    rows = {
        name: retrieval_metrics(rank(q, images, k=k, exclude=refs), relevant, ks=ks)
        for name, q in candidates.items()
    }
    return rows, len(queries)


def catalog_metrics(
    images: np.ndarray,
    embed_text: TextEmbedder,
    fuse_pairs: Fuser,
    products: Sequence[Product],
    *,
    max_queries: int = 1500,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, Any]:
    """Text->image (own image; attribute relevance; shopper words in the evaluation phrasings)
    and composed metrics (colour changes in the protocol's "in <colour>" and in phrasings
    training never uses; articleType and gender changes, shared.data.queries.CHANGES) over the
    gallery `products`, whose image embeddings are
    `images` [len(products), dim]."""
    titles = embed_text([p.title for p in products])
    k = max(ks)
    result: dict[str, Any] = {"gallery_size": len(products)}
    counts = {}
    for name, queries in (
        ("text_to_image_own", text_to_image_own(products)),
        ("text_to_image_attribute", text_to_image_attribute(products)),
    ):
        if queries:
            rows = np.array([q.product for q in queries])
            ranked = rank(titles[rows], images, k=k)
            result[name] = retrieval_metrics(ranked, [set(q.relevant) for q in queries], ks=ks)
        counts[name] = len(queries)
    captioned = [(i, c) for i, p in enumerate(products) for c in captions_of(p)]
    if captioned:  # Flickr30k / COCO: every caption is a query for its own image
        ranked = rank(embed_text([c for _, c in captioned]), images, k=k)
        result["text_to_image_captions"] = retrieval_metrics(
            ranked, [{i} for i, _ in captioned], ks=ks
        )
    counts["text_to_image_captions"] = len(captioned)
    words = attribute_written(products)
    if words:
        ranked = rank(embed_text([q.text for q in words]), images, k=k)
        result["shopper_words"] = retrieval_metrics(ranked, [set(q.relevant) for q in words], ks=ks)
    counts["shopper_words"] = len(words)
    composed_queries = composed_colour_change(products, max_queries=max_queries, seed=0)
    for name, asked in (
        ("composed", composed_queries),
        ("composed_reworded", composed_reworded(composed_queries)),
        ("composed_type", composed_change(products, "type", max_queries=max_queries)),
        ("composed_gender", composed_change(products, "gender", max_queries=max_queries)),
    ):
        found, counts[name] = _composed_rows(embed_text, fuse_pairs, images, asked, ks=ks)
        if found:
            result[name] = found
    result["queries"] = counts
    return result


def evaluate_catalog(
    model: RetrievalModel,
    products: Sequence[Product],
    *,
    cache_dir: Path | None = None,
    max_queries: int = 1500,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, Any]:
    """`catalog_metrics` of a torch model; gallery backbone features come from the feature
    cache when `cache_dir` is given."""
    images = image_embeddings(model, products, cache_dir=cache_dir)
    return catalog_metrics(
        images,
        lambda texts: embed_texts(model, texts, desc="titles" if len(texts) > 64 else None),
        lambda image, text: fuse(model, image, text),
        products,
        max_queries=max_queries,
        ks=ks,
    )


def evaluate_catalog_served(
    text: TextEncoder,
    image: ImageEncoder,
    fusion: Fusion,
    products: Sequence[Product],
    *,
    batch_size: int = 32,
    max_queries: int = 1500,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, Any]:
    """`catalog_metrics` through inference runtimes (shared.models.encoders), as a deployment
    computes them: every gallery image decoded and encoded, no feature cache."""
    images = encode_in_batches(
        lambda chunk: image.encode([open_image(p.image) for p in chunk]),
        list(products),
        batch_size=batch_size,
        desc="gallery",
    )
    return catalog_metrics(
        images,
        lambda texts: encode_in_batches(text.encode, texts, batch_size=batch_size),
        fusion.fuse,
        products,
        max_queries=max_queries,
        ks=ks,
    )


def encode_in_batches(encode, items: list, *, batch_size: int, desc: str | None = None):
    """`encode` over `items` in chunks, stacked: [len(items), dim]."""
    from tqdm.auto import tqdm

    chunks = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    return np.concatenate(
        [encode(chunk) for chunk in tqdm(chunks, desc=desc, disable=desc is None, leave=False)]
    )


def evaluate_fashioniq(
    model: RetrievalModel,
    root: Path,
    *,
    split: str = "val",
    ks: Sequence[int] = (10, 50),
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """The FashionIQ protocol: per category, candidate image + both captions -> target image.

    The gallery of a category is its split's image ids with an image file; the query text is
    `FashionIQTriplet.query_text` (captions joined with " and ", as in the CLIP4Cir/BLIP
    baselines). With `cache_dir`, gallery backbone features come from the feature cache.
    """
    per_category: dict[str, dict[str, float]] = {}
    counts = {}
    for cat in fashioniq.CATEGORIES:
        gallery = fashioniq.to_products(root, cat, split, skip_missing=True)
        index = {p.id: i for i, p in enumerate(gallery)}
        triplets, answers = [], []
        for t in fashioniq.load_fashioniq(root, cat, split):
            if t.target is not None and t.target in index and t.candidate in index:
                triplets.append(t)
                answers.append({index[t.target]})
        if not triplets:
            continue
        images = image_embeddings(model, gallery, cache_dir=cache_dir, label=f"{cat} gallery")
        refs = np.array([index[t.candidate] for t in triplets])
        texts = embed_texts(model, [t.query_text for t in triplets])
        queries = fuse(model, images[refs], texts)
        ranked = rank(queries, images, k=max(ks), exclude=refs)
        per_category[cat] = retrieval_metrics(ranked, answers, ks=ks)
        counts[cat] = len(triplets)
    if not per_category:
        return {}
    return {
        "protocol": fashioniq_protocol(per_category),
        "per_category": per_category,
        "queries": counts,
    }
