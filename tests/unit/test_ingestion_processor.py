"""The ingestion worker's batch logic, without Kafka: validation, poison, last-event-wins."""

from __future__ import annotations

import numpy as np
import pytest

from services.ingestion.fetch_policy import FetchPolicy
from services.ingestion.fetching import Fetcher
from services.ingestion.processor import BatchProcessor, PoisonError
from shared.streaming.events import encode
from shared.types import CatalogEvent, Op
from tests.support.tiny import png_bytes


class Recorder:
    def __init__(self) -> None:
        self.embedded, self.upserted, self.deleted, self.updated = [], [], [], []

    def processor(self, **kw) -> BatchProcessor:
        def embed(images):
            self.embedded.append(len(images))
            return np.ones((len(images), 4), np.float32)

        return BatchProcessor(
            embed=embed,
            upsert=self.upserted.extend,
            delete=lambda ds: self.deleted.extend(d.product_id for d in ds),
            update=self.updated.extend,
            fetcher=Fetcher(kw.get("policy", FetchPolicy(timeout_s=5, attempts=1))),
            encode_batch=kw.get("encode_batch", 32),
            encode_concurrency=kw.get("encode_concurrency", 1),
            thumbnail_px=kw.get("thumbnail_px", 0),
        )


def test_payload_carries_a_small_jpeg_thumbnail_of_the_image():
    import base64
    import io

    from PIL import Image

    rec = Recorder()
    p = rec.processor(thumbnail_px=16)
    big = io.BytesIO()
    Image.new("RGB", (300, 200), (200, 30, 30)).save(big, format="PNG")
    event = CatalogEvent(
        "t", Op.UPSERT, image_bytes=big.getvalue(), title="red", attributes={"k": "v"}
    )
    p.write([p.validate(*_record(event))])
    payload = rec.upserted[0].payload
    assert (payload["title"], payload["k"]) == ("red", "v")
    prefix, _, data = payload["thumbnail"].partition(",")
    assert prefix == "data:image/jpeg;base64"
    thumb = Image.open(io.BytesIO(base64.b64decode(data)))
    assert (thumb.format, thumb.size) == ("JPEG", (16, 11))  # aspect ratio kept
    r, g, b = thumb.convert("RGB").getpixel((8, 5))
    assert r > 150 and g < 80 and b < 80


def _record(event: CatalogEvent, as_json: bool = False):
    r = encode(event, as_json=as_json)
    return r.value, r.headers


def test_out_of_order_events_in_one_batch_the_highest_version_wins():
    import datetime as dt

    rec = Recorder()
    p = rec.processor()
    t = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    newer = CatalogEvent("a", Op.UPSERT, image_bytes=png_bytes(1), title="new", event_time=t)
    older = CatalogEvent(
        "a", Op.UPSERT, image_bytes=png_bytes(2), title="old", event_time=t - dt.timedelta(1)
    )
    deleted_later = CatalogEvent("b", Op.DELETE, event_time=t)
    stale_upsert = CatalogEvent(
        "b", Op.UPSERT, image_bytes=png_bytes(3), event_time=t - dt.timedelta(1)
    )
    p.write([p.validate(*_record(e)) for e in (newer, older, deleted_later, stale_upsert)])
    assert [(pt.product_id, pt.payload["title"]) for pt in rec.upserted] == [("a", "new")]
    assert rec.deleted == ["b"]


def test_last_event_of_a_product_wins_and_batches_are_chunked():
    rec = Recorder()
    p = rec.processor(encode_batch=2)
    events = [
        p.validate(*_record(CatalogEvent("a", Op.UPSERT, image_bytes=png_bytes(1), title="old"))),
        p.validate(*_record(CatalogEvent("b", Op.UPSERT, image_bytes=png_bytes(2)))),
        p.validate(*_record(CatalogEvent("a", Op.UPSERT, image_bytes=png_bytes(3), title="new"))),
        p.validate(*_record(CatalogEvent("c", Op.UPSERT, image_bytes=png_bytes(4)))),
        p.validate(*_record(CatalogEvent("b", Op.DELETE))),
    ]
    result = p.write(events)
    assert (result.upserted, result.deleted) == (2, 1)
    assert [pt.product_id for pt in rec.upserted] == ["a", "c"]
    assert rec.upserted[0].payload["title"] == "new"
    assert rec.deleted == ["b"]
    assert rec.embedded == [2]


def test_image_uri_is_fetched(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(png_bytes(5))
    p = Recorder().processor(policy=FetchPolicy.parse(schemes="file", file_roots=str(tmp_path)))
    event, image = p.validate(*_record(CatalogEvent("u", Op.UPSERT, image_uri=path.as_uri()), True))
    assert image == png_bytes(5)


@pytest.mark.parametrize(
    ("event", "words"),
    [
        (CatalogEvent("", Op.UPSERT, image_bytes=b"x"), "product_id"),
        (CatalogEvent("a", Op.UPSERT), "needs image_bytes or image_uri"),
        (CatalogEvent("a", Op.UPSERT, image_bytes=b"\x89PNG broken"), "image"),
        (CatalogEvent("a", Op.UPSERT, image_uri="ftp://host/x.png"), "scheme 'ftp' is not"),
        (CatalogEvent("a", Op.UPSERT, image_uri="file:///etc/passwd"), "scheme 'file' is not"),
        (
            CatalogEvent("a", Op.UPSERT, image_bytes=png_bytes(1), attributes={"title": "x"}),
            "attribute 'title' is reserved",
        ),
        (
            CatalogEvent("a", Op.UPSERT, image_bytes=png_bytes(1), attributes={"version": "9"}),
            "attribute 'version' is reserved",
        ),
        (CatalogEvent("a", Op.UPSERT, image_bytes=png_bytes(1), title="t" * 1001), "title has"),
        (
            CatalogEvent("a", Op.UPSERT, image_bytes=png_bytes(1), attributes={"k": "v" * 1001}),
            "attribute 'k' has 1001",
        ),
        (
            CatalogEvent(
                "a",
                Op.UPSERT,
                image_bytes=png_bytes(1),
                attributes={f"k{i}": "v" for i in range(65)},
            ),
            "65 attributes",
        ),
        (CatalogEvent("a", Op.DELETE, version=2**63), "version"),
    ],
)
def test_poison_is_named(event, words):
    with pytest.raises(PoisonError, match=words):
        Recorder().processor().validate(*_record(event))


def test_garbage_is_poison():
    with pytest.raises(PoisonError, match="not a catalog event"):
        Recorder().processor().validate(b"\xff\xfe", None)


def test_an_image_the_encoder_refuses_is_rejected_alone():
    """A batch the encoder refuses is retried image by image; only the bad one comes back."""
    embedded, upserted = [], []
    bad = png_bytes(66)

    def embed(images):
        embedded.append(len(images))
        if bad in images:
            raise PoisonError("cannot identify image file")
        return np.ones((len(images), 4), np.float32)

    p = BatchProcessor(
        embed=embed,
        upsert=upserted.extend,
        delete=lambda ids: None,
        encode_batch=3,
    )
    events = [
        p.validate(*_record(CatalogEvent(pid, Op.UPSERT, image_bytes=img)))
        for pid, img in [("a", png_bytes(1)), ("x", bad), ("b", png_bytes(2)), ("c", png_bytes(3))]
    ]
    result = p.write(events, sources=["rec-a", "rec-x", "rec-b", "rec-c"])
    assert sorted(pt.product_id for pt in upserted) == ["a", "b", "c"]
    assert result.upserted == 3
    assert result.rejected == [("rec-x", "image encoder: cannot identify image file", False)]
    # The refused chunk of 3 was split into single images; the next chunk went whole.
    assert embedded == [3, 1, 1, 1, 1]


def test_validation_reads_only_the_header():
    """A truncated body passes local validation (the encoder refuses it, and `write` then
    dead-letters it alone); a wrong header or an oversized image does not."""
    import io

    from PIL import Image

    from shared.models.transforms import ImageDecodeError, decode_image, probe_image

    buf = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buf, "JPEG")  # noise: most of the file is pixel data
    truncated = buf.getvalue()[: len(buf.getvalue()) // 2]
    assert probe_image(truncated) == ("JPEG", 64, 64)
    with pytest.raises(ImageDecodeError):
        decode_image(truncated)
    Recorder().processor().validate(*_record(CatalogEvent("t", Op.UPSERT, image_bytes=truncated)))
    with pytest.raises(ImageDecodeError, match="more than the limit"):
        probe_image(buf.getvalue(), max_pixels=63 * 63)


def test_encoder_calls_stay_under_the_byte_budget():
    rec = Recorder()
    p = rec.processor(encode_batch=32)
    p._encode_max_bytes = 2 * len(png_bytes(0)) + 10  # two images per call
    events = [
        p.validate(*_record(CatalogEvent(f"p{i}", Op.UPSERT, image_bytes=png_bytes(0))))
        for i in range(5)
    ]
    assert p.write(events).upserted == 5
    assert rec.embedded == [2, 2, 1]


def test_concurrent_chunks_are_written_in_order():
    rec = Recorder()
    p = rec.processor(encode_batch=2, encode_concurrency=3)
    events = [
        p.validate(*_record(CatalogEvent(f"p{i}", Op.UPSERT, image_bytes=png_bytes(i))))
        for i in range(9)
    ]
    assert p.write(events).upserted == 9
    assert [pt.product_id for pt in rec.upserted] == [f"p{i}" for i in range(9)]
    assert sorted(rec.embedded) == [1, 2, 2, 2, 2]


@pytest.mark.parametrize("content_type", [b"application/json", b"application/x-protobuf", None])
def test_a_tombstone_deletes_its_key_whatever_its_headers(content_type):
    """A null value on the compacted catalog topic means "delete this product"; with a JSON
    content-type it once killed the worker (AttributeError in event_from_json)."""
    headers = [("content-type", content_type)] if content_type else []
    rec = Recorder()
    p = rec.processor()
    event, image = p.validate(None, headers, key=b"sku-9")
    assert (event.product_id, event.op, image) == ("sku-9", Op.DELETE, None)
    p.write([(event, image)])
    assert rec.deleted == ["sku-9"]


@pytest.mark.parametrize("key", [None, b"", b"   ", b"\xff\xfe"])
def test_a_tombstone_without_a_product_id_is_poison(key):
    with pytest.raises(PoisonError, match="tombstone"):
        Recorder().processor().validate(None, [], key=key)


def test_headers_with_null_values_are_ignored():
    value, headers = _record(CatalogEvent("a", Op.DELETE))
    event, _ = Recorder().processor().validate(value, [("x-null", None), *headers])
    assert event.product_id == "a"
    with pytest.raises(PoisonError, match="content-type header is not bytes"):
        Recorder().processor().validate(value, [("content-type", "text")])


def test_an_unexpected_failure_in_validation_is_a_named_dead_letter(monkeypatch):
    import services.ingestion.processor as worker

    def broken(*args, **kwargs):
        raise KeyError("surprise")

    monkeypatch.setattr(worker, "decode", broken)
    with pytest.raises(PoisonError, match="unexpected KeyError"):
        Recorder().processor().validate(b"x", [])


class _FlakyProducer:
    """A DLQ producer whose first `failures` sends fail: at send time or on the future."""

    def __init__(self, failures: int, *, at_send: bool = False) -> None:
        from kafka.errors import KafkaTimeoutError

        self.failures, self.at_send, self.sent = failures, at_send, []
        self.error = KafkaTimeoutError("no ack")

    def send(self, topic, *, key, value, headers):
        self.sent.append((topic, key, value, headers))
        failing = len(self.sent) <= self.failures
        if failing and self.at_send:
            raise self.error
        error = self.error if failing else None

        class Future:
            def get(self, timeout=None):
                if error is not None:
                    raise error

        return Future()


def _worker_with(producer, *, stopping: bool = False):
    """An IngestionWorker with only what dead-lettering touches (no broker)."""
    import threading
    from types import SimpleNamespace

    from services.ingestion.consumer import IngestionWorker
    from services.ingestion.metrics import IngestMetrics

    worker = IngestionWorker.__new__(IngestionWorker)
    worker._settings = SimpleNamespace(dlq_topic="dlq")
    worker._dlq = producer
    worker.metrics = IngestMetrics()
    worker.stopping = threading.Event()
    if stopping:
        worker.stopping.set()
    worker._unconfirmed = []
    return worker


def _poison_record(offset: int):
    from types import SimpleNamespace

    return SimpleNamespace(
        topic="catalog",
        partition=0,
        offset=offset,
        key=b"k",
        value=b"x",
        headers=[("content-type", b"application/json"), ("null", None)],
    )


@pytest.mark.parametrize("at_send", [False, True])
def test_dead_letters_are_acknowledged_before_the_commit(monkeypatch, at_send):
    """A failed dead-letter send is resent until the broker acknowledges it (issue 17: the
    result was ignored and the record lost once the batch committed)."""
    from services.ingestion.processor import BatchResult

    monkeypatch.setattr("time.sleep", lambda s: None)
    producer = _FlakyProducer(failures=3, at_send=at_send)
    worker = _worker_with(producer)
    result = BatchResult()
    worker._dead_letter(_poison_record(7), "bad", result)
    worker._dead_letter(_poison_record(8), "worse", result)
    worker._confirm_dead_letters()
    assert len(producer.sent) == 5  # two sends, then three resends until both were acked
    assert worker._unconfirmed == [] and result.dead_lettered == 2
    headers = dict(producer.sent[-1][3])
    assert headers["vitrine-dlq-reason"] in (b"bad", b"worse") and "null" not in headers


def test_stopping_with_unacknowledged_dead_letters_commits_nothing(monkeypatch):
    from services.ingestion.consumer import DeadLetterError
    from services.ingestion.processor import BatchResult

    monkeypatch.setattr("time.sleep", lambda s: None)
    worker = _worker_with(_FlakyProducer(failures=100), stopping=True)
    worker._dead_letter(_poison_record(1), "bad", BatchResult())
    with pytest.raises(DeadLetterError, match="unacknowledged"):
        worker._confirm_dead_letters()


def test_an_update_changes_the_payload_without_an_image_or_the_encoder():
    rec = Recorder()
    p = rec.processor()
    upsert = CatalogEvent("a", Op.UPSERT, image_bytes=png_bytes(1), title="red", version=1)
    update = CatalogEvent("a", Op.UPDATE, title="", attributes={"price": "9"}, version=2)
    result = p.write([p.validate(*_record(e)) for e in (upsert, update)])
    assert rec.embedded == [1]  # the upsert's image only
    assert [pt.product_id for pt in rec.upserted] == ["a"]
    (changed,) = rec.updated
    assert (changed.product_id, changed.title, changed.attributes, changed.version) == (
        "a",
        None,
        {"price": "9"},
        2,
    )
    assert (result.upserted, result.updated) == (1, 1)
    alone = rec.processor()
    alone.write([alone.validate(*_record(CatalogEvent("b", Op.UPDATE, title="renamed")))])
    assert rec.embedded == [1] and rec.updated[-1].title == "renamed"


@pytest.mark.parametrize(
    ("event", "words"),
    [
        (CatalogEvent("a", Op.UPDATE, image_bytes=b"x", title="t"), "send an upsert"),
        (CatalogEvent("a", Op.UPDATE), "changes nothing"),
        (CatalogEvent("a", Op.UPDATE, attributes={"thumbnail": "x"}), "reserved"),
    ],
)
def test_bad_updates_are_poison(event, words):
    p = Recorder().processor()
    with pytest.raises(PoisonError, match=words):
        p.validate(*_record(event))
