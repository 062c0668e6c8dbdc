"""The image fetch policy (services.ingestion.fetching) against real sockets on loopback, and the
processor's concurrent validation: what a feed names cannot reach what it should not, a slow
host holds back nobody else, a transient failure is retried and then marked for replay."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest

from services.ingestion.fetch_policy import FetchPolicy, PoisonError, TransientError
from services.ingestion.fetching import Fetcher
from services.ingestion.processor import BatchProcessor
from shared.streaming.events import encode
from shared.types import CatalogEvent, Op
from tests.support.hostile_http import HostileHttpServer
from tests.support.tiny import png_bytes

LOOPBACK = "127.0.0.1/32"
IMAGE = png_bytes(7)  # what /img/7.png serves


@pytest.fixture
def server():
    server = HostileHttpServer(slow_s=30)  # /slow answers once a test releases it
    yield server
    server.close()


def _loopback_fetcher(**kw) -> Fetcher:
    kw.setdefault("backoff_s", 0.01)
    return Fetcher(FetchPolicy.parse(allow_networks=LOOPBACK, **kw))


def test_a_loopback_url_is_refused_by_default(server):
    with pytest.raises(PoisonError, match="loopback, private"):
        Fetcher(FetchPolicy()).fetch(f"{server.url}/img/7.png")
    assert server.hits == []  # refused before any connection
    assert _loopback_fetcher().fetch(f"{server.url}/img/7.png") == IMAGE  # allowed explicitly


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.0.0.2",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.100.100.200",  # shared address space (a cloud's metadata too)
        "0.0.0.0",
        "::1",
        "::ffff:127.0.0.1",
        "fd00:ec2::254",
        "fe80::1",
        "224.0.0.1",
        "not an address",
    ],
)
def test_non_public_addresses_are_refused(address):
    assert not FetchPolicy().address_allowed(address)


def test_public_addresses_and_allowed_networks_pass():
    assert FetchPolicy().address_allowed("93.184.216.34")
    assert FetchPolicy().address_allowed("2606:2800:220:1:248:1893:25c8:1946")
    assert FetchPolicy.parse(allow_networks="10.0.0.0/8").address_allowed("10.1.2.3")


def test_the_host_is_checked_on_its_resolved_address_and_connected_to_it(server):
    """A name that resolves to loopback is refused; an allowed one is connected to at the
    checked address (one resolution per hop: a second answer cannot swap it), with the name in
    the Host header."""
    answers = iter([["127.0.0.1"], ["10.9.9.9"], ["10.9.9.9"]])
    calls = []

    def rebinding(host, port):
        calls.append(host)
        return next(answers)

    port = server.port
    policy = FetchPolicy.parse(allow_networks=LOOPBACK, resolve=rebinding)
    assert Fetcher(policy).fetch(f"http://images.test:{port}/img/7.png") == IMAGE
    assert calls == ["images.test"]
    assert server.hits == [("/img/7.png", f"images.test:{port}")]
    evil = FetchPolicy.parse(resolve=lambda h, p: ["127.0.0.1"])
    with pytest.raises(PoisonError, match="resolves to 127.0.0.1"):
        Fetcher(evil).fetch(f"http://evil.test:{port}/img/7.png")


def test_a_redirect_is_checked_again(server):
    fetcher = _loopback_fetcher()
    assert fetcher.fetch(f"{server.url}/redirect?to=/img/7.png") == IMAGE
    with pytest.raises(PoisonError, match="169.254.169.254"):
        fetcher.fetch(f"{server.url}/redirect?to=http://169.254.169.254/latest/meta-data/")
    with pytest.raises(PoisonError, match="scheme 'file' is not allowed"):
        fetcher.fetch(f"{server.url}/redirect?to=file:///etc/passwd")
    with pytest.raises(PoisonError, match="redirects"):
        fetcher.fetch(f"{server.url}/redirect?to=/loop")


def test_file_uris_only_inside_the_roots(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "a.png").write_bytes(IMAGE)
    (outside / "b.png").write_bytes(IMAGE)
    (root / "link.png").symlink_to(outside / "b.png")
    fetcher = Fetcher(FetchPolicy.parse(schemes="file", file_roots=str(root)))
    assert fetcher.fetch((root / "a.png").as_uri()) == IMAGE
    for path in [outside / "b.png", root / "link.png", root / ".." / "outside" / "b.png"]:
        with pytest.raises(PoisonError, match="outside the allowed roots"):
            fetcher.fetch("file://" + str(path))
    with pytest.raises(PoisonError, match="scheme 'file' is not allowed"):
        Fetcher(FetchPolicy()).fetch((root / "a.png").as_uri())
    with pytest.raises(ValueError, match="needs at least one root"):
        FetchPolicy.parse(schemes="file")


def test_hosts_and_prefixes_restrict_where_images_come_from(server):
    port = server.port
    pinned = {"resolve": lambda h, p: ["127.0.0.1"]}
    allowed = _loopback_fetcher(hosts=f"*.cdn.test, http://other.test:{port}/ok/", **pinned)
    assert allowed.fetch(f"http://img.cdn.test:{port}/img/7.png") == IMAGE
    with pytest.raises(PoisonError, match="not allowed"):
        allowed.fetch(f"http://cdn.evil.test:{port}/img/7.png")
    with pytest.raises(PoisonError, match="not allowed"):
        allowed.fetch(f"http://other.test:{port}/img/7.png")


@pytest.mark.parametrize(
    "uri",
    [
        "http://h:abc/x",  # InvalidURL: crashed the worker once
        "http://[::1/x",
        "http:///x",
        "https://",
        "file://",
        "http://user:pw@example.com/x.png",
        "http://example.com/a b.png",
        "http://example.com:0/x",
        "gopher://example.com/",
        "//example.com/x",
        "x" * 5000,
        "",
    ],
)
def test_malformed_uris_are_poison(uri):
    with pytest.raises(PoisonError):
        Fetcher(FetchPolicy()).fetch(uri)


def test_a_trickling_server_is_cut_off_at_the_deadline(server):
    with pytest.raises(TransientError, match="deadline|timed out"):
        _loopback_fetcher(timeout_s=0.5, attempts=1).fetch(f"{server.url}/trickle")


def test_transient_failures_are_retried_then_marked(server):
    fetcher = _loopback_fetcher(attempts=3)
    for status in (500, 503, 429):
        server.hits.clear()
        with pytest.raises(TransientError, match=f"HTTP {status}.*after 3 attempts"):
            fetcher.fetch(f"{server.url}/status/{status}")
        assert len(server.hits) == 3
    server.hits.clear()
    with pytest.raises(PoisonError) as refused:
        fetcher.fetch(f"{server.url}/status/404")
    assert not isinstance(refused.value, TransientError)
    assert len(server.hits) == 1  # a 404 is final
    with pytest.raises(TransientError, match="truncated"):
        fetcher.fetch(f"{server.url}/short")
    with pytest.raises(TransientError, match="ConnectionRefused"):
        fetcher.fetch(f"http://127.0.0.1:{server.closed_port}/x")


def test_a_truncated_chunked_response_and_a_non_http_service_do_not_crash(server):
    with pytest.raises(TransientError, match="truncated"):
        _loopback_fetcher(attempts=1).fetch(f"{server.url}/cut")
    with pytest.raises(PoisonError, match="BadStatusLine|RemoteDisconnected"):
        _loopback_fetcher(attempts=1).fetch(f"http://127.0.0.1:{server.other_port}/img")


# The processor: concurrent validation, writes as records become ready.


def _rec(event: CatalogEvent, offset: int):
    r = encode(event)
    return SimpleNamespace(
        key=r.key, value=r.value, headers=list(r.headers), timestamp=1_700_000_000_000 + offset
    )


def _processor(fetcher: Fetcher, upsert):
    return BatchProcessor(
        embed=lambda images: np.ones((len(images), 4), np.float32),
        upsert=upsert,
        delete=lambda ds: None,
        fetcher=fetcher,
        fetch_concurrency=8,
    )


def test_a_slow_host_does_not_stall_the_rest_of_its_batch(server):
    """The fast records are written while the slow fetch is still held by the server; the slow
    one is written after it is released. Asserts the order, not a duration."""
    writes = []

    def upsert(points):
        writes.append(([p.product_id for p in points], server.release.is_set()))
        server.release.set()  # only now may the slow server answer

    records = [_rec(CatalogEvent("slow", Op.UPSERT, image_uri=f"{server.url}/slow/7.png"), 0)] + [
        _rec(CatalogEvent(f"fast-{i}", Op.UPSERT, image_bytes=png_bytes(i)), i + 1)
        for i in range(5)
    ]
    result = _processor(_loopback_fetcher(), upsert).process(records)
    assert result.upserted == 6 and not result.rejected
    assert writes[0] == ([f"fast-{i}" for i in range(5)], False)
    assert writes[-1] == (["slow"], True)


def test_events_of_one_key_wait_for_each_other_and_the_last_wins(server):
    """A slow first event of a product is not written after the product's later event."""
    writes = []

    def upsert(points):
        writes.extend((p.product_id, p.payload["title"]) for p in points)
        server.release.set()

    records = [
        _rec(CatalogEvent("p", Op.UPSERT, image_uri=f"{server.url}/slow/7.png", title="v1"), 0),
        _rec(CatalogEvent("q", Op.UPSERT, image_bytes=png_bytes(2), title="q"), 1),
        _rec(CatalogEvent("p", Op.UPSERT, image_bytes=png_bytes(3), title="v2"), 2),
    ]
    threading.Timer(0.3, server.release.set).start()  # in case nothing is written before it
    _processor(_loopback_fetcher(), upsert).process(records)
    assert writes == [("q", "q"), ("p", "v2")]


def test_poison_and_transient_failures_come_back_marked(server):
    records = [
        _rec(CatalogEvent("ok", Op.UPSERT, image_bytes=png_bytes(1)), 0),
        _rec(CatalogEvent("gone", Op.UPSERT, image_uri=f"{server.url}/status/404"), 1),
        _rec(CatalogEvent("busy", Op.UPSERT, image_uri=f"{server.url}/status/503"), 2),
        _rec(CatalogEvent("local", Op.UPSERT, image_uri="http://127.0.0.1:1/x"), 3),
    ]
    fetcher = Fetcher(FetchPolicy(backoff_s=0.01))  # loopback not allowed here
    loopback = _loopback_fetcher(attempts=2)
    for f, expected in [
        (loopback, {"gone": False, "busy": True}),
        (fetcher, {"gone": False, "busy": False, "local": False}),
    ]:
        result = _processor(f, lambda points: None).process(records)
        marked = {r.key.decode(): transient for r, _, transient in result.rejected}
        assert {k: marked[k] for k in expected} == expected
    assert result.upserted == 1


def test_versions_come_from_the_event_or_the_record():
    import datetime as dt

    p = _processor(Fetcher(FetchPolicy()), lambda points: None)
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    explicit = CatalogEvent("a", Op.DELETE, version=7, event_time=at)
    timed = CatalogEvent("a", Op.DELETE, event_time=at)
    bare = CatalogEvent("a", Op.DELETE)
    r = encode(explicit)
    assert p.validate(r.value, r.headers, timestamp_ms=5)[0].version == 7
    r = encode(timed)
    assert p.validate(r.value, r.headers, timestamp_ms=5)[0].version == int(at.timestamp()) * 10**6
    r = encode(bare)
    assert p.validate(r.value, r.headers, timestamp_ms=5)[0].version == 5999
    assert p.validate(r.value, r.headers)[0].version == 0
    assert p.validate(None, [], key=b"a", timestamp_ms=5)[0].version == 5999


def test_policy_parse_refuses_bad_settings():
    with pytest.raises(ValueError, match="unknown fetch schemes"):
        FetchPolicy.parse(schemes="http,ftp")
    with pytest.raises(ValueError, match="ALLOW_NETWORKS"):
        FetchPolicy.parse(allow_networks="10.0.0.0/33")
