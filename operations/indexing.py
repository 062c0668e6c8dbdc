"""`vitrine index`: a products.jsonl catalog embedded and written to the running platform."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tqdm.auto import tqdm


def index_catalog(
    products_path: Path, *, batch_size: int = 32, thumbnail_px: int = 128, progress: bool = True
) -> int:
    """Embeds a products.jsonl catalog with the running image encoder and writes it to the
    running vector store (through Serve handles), with the payload the ingestion worker writes.
    Returns the number of products indexed."""
    return asyncio.run(
        _index(products_path, batch_size=batch_size, thumbnail_px=thumbnail_px, progress=progress)
    )


async def _index(products_path: Path, *, batch_size: int, thumbnail_px: int, progress: bool) -> int:
    # Handles are awaited inside an event loop: with RAY_SERVE_THROUGHPUT_OPTIMIZED their router
    # runs on the caller's loop, and blocking `.result()` is not available.
    from ray import serve

    from shared.data.catalog import load_products
    from shared.models.transforms import thumbnail_data_uri
    from shared.serving.endpoints import release_handles
    from shared.vectorstore import Point, product_payload

    encoder = serve.get_deployment_handle("ImageEncoder", "image-encoder")
    store = serve.get_deployment_handle("VectorStore", "vector-store")
    products = load_products(products_path)
    try:
        for start in tqdm(
            range(0, len(products), batch_size), desc="indexing", unit="batch", disable=not progress
        ):
            chunk = products[start : start + batch_size]
            images = [p.image.read_bytes() for p in chunk]
            embeddings = await encoder.embed.remote(images)
            points = [
                Point(
                    p.id,
                    v,
                    product_payload(
                        p.title,
                        p.attributes,
                        image_uri=p.image.resolve().as_uri(),
                        thumbnail=thumbnail_data_uri(data, px=thumbnail_px) if thumbnail_px else "",
                    ),
                )
                for p, data, v in zip(chunk, images, embeddings.vectors, strict=True)
            ]
            await store.upsert.remote(points)
    finally:
        await release_handles()
    return len(products)
