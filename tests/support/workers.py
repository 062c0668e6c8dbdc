"""`vitrine ingest` worker processes for tests: started with VITRINE_INGESTION_* settings, read
through their metrics endpoint, stopped or killed like in production."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from operations.ports import free_port
from services.ingestion.config import IngestionSettings
from shared.serving.apps import IMAGE_ENCODER, VECTOR_STORE, VECTOR_STORE_DEPLOYMENT
from shared.serving.endpoints import grpc_targets_sync

REPO = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """`python -m services.ingestion.app` (or a test `module` that wraps it) with the given
    IngestionSettings fields as its environment, its output in a log file."""

    def __init__(
        self,
        log_path: Path,
        *,
        module: str = "services.ingestion.app",
        args: tuple[str, ...] = (),
        **settings,
    ) -> None:
        self.metrics_port = free_port()
        env = dict(os.environ)
        names = IngestionSettings.env_names()
        env.update({names[k]: str(v) for k, v in settings.items()})
        env["VITRINE_INGESTION_METRICS_PORT"] = str(self.metrics_port)
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def metrics(self) -> dict[str, float]:
        """Sample name with labels (`x{a="b"}`) -> value; {} until the server is up."""
        from prometheus_client.parser import text_string_to_metric_families

        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            text = urllib.request.urlopen(url, timeout=2).read().decode()  # noqa: S310
        except OSError:
            return {}
        out = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return out

    def upserted(self) -> float:
        return self.metrics().get('vitrine_ingest_records_total{outcome="upserted"}', 0.0)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout_s)
        finally:
            self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def until(predicate, *, timeout_s: float, what: str, workers=()) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            logs = "\n".join(w.output() for w in workers)
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        for w in workers:
            assert w.proc.poll() is None, f"worker exited early:\n{w.output()}"
        time.sleep(0.2)


def worker_settings(broker, topic: str, group: str, **extra) -> dict:
    return {
        "kafka_bootstrap_servers": broker.bootstrap_servers,
        "catalog_topic": topic,
        "dlq_topic": f"{topic}.dlq",
        "consumer_group": group,
        "catalog_partitions": 4,
        "image_encoder_address": grpc_targets_sync(IMAGE_ENCODER)[0],
        "vector_store_address": grpc_targets_sync(VECTOR_STORE)[0],
        **extra,
    }


def store_count() -> int:
    """Points in the platform's collection."""
    import asyncio

    from ray import serve

    from shared.serving.endpoints import release_handles

    async def count() -> int:
        store = serve.get_deployment_handle(VECTOR_STORE_DEPLOYMENT, VECTOR_STORE)
        n = await store.count.remote()
        await release_handles()
        return n

    return asyncio.run(count())


def present(product_ids: list[str]) -> set[str]:
    """The ids of `product_ids` the store holds (stored_points)."""
    return set(payloads(product_ids))


def stored_points(product_ids: list[str], *, with_vectors: bool = False) -> list:
    """The store's points of `product_ids` (those it holds; vectors when asked), through its
    client at its published targets, 500 at a time."""
    from operations.serve import internal_token
    from shared.serving.clients import VectorStoreClient, shared_loop

    client = VectorStoreClient(
        targets=grpc_targets_sync(VECTOR_STORE), internal_token=internal_token()
    )

    async def read() -> list:
        try:
            found = []
            for start in range(0, len(product_ids), 500):
                found += await client.retrieve(
                    product_ids[start : start + 500], with_vectors=with_vectors, timeout_s=60
                )
            return found
        finally:
            await client.close()

    return shared_loop().run(read())


def payloads(product_ids: list[str]) -> dict[str, dict]:
    """Product id -> stored payload of the `product_ids` the store holds (stored_points)."""
    return {p.product_id: p.payload for p in stored_points(product_ids)}


def dead_letters(bootstrap_servers: str, topic: str, *, idle_s: float = 3.0) -> list:
    """Every record of a dead-letter topic (read until it stays idle for `idle_s`)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=int(idle_s * 1000),
    )
    try:
        return list(consumer)
    finally:
        consumer.close()
