"""Serving costs: per-hop overhead of Ray Serve against plain grpcio doing the same work, gateway
end-to-end latency broken down by stage, and image-encoder throughput with dynamic batching.

Runs the real applications of deploy/serve/vitrine.yaml on a local Ray (2 CPUs) with the packaged
backbones (EfficientNet-Lite0 224 px, all-MiniLM-L6-v2) and untrained heads (weights do not change
cost), exported for ONNX Runtime as `vitrine train` exports (the runtime the deployments pick), an
embedded Qdrant Edge store holding 10,000 products.
"""

from __future__ import annotations

import asyncio
import io
import os
import tempfile
import time
from functools import partial
from pathlib import Path

import grpc
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from bench.harness import (
    BENCH_PORT_SLOT,
    Row,
    Section,
    p50,
    p99,
    start_ray,
    time_calls,
)
from bench.plain_server import PlainServer, start_plain_server
from operations.local_ray import internal_metadata, prepare_environment, stop_local_ray
from operations.ports import free_port
from shared.api.vitrine.fusion.v1 import fusion_pb2_grpc
from shared.api.vitrine.image_encoder.v1 import image_encoder_pb2, image_encoder_pb2_grpc
from shared.api.vitrine.search.v1 import search_pb2, search_pb2_grpc
from shared.api.vitrine.store.v1 import store_pb2, store_pb2_grpc
from shared.api.vitrine.text_encoder.v1 import text_encoder_pb2, text_encoder_pb2_grpc
from shared.conversions import fusion as fusion_conv
from shared.models.bundle import save_bundle
from shared.models.encoders_onnx import export_bundle
from shared.models.factory import build_image_backbone, build_text_backbone
from shared.models.model import HeadConfig, RetrievalModel
from shared.serving import apps
from shared.serving.endpoints import release_handles
from shared.types import FusionInput
from shared.vectorstore import Point, open_store
from training.config import ExportConfig

# The serving configuration `make run` uses; Serve reads it when it is first imported.
prepare_environment(os.environ, port_slot=BENCH_PORT_SLOT)

CATALOG = int(os.environ.get("VITRINE_BENCH_CATALOG", 10_000))
CALLS = int(os.environ.get("VITRINE_BENCH_CALLS", 300))
THROUGHPUT_IMAGES, BATCH = 128, 16
QUERY = "navy blue check shirt for men"


def _bundle(root: Path) -> Path:
    image, preprocessor = build_image_backbone("efficientnet_lite", resolution=224)
    model = RetrievalModel.build(
        heads=HeadConfig(embed_dim=256, image_hidden_dim=512, text_hidden_dim=512),
        image_backbone=image,
        preprocessor=preprocessor,
        text_backbone=build_text_backbone(max_length=48),
    )
    save_bundle(model.eval(), root / "bundle")
    # Exported as `vitrine train` exports its bundles: the deployments run what they serve.
    defaults = ExportConfig()
    export_bundle(
        root / "bundle",
        text_quantization=defaults.text_quantization,
        image_quantization=defaults.image_quantization,
    )
    return root / "bundle"


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


async def _fill_catalog() -> None:
    from ray import serve

    store = serve.get_deployment_handle(apps.VECTOR_STORE_DEPLOYMENT, apps.VECTOR_STORE)
    vectors = np.random.default_rng(2).normal(size=(CATALOG, 256)).astype(np.float32)
    for start in tqdm(range(0, CATALOG, 1000), desc="catalog", leave=False):
        end = min(CATALOG, start + 1000)
        await store.upsert.remote(
            [Point(f"p{i}", vectors[i], {"title": f"product {i}"}) for i in range(start, end)]
        )
    await release_handles()


def _hops(section: Section, plain_port: int) -> None:
    """One call at a time to each service: at its Serve gRPC target vs the plain server."""
    from shared.serving.endpoints import grpc_targets_sync

    vec = np.random.default_rng(0).normal(size=(1, 256)).astype(np.float32)
    cases = [
        (
            "text encoder (1 text)",
            text_encoder_pb2_grpc.TextEncoderServiceStub,
            "EmbedTexts",
            text_encoder_pb2.EmbedTextsRequest(texts=[QUERY]),
            apps.TEXT_ENCODER,
        ),
        (
            "fusion (1 pair)",
            fusion_pb2_grpc.FusionServiceStub,
            "Fuse",
            fusion_conv.request_to_proto(FusionInput(vec, vec)),
            apps.FUSION,
        ),
        (
            "vector store (retrieve 1 unknown id: no compute)",
            store_pb2_grpc.VectorStoreServiceStub,
            "RetrievePoints",
            store_pb2.RetrievePointsRequest(product_ids=["no-such-product"]),
            apps.VECTOR_STORE,
        ),
        (
            "image encoder (1 JPEG)",
            image_encoder_pb2_grpc.ImageEncoderServiceStub,
            "EmbedImages",
            image_encoder_pb2.EmbedImagesRequest(images=[_jpeg(0)]),
            apps.IMAGE_ENCODER,
        ),
    ]
    plain_channel = grpc.insecure_channel(f"127.0.0.1:{plain_port}")
    for name, stub_cls, method, request, app in cases:
        direct = getattr(stub_cls(plain_channel), method)
        served = getattr(stub_cls(grpc.insecure_channel(grpc_targets_sync(app)[0])), method)
        md = internal_metadata(app)
        base = p50(time_calls(partial(direct, request, timeout=30), repeat=CALLS, warmup=10))
        via = p50(
            time_calls(partial(served, request, metadata=md, timeout=30), repeat=CALLS, warmup=10)
        )
        section.rows.append(
            Row(
                f"hop p50, {name}",
                "plain grpcio, same code",
                base,
                via,
                "ms",
                f"overhead {via - base:.2f} ms",
            )
        )


def _stage_costs(plain: PlainServer, root: Path) -> dict[str, float]:
    """In-process compute of each stage, no serving: the pipeline's floor."""
    rng = np.random.default_rng(1)
    vec = rng.normal(size=(1, 256)).astype(np.float32)
    store = open_store(
        f"edge:{root / 'plain-store'}", model_version="bench", dim=256, indexed_fields={}
    )
    store.upsert(
        [
            Point(f"p{i}", v)
            for i, v in enumerate(rng.normal(size=(CATALOG, 256)).astype(np.float32))
        ]
    )
    store.optimize()
    costs = {
        "text": p50(time_calls(lambda: plain.text._forward([QUERY]), repeat=CALLS)),
        "fusion": p50(time_calls(lambda: plain.fusion._forward(vec, vec), repeat=CALLS)),
        "search": p50(time_calls(lambda: store.search(vec[0], top_k=10), repeat=CALLS)),
    }
    store.close()
    return costs


def _gateway(section: Section, gateway: str, costs: dict[str, float]) -> None:
    stub = search_pb2_grpc.SearchServiceStub(grpc.insecure_channel(gateway))
    for name, request, floor in [
        (
            "text query",
            search_pb2.SearchRequest(text=QUERY, top_k=10),
            costs["text"] + costs["search"],
        ),
        (
            "composed query (product id + text)",
            search_pb2.SearchRequest(product_id="p1", text="in black", top_k=10),
            costs["text"] + costs["fusion"] + costs["search"],
        ),
    ]:
        totals, stages = [], []
        for _ in range(10):
            stub.Search(request, timeout=30)
        for _ in range(CALLS):
            t0 = time.perf_counter()
            response = stub.Search(request, timeout=30)
            totals.append((time.perf_counter() - t0) * 1000)
            stages.append(
                (response.timing.encode_ms, response.timing.fuse_ms, response.timing.search_ms)
            )
        enc, fus, srch = (p50([s[i] for s in stages]) for i in range(3))
        section.rows.append(
            Row(
                f"gateway p50, {name}",
                "in-process stages (sum)",
                floor,
                p50(totals),
                "ms",
                f"p99 {p99(totals):.1f} ms; gateway-side encode {enc:.1f}, fuse {fus:.1f}, "
                f"search {srch:.1f} ms; overhead {p50(totals) - floor:.1f} ms",
            )
        )


def _throughput(section: Section, plain: PlainServer) -> None:
    from ray import serve

    images = [_jpeg(i) for i in range(THROUGHPUT_IMAGES)]
    decoded = [
        img
        for i in range(0, len(images), BATCH)
        for img in plain.image._decode(images[i : i + BATCH])
    ]

    def in_process() -> None:
        for start in range(0, len(decoded), BATCH):
            plain.image._forward(decoded[start : start + BATCH])

    async def served() -> float:
        """p50 milliseconds for all images, each its own concurrent request."""
        handle = serve.get_deployment_handle(apps.IMAGE_ENCODER_DEPLOYMENT, apps.IMAGE_ENCODER)
        times = []
        for i in range(4):  # the first round warms up
            t0 = time.perf_counter()
            await asyncio.gather(*(handle.embed.remote([img]) for img in images))
            if i:
                times.append((time.perf_counter() - t0) * 1000)
        await release_handles()
        return p50(times)

    base = p50(time_calls(in_process, repeat=3, warmup=1))
    via = asyncio.run(served())
    section.rows.append(
        Row(
            "image encoder throughput, 128 single-image requests",
            f"in-process, batch {BATCH}",
            THROUGHPUT_IMAGES / base * 1000,
            THROUGHPUT_IMAGES / via * 1000,
            "images/s",
            "served: concurrent requests batched by the replica's batcher (max 16); includes "
            "decoding",
        )
    )


def platform_config(bundle: Path, root: Path, gateway_port: int, args: dict | None = None) -> dict:
    """deploy/serve/vitrine.yaml for a benchmark: `bundle`, free ports (the gateway's gRPC API
    on `gateway_port`), the embedded store under `root`, `args` added to every application's."""
    from operations.serve import load_config

    config = load_config(
        common_args={"bundle_path": str(bundle)},
        http_port=free_port(),
        proxy_grpc_port=free_port(),
        gateway_grpc_port=gateway_port,
    )
    for app in config["applications"]:
        app["args"] |= args or {}
        if app["name"] == apps.GATEWAY:
            app["args"]["http_port"] = free_port()
        if app["name"] == apps.VECTOR_STORE:
            app["args"]["store_location"] = f"edge:{root / 'store'}"
    return config


def run() -> Section:
    from operations.serve import deploy

    section = Section(
        title="Serving (Ray Serve, gRPC)",
        command=".venv/bin/python -m bench serving",
        description=__doc__.split("\n\n")[0].replace("\n", " ")
        + (
            f" {CALLS} sequential calls per latency row; 2 CPUs shared by client, proxy and replicas."
        ),
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bundle = _bundle(root)
        start_ray()
        try:
            gateway_port = free_port()
            deploy(platform_config(bundle, root, gateway_port), timeout_s=600)
            asyncio.run(_fill_catalog())
            plain = PlainServer(bundle)
            _hops(section, start_plain_server(bundle))
            costs = _stage_costs(plain, root)
            _gateway(section, f"127.0.0.1:{gateway_port}", costs)
            print(section.to_markdown(), flush=True)
            _throughput(section, plain)
        finally:
            stop_local_ray()
    return section


if __name__ == "__main__":
    print(run().to_markdown())
