"""Probe: where one client's text query spends its time, against a running `make run`.

Times, one call at a time: a dense text query through the gateway (and the stage timings the
gateway reports in its answer), the text encoder's `EmbedTexts` with one text at its published
target, and the vector store's `SearchPointsBatch` with one query at its own (unfiltered, then
scoped to a catalog as the gateway scopes every query); p50 and p90 of each. The gap between the
gateway's stage timings and the direct calls is what the gateway adds around each hop; the gap
between its end-to-end time and its own total is what its server adds.
Not part of `python -m bench` (docs/BENCHMARKS.md, "What the load waits for", quotes it):

    .venv/bin/python bench/hops_probe.py [CALLS]
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from operations.serve import connect_ray  # noqa: E402


def _timed(fn, calls: int) -> tuple[float, float]:
    for i in range(20):
        fn(i)
    samples = []
    for i in range(calls):
        t = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return samples[len(samples) // 2], samples[int(len(samples) * 0.9)]


def _probes(stages: list[tuple[float, float, float]]) -> list[tuple[str, Callable[[int], None]]]:
    """(name, one call) of each thing timed; the gateway's calls append its stage timings."""
    import grpc

    from bench.load_generator import key_metadata
    from operations.serve import internal_token
    from shared.api.vitrine.search.v1 import search_pb2, search_pb2_grpc
    from shared.api.vitrine.store.v1 import store_pb2_grpc
    from shared.api.vitrine.text_encoder.v1 import text_encoder_pb2_grpc
    from shared.catalogs import scoped
    from shared.conversions import store as store_conv
    from shared.conversions import text_encoder as text_conv
    from shared.serving.apps import TEXT_ENCODER, VECTOR_STORE
    from shared.serving.endpoints import grpc_targets_sync
    from shared.types import Filter
    from shared.vectorstore.query import PointQuery

    token = internal_token()
    port = os.environ.get("VITRINE_GATEWAY_GRPC_PORT", "9000")
    gateway = search_pb2_grpc.SearchServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    metadata = key_metadata(os.environ.get("VITRINE_API_KEY", ""))
    encoder = text_encoder_pb2_grpc.TextEncoderServiceStub(
        grpc.insecure_channel(grpc_targets_sync(TEXT_ENCODER)[0])
    )
    store = store_pb2_grpc.VectorStoreServiceStub(
        grpc.insecure_channel(grpc_targets_sync(VECTOR_STORE)[0])
    )
    vector: list = []

    def query(i: int) -> None:
        request = search_pb2.SearchRequest(
            text=f"blue striped shirt {i}", top_k=10, mode=search_pb2.SEARCH_MODE_DENSE
        )
        t = gateway.Search(request, timeout=30, metadata=metadata).timing
        stages.append((t.encode_ms, t.search_ms, t.total_ms))

    def embed(i: int) -> None:
        request = text_conv.request_to_proto([f"blue striped shirt {i}"])
        reply = encoder.EmbedTexts(request, timeout=30, metadata=token.metadata(TEXT_ENCODER))
        vector[:] = [text_conv.response_from_proto(reply).vectors[0]]

    def search(i: int, flt=None) -> None:
        query = PointQuery(vector[0], top_k=10, filter=flt)
        request = store_conv.search_batch_request_to_proto([query])
        reply = store.SearchPointsBatch(request, timeout=30, metadata=token.metadata(VECTOR_STORE))
        store_conv.search_batch_response_from_proto(reply)

    # The gateway scopes every query to its catalog (shared.catalogs.scoped): for the default
    # catalog a "field missing" condition, for a named one a keyword match.
    default_scope = scoped(Filter((), ()), "")
    named_scope = scoped(Filter((), ()), "probe")
    embed(0)
    return [("gateway, dense text query", query), ("text encoder, 1 text", embed),
            ("vector store, 1 search", search),
            ("  scoped: default catalog", lambda i: search(i, default_scope)),
            ("  scoped: a named catalog", lambda i: search(i, named_scope))]  # fmt: skip


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    connect_ray()
    import numpy as np

    stages: list[tuple[float, float, float]] = []
    for name, fn in _probes(stages):
        stages.clear()
        p50, p90 = _timed(fn, calls)
        line = f"{name:28s} p50 {p50:6.2f} ms  p90 {p90:6.2f} ms"
        if stages:
            encode, searched, total = np.median(np.array(stages), axis=0)
            line += f"  (its own timings: encode {encode:.2f}, search {searched:.2f}, "
            line += f"total {total:.2f} ms)"
        print(line, flush=True)


if __name__ == "__main__":
    main()
