"""The vector store replica keeps its gauges set (Ray drops a gauge that is not set again)."""

from __future__ import annotations

import asyncio

import numpy as np

from services.vector_store import deployment
from shared.observability.metrics import local
from shared.vectorstore import Point
from tests.support.tiny import write_tiny_bundle


def test_size_and_up_gauges_follow_the_collection(tmp_path, monkeypatch):
    monkeypatch.setattr(deployment, "make", local)
    monkeypatch.setattr(deployment, "GAUGE_INTERVAL_S", 0.05)
    bundle = write_tiny_bundle(tmp_path)

    async def main():
        store = deployment.VectorStore.func_or_class(
            bundle_path=str(bundle),
            location=f"edge:{tmp_path / 'store'}",
            indexed_fields={},
            api_key=None,
            optimize_interval_s=0.01,
        )
        dim = store._store.info().dim
        vectors = np.random.default_rng(0).random((5, dim), dtype=np.float32)
        await store.upsert([Point(f"p{i}", vectors[i], {"title": "t"}) for i in range(5)])
        for _ in range(200):  # until the gauge loop has read the new size
            if store._gauges["vitrine_store_points"].values.get(()) == 5:
                break
            await asyncio.sleep(0.02)
        assert not store._gauge_task.done()  # the loop runs on (an exception would end it)
        gauges = {name: g.values.get(()) for name, g in store._gauges.items()}
        store.__del__()
        return gauges

    gauges = asyncio.run(main())
    assert gauges["vitrine_store_points"] == 5 and gauges["vitrine_replica_up"] == 1.0
