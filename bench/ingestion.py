"""Streaming ingestion: sustained throughput of the whole pipeline (broker -> worker -> image
encoder -> vector store -> commit) against the image encoder's own throughput, and
publish-to-searchable latency.

Runs the image-encoder and vector-store applications of deploy/serve/vitrine.yaml on a local Ray
(2 CPUs) with the packaged image backbone (EfficientNet-Lite0 224 px, untrained heads: weights do
not change cost), the local Tansu broker, and one ingestion worker process as `vitrine ingest`
runs it, calling the Serve gRPC proxy like `make run` does. Images are the Myntra photos of the
team data folder when present, else random JPEGs of the same size.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm.auto import tqdm

from bench.harness import Row, Section, p50, p99, start_ray
from bench.serving import _bundle, _jpeg
from operations.broker import LocalBroker
from operations.local_ray import stop_local_ray
from operations.ports import free_port
from services.ingestion.config import IngestionSettings
from shared.serving.apps import IMAGE_ENCODER, VECTOR_STORE
from shared.serving.clients import ImageEncoderClient, VectorStoreClient, shared_loop
from shared.streaming.events import publish
from shared.types import CatalogEvent, Op

IMAGES = int(os.environ.get("VITRINE_BENCH_INGEST_IMAGES", 1536))
LATENCY_EVENTS = int(os.environ.get("VITRINE_BENCH_INGEST_LATENCY_EVENTS", 100))
ENCODE_BATCH = 32
DATA = Path(
    os.environ.get("VITRINE_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")
)
ROOT = Path(__file__).resolve().parents[1]


def _images(n: int) -> list[bytes]:
    photos = sorted((DATA / "myntra" / "unlabeled").glob("*.jpg"))
    if len(photos) >= n:
        return [p.read_bytes() for p in photos[:n]]
    return [_jpeg(i) for i in range(n)]


def _clients(proxy: str) -> tuple[ImageEncoderClient, VectorStoreClient]:
    """The clients the worker uses, at Serve's gRPC proxy, with this process's internal token."""
    from operations.serve import internal_token

    token = internal_token()
    return (
        ImageEncoderClient(targets=[proxy], internal_token=token),
        VectorStoreClient(targets=[proxy], internal_token=token),
    )


def _encoder_throughput(
    encoder: ImageEncoderClient, images: list[bytes], *, concurrency: int
) -> float:
    """Images/s the encoder sustains fed directly: requests of ENCODE_BATCH over gRPC."""
    chunks = [images[i : i + ENCODE_BATCH] for i in range(0, len(images), ENCODE_BATCH)]
    run = shared_loop().run

    def call(chunk: list[bytes]) -> None:
        run(encoder.embed_many(chunk, timeout_s=300))

    call(chunks[0])  # warm-up
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(call, chunks))
    return len(images) / (time.perf_counter() - t0)


def _events(images: list[bytes], prefix: str):
    now = dt.datetime.now(dt.UTC)
    for i, image in enumerate(images):
        yield CatalogEvent(
            f"{prefix}{i}", Op.UPSERT, image_bytes=image, title=f"item {i}", event_time=now
        )


class _Worker:
    """`python -m services.ingestion.app` as `vitrine ingest` runs it, read through its metrics."""

    def __init__(self, broker: LocalBroker, proxy: str, log_path: Path, **settings) -> None:
        self.port = free_port()
        env = dict(
            os.environ,
            VITRINE_INGESTION_KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
            VITRINE_INGESTION_IMAGE_ENCODER_ADDRESS=proxy,
            VITRINE_INGESTION_VECTOR_STORE_ADDRESS=proxy,
            VITRINE_INGESTION_METRICS_PORT=str(self.port),
            VITRINE_INGESTION_ENCODE_BATCH=str(ENCODE_BATCH),
        )
        names = IngestionSettings.env_names()
        env.update({names[k]: str(v) for k, v in settings.items()})
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.ingestion.app"],
            cwd=ROOT,
            env=env,
            stdout=open(log_path, "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )

    def metrics(self) -> dict[str, float]:
        from prometheus_client.parser import text_string_to_metric_families

        url = f"http://127.0.0.1:{self.port}/metrics"
        try:
            text = urllib.request.urlopen(url).read().decode()  # noqa: S310
        except OSError:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the worker exited: {self.log_path.read_text()[-2000:]}"
                ) from None
            return {}
        return {
            s.name + "".join(f"/{v}" for v in s.labels.values()): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def wait(self, predicate, timeout_s: float = 1800) -> dict[str, float]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            m = self.metrics()
            if m and predicate(m):
                return m
            time.sleep(0.05)
        raise RuntimeError(f"timed out: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


UPSERTED = "vitrine_ingest_records_total/upserted"
LAST_COMMIT = "vitrine_ingest_last_commit_timestamp_seconds"


def _backlog_throughput(broker: LocalBroker, proxy: str, images: list[bytes], root: Path) -> float:
    """Images/s a fresh worker sustains draining a published backlog, between its first and its
    last commit (its own commit timestamps): publishing and start-up are not counted."""
    publish(
        _events(images, "t"),
        bootstrap_servers=broker.bootstrap_servers,
        topic="backlog",
        total=len(images),
        progress=False,
    )
    worker = _Worker(
        broker, proxy, root / "backlog.log", catalog_topic="backlog", consumer_group="backlog"
    )
    try:
        first = worker.wait(lambda m: m.get(UPSERTED, 0) > 0)
        last = worker.wait(lambda m: m[UPSERTED] >= len(images), timeout_s=3600)
    finally:
        worker.stop()
    return (last[UPSERTED] - first[UPSERTED]) / (last[LAST_COMMIT] - first[LAST_COMMIT])


def _latencies(broker: LocalBroker, store: VectorStoreClient, images: list[bytes]) -> list[float]:
    """Milliseconds from publishing one event (broker ack) to its point being retrievable."""
    from kafka import KafkaProducer

    from shared.streaming.events import encode

    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    run = shared_loop().run
    out = []
    for i, event in enumerate(tqdm(list(_events(images, "lat")), desc="latency", unit="event")):
        record = encode(event)
        t0 = time.perf_counter()
        producer.send(
            "vitrine.catalog.v1",
            key=record.key,
            value=record.value,
            headers=list(record.headers),
        ).get(timeout=30)
        while not run(store.retrieve([f"lat{i}"], timeout_s=30)):
            time.sleep(0.002)
        out.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.05)  # events arrive one by one, not as a backlog
    producer.close()
    return out


def run() -> Section:

    section = Section(
        title="Streaming ingestion (Kafka -> worker -> encoder -> store)",
        command=".venv/bin/python -m bench ingestion",
        description=__doc__.split("\n\n")[0].replace("\n", " ")
        + f" {IMAGES} images for throughput, {LATENCY_EVENTS} single events for latency.",
    )
    images = _images(IMAGES)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bundle = _bundle(root)
        start_ray()
        try:
            proxy = _deploy(root, bundle)
            encoder, store = _clients(proxy)
            with LocalBroker() as broker:
                section.rows.append(_throughput_row(broker, proxy, encoder, images, root))
                section.rows.append(_latency_row(broker, proxy, (encoder, store), images, root))
        finally:
            stop_local_ray()
    return section


def _deploy(root: Path, bundle: Path) -> str:
    """The image-encoder and vector-store applications of deploy/serve/vitrine.yaml, deployed;
    the address of Serve's gRPC proxy."""
    from operations.indexing import proxy_address
    from operations.serve import deploy, load_config

    config = load_config(
        common_args={"bundle_path": str(bundle)},
        http_port=free_port(),
        proxy_grpc_port=free_port(),
        gateway_grpc_port=free_port(),
    )
    config["applications"] = [
        app for app in config["applications"] if app["name"] in {IMAGE_ENCODER, VECTOR_STORE}
    ]
    for app in config["applications"]:
        if app["name"] == VECTOR_STORE:
            app["args"]["store_location"] = f"edge:{root / 'store'}"
    deploy(config, timeout_s=600)
    return proxy_address()


def _throughput_row(
    broker: LocalBroker, proxy: str, encoder: ImageEncoderClient, images: list[bytes], root: Path
) -> Row:
    # Warm the path (first calls load lazily), then measure.
    _encoder_throughput(encoder, images[: 2 * ENCODE_BATCH], concurrency=2)
    direct = max(
        _encoder_throughput(encoder, images, concurrency=1),
        _encoder_throughput(encoder, images, concurrency=2),
    )
    pipeline = _backlog_throughput(broker, proxy, images, root)
    return Row(
        "sustained ingestion throughput",
        "image encoder fed directly (gRPC, 32 images a request, best of 1 or 2 callers)",
        direct,
        pipeline,
        "images/s",
        f"one worker draining a backlog of {IMAGES} events (batches of 256, two encoder calls "
        "in flight, store writes and indexing included), first to last commit; goal >= 0.9x",
    )


def _latency_row(broker: LocalBroker, proxy: str, clients, images: list[bytes], root: Path) -> Row:
    encoder, store = clients
    worker = _Worker(broker, proxy, root / "worker.log")
    try:
        worker.wait(lambda m: m.get("vitrine_ingest_assigned_partitions", 0) > 0)
        lat = _latencies(broker, store, images[:LATENCY_EVENTS])
        single = _single_image_ms(encoder, images[0])
    finally:
        worker.stop()
    return Row(
        "publish-to-searchable latency p50",
        "one image's encoding (a 1-image request)",
        single,
        p50(lat),
        "ms",
        f"p99 {p99(lat):.0f} ms; from the broker's ack to the point being retrievable, events "
        "one at a time",
    )


def _single_image_ms(encoder: ImageEncoderClient, image: bytes) -> float:
    run = shared_loop().run
    times = []
    for _ in range(23):
        t0 = time.perf_counter()
        run(encoder.embed_many([image], timeout_s=60))
        times.append((time.perf_counter() - t0) * 1000)
    return p50(times[3:])


if __name__ == "__main__":
    print(run().to_markdown())
