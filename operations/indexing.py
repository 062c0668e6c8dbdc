"""`vitrine index`: a products.jsonl catalog written to the running platform by the ingestion
worker's batch processor, without Kafka."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from tqdm.auto import tqdm


class IndexingError(RuntimeError):
    """Some products were refused; the others were indexed. The message names each and why."""


def proxy_address() -> str:
    """host:port of Serve's gRPC proxy on this machine, at the port in force on the connected
    Ray cluster (not necessarily the port of the last Serve config deployed there)."""
    from shared.serving.endpoints import grpc_proxy_port_sync

    return f"127.0.0.1:{grpc_proxy_port_sync()}"


def index_catalog(
    products_path: Path,
    *,
    address: str,
    token=None,
    batch_size: int = 32,
    thumbnail_px: int = 128,
    progress: bool = True,
    catalog: str = "",
) -> int:
    """Embeds a products.jsonl catalog with the running image encoder and writes it to the
    running vector store, through the batch processor and clients of the ingestion worker
    (services.ingestion.app.grpc_processor): the validation, the encoder calls and the payloads
    of a catalog published to Kafka with `vitrine publish --uri`.

    Args:
        address: host:port of Serve's gRPC proxy (proxy_address).
        token: the InternalToken the calls carry; None: this process's
            (operations.serve.internal_token()).
        batch_size: images per encoder call.
        thumbnail_px: the size of the thumbnail stored in each payload (0: none).
        catalog: the catalog (tenant) the products go into; "": the default catalog.

    Returns:
        The number of products indexed.

    Raises:
        IndexingError: products were refused (the rest are indexed).
        SettingsError: no internal token, or a bad ingestion setting in the environment.
    """
    from operations.serve import internal_token
    from services.ingestion.app import grpc_processor
    from shared.data.catalog import load_products

    products = load_products(products_path)
    settings = _settings(products, address, encode_batch=batch_size, thumbnail_px=thumbnail_px)
    processor = grpc_processor(settings, token=token or internal_token())
    records = _records(products, catalog)
    indexed, refused = 0, []
    with tqdm(total=len(records), desc="indexing", unit="product", disable=not progress) as bar:
        for start in range(0, len(records), settings.batch_size):
            batch = records[start : start + settings.batch_size]
            result = processor.process(batch)
            indexed += result.upserted
            refused += [(r.key.decode(), reason) for r, reason, _ in result.rejected]
            bar.update(len(batch))
    if refused:
        raise IndexingError(
            f"{len(refused)} products refused ({indexed} indexed): "
            + "; ".join(f"{pid}: {reason}" for pid, reason in refused)
        )
    return indexed


def _settings(products, address: str, **overrides):
    """The worker's settings (those in the environment, and `overrides`) for indexing
    `products` at `address`."""
    from services.ingestion.config import IngestionSettings
    from shared.settings import load_settings

    return load_settings(
        IngestionSettings,
        image_encoder_address=address,
        vector_store_address=address,
        # The images are read where the catalog names them, as file:// URIs (the payload
        # keeps the URI, as `vitrine index` always wrote it).
        fetch_schemes="file",
        fetch_file_roots=os.path.commonpath([str(p.image.resolve().parent) for p in products]),
        **overrides,
    )


def _records(products, catalog: str = "") -> list:
    """Each product as the Kafka record `vitrine publish --uri` writes, unversioned: `vitrine
    index` always overwrites what the store holds, whatever the version there."""
    from shared.streaming.events import encode, product_events

    return [
        encode(dataclasses.replace(event, event_time=None))
        for event in product_events(products, inline_images=False, catalog=catalog)
    ]
