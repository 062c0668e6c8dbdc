"""Hostile feeds: a hypothesis suite over the whole event path, from the real broker through a
real `vitrine ingest` process into the platform's store.

Every drawn case is one product with one or more records: valid upserts (inline, by URI, through
redirects, from slow hosts, with odd but legal headers), updates out of order, deletes (ops and
tombstones), and every kind of poison: malformed and refused URIs (schemes, hosts, ports,
private addresses, redirects to them), servers that trickle, truncate, fail or are not HTTP,
null and odd headers, huge fields, reserved keys, garbage. The worker's fetch policy allows the
test's loopback servers explicitly (127.0.0.1/32), nothing else.

The properties: the worker never dies or restarts; the group's lag reaches 0; every record ends
indexed, deleted or dead-lettered with its reason (transient failures marked so, after their
bounded attempts); every valid upsert is stored with its title and attributes, and every delete
takes effect. Case counts: $VITRINE_FEED_EVENTS cases of one to three records each (`make chaos`
draws 5,000 cases, more than 5,000 records).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from operations.broker import LocalBroker
from shared.conversions.catalog import event_to_bytes, event_to_json
from shared.streaming.dlq import REASON_HEADER, SOURCE_HEADER, TRANSIENT_HEADER
from shared.streaming.events import CONTENT_TYPE, committed_behind, ensure_topics
from shared.types import CatalogEvent, Op
from shared.vectorstore.base import RESERVED_FIELDS
from tests.support.fuzzing import Tally, images, png_bomb, scale
from tests.support.hostile_http import HostileHttpServer
from tests.support.tiny import png_bytes
from tests.support.workers import (
    WorkerProcess,
    dead_letters,
    payloads,
    until,
    worker_settings,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PB, JS = (CONTENT_TYPE, b"application/x-protobuf"), (CONTENT_TYPE, b"application/json")
ATTEMPTS = 2
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@dataclass
class Case:
    """One product's records and what must become of them.

    expect: "indexed" (with title and attributes), "absent" (deleted, nothing dead-lettered),
    "dead" (every record dead-lettered), "either" (an odd image: indexed, or dead-lettered).
    transient: for "dead", whether the dead letter must be marked transient.
    """

    kind: str
    expect: str
    records: list[tuple[bytes | None, bytes | None, list]] = field(default_factory=list)
    title: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    transient: bool = False


def _upsert(pid: str, *, at: int = 0, **fields) -> CatalogEvent:
    return CatalogEvent(
        product_id=pid, op=Op.UPSERT, event_time=T0 + dt.timedelta(seconds=at), **fields
    )


def _record(event: CatalogEvent, *, as_json: bool = False, headers=()) -> tuple:
    value = event_to_json(event) if as_json else event_to_bytes(event)
    return (event.product_id.encode(), value, [JS if as_json else PB, *headers])


_titles = st.text(max_size=80)
_attributes = st.dictionaries(
    st.from_regex(r"a_[a-z0-9_]{1,12}", fullmatch=True), st.text(max_size=40), max_size=6
)
_odd_headers = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["x-null", "trace", "ÿ-odd"]), st.none()),
        st.tuples(st.text(min_size=1, max_size=12), st.binary(max_size=40)),
    ),
    max_size=3,
).map(lambda hs: [(k, v) for k, v in hs if k.lower() != CONTENT_TYPE])


def _cases(server: HostileHttpServer, pid: str) -> st.SearchStrategy[Case]:
    img = f"{server.url}/img/{abs(hash(pid)) % 1000}.png"
    refused_uris = [
        "ftp://example.com/x.png",
        "gopher://example.com/",
        "file:///etc/passwd",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
        f"http://127.0.0.2:{server.port}/img/1.png",  # loopback, but not the allowed /32
        "http://10.0.0.1/x.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x.png",
        "http://0.0.0.0/x.png",
        "http://192.168.1.1/x.png",
        "http://[fd00:ec2::254]/latest/",
        f"http://user:pw@127.0.0.1:{server.port}/img/1.png",
        "http://h:abc/x",
        "http://[::1/x",
        "http:///x",
        "https://",
        "http://example.com:99999/x",
        "http://example.com/a b.png",
        "http://exa\nmple.com/x",
        "http://" + "a" * 5000 + ".com/x",
        f"{server.url}/redirect?to=http://169.254.169.254/latest/meta-data/",
        f"{server.url}/redirect?to=file:///etc/passwd",
        f"{server.url}/redirect?to=http://127.0.0.2:{server.port}/img/1.png",
        f"{server.url}/loop",
        f"{server.url}/status/404",
        f"{server.url}/status/403",
        f"{server.url}/notimage",
        f"{server.url}/huge",
        f"http://127.0.0.1:{server.other_port}/x.png",  # not HTTP
    ]
    transient_uris = [
        f"{server.url}/status/503",
        f"{server.url}/status/500",
        f"{server.url}/status/429",
        f"{server.url}/trickle",
        f"{server.url}/short",
        f"{server.url}/cut",
        f"http://127.0.0.1:{server.closed_port}/x.png",  # nothing listens
    ]
    good_uris = [
        img,
        img.replace("127.0.0.1", "localhost"),  # a name that resolves into the allowed network
        f"{server.url}/slow/{abs(hash(pid)) % 1000}.png",
        f"{server.url}/redirect?to=/img/5.png",
        f"{server.url}/redirect?to={img}",
    ]

    def indexed(title, attributes, as_json, headers, uri):
        image = {"image_uri": uri} if uri else {"image_bytes": png_bytes(len(title) % 50)}
        event = _upsert(pid, title=title, attributes=attributes, **image)
        kind = "upsert by URI" if uri else "upsert inline"
        return Case(
            kind, "indexed", [_record(event, as_json=as_json, headers=headers)], title, attributes
        )

    def updated(t1, t2, out_of_order):
        newer = _record(_upsert(pid, at=10, title=t2, image_bytes=png_bytes(2)))
        older = _record(_upsert(pid, at=5, title=t1, image_bytes=png_bytes(1)))
        records = [newer, older] if out_of_order else [older, newer]
        return Case("update out of order" if out_of_order else "update", "indexed", records, t2)

    def deleted(how, headers):
        first = _record(_upsert(pid, at=1, title="to delete", image_bytes=png_bytes(4)))
        if how == "tombstone":
            ct = [JS] if headers else []
            delete = (pid.encode(), None, [*ct, *headers])
        else:
            delete = _record(CatalogEvent(pid, Op.DELETE, event_time=T0 + dt.timedelta(seconds=2)))
        stale = _record(_upsert(pid, at=0, title="stale", image_bytes=png_bytes(5)))
        return Case(f"delete ({how}) then a stale upsert", "absent", [first, delete, stale])

    def salted(uri: str, salt: int) -> str:
        # A query that changes no verdict, so that hypothesis draws each shape many times.
        return f"{uri}{'&' if '?' in uri else '?'}s={salt}"

    def refused(uri, salt):
        event = _upsert(pid, image_uri=salted(uri, salt))
        return Case("refused or broken URI", "dead", [_record(event)])

    def transient(uri, salt):
        event = _upsert(pid, image_uri=salted(uri, salt))
        return Case("transient fetch failure", "dead", [_record(event)], transient=True)

    def huge(which, size, reserved):
        fields = {
            "title": {"title": "t" * (1000 + size)},
            "attributes": {"attributes": {f"a_{i}": "v" for i in range(65 + size % 200)}},
            "value": {"attributes": {"a_big": "v" * (1000 + size)}},
            "reserved": {"attributes": {reserved: str(size)}},
            "version": {"version": 2**63 + size},
        }[which]
        event = _upsert(pid, image_bytes=png_bytes(size % 50), **fields)
        return Case(f"huge or reserved field ({which})", "dead", [_record(event)])

    def bomb():
        event = _upsert(pid, image_bytes=png_bomb())
        return Case("decompression bomb", "dead", [_record(event)])

    def garbage(value, content_type):
        return Case("undecodable value", "dead", [(pid.encode(), value, [content_type])])

    def odd_image(image):
        return Case("odd image", "either", [_record(_upsert(pid, image_bytes=image))])

    return st.one_of(
        st.builds(indexed, _titles, _attributes, st.booleans(), _odd_headers, st.just("")),
        st.builds(
            indexed, _titles, _attributes, st.booleans(), _odd_headers, st.sampled_from(good_uris)
        ),
        st.builds(updated, _titles, _titles, st.booleans()),
        st.builds(deleted, st.sampled_from(["op", "tombstone"]), _odd_headers),
        st.builds(refused, st.sampled_from(refused_uris), st.integers(0, 10**9)),
        st.builds(transient, st.sampled_from(transient_uris), st.integers(0, 10**9)),
        st.builds(
            huge,
            st.sampled_from(["title", "attributes", "value", "reserved", "version"]),
            st.integers(1, 3000),
            st.sampled_from(sorted(RESERVED_FIELDS)),
        ),
        st.builds(bomb),
        st.builds(
            garbage,
            st.one_of(st.binary(max_size=200), st.just(b"{broken"), st.just(b"")),
            st.sampled_from([PB, JS, (CONTENT_TYPE, b"text/x"), (CONTENT_TYPE, b"\xff\xfe")]),
        ),
        st.builds(odd_image, images()),
    )


def _produce(bootstrap_servers: str, cases: list[Case]) -> list[tuple[Case, tuple[int, int]]]:
    """Sends every case's records in order; (case, (partition, offset)) of each, acknowledged."""
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap_servers,
            "message.max.bytes": 16 * 2**20,
            "linger.ms": 5,
            "acks": "all",
            "enable.idempotence": False,
        }
    )
    acks: list = []
    errors: list = []

    def delivered(case, slot):
        def callback(err, msg):
            if err is not None:
                errors.append(err)
            else:
                acks[slot] = (case, (msg.partition(), msg.offset()))

        return callback

    for case in cases:
        for key, value, headers in case.records:
            acks.append(None)
            while True:
                try:
                    producer.produce(
                        "feed",
                        key=key,
                        value=value,
                        headers=headers,
                        on_delivery=delivered(case, len(acks) - 1),
                    )
                    break
                except BufferError:  # the local queue is full: let it drain
                    producer.poll(0.1)
            producer.poll(0)
    assert producer.flush(120) == 0, "records still unacknowledged"
    assert not errors, errors[:3]
    assert all(a is not None for a in acks)
    return acks


def test_hostile_feeds_end_indexed_deleted_or_dead_lettered(platform, tmp_path):
    n_cases = scale("feed_events", 300)  # each case is one or more records
    server = HostileHttpServer()
    cases: list[Case] = []

    @settings(
        deadline=None,
        database=None,
        max_examples=n_cases,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def generate(data):
        cases.append(data.draw(_cases(server, f"hf{len(cases)}")))

    generate()
    n_records = sum(len(c.records) for c in cases)
    try:
        with LocalBroker() as broker:
            ensure_topics(broker.bootstrap_servers, {"feed": 4, "feed.dlq": 1})
            # confluent-kafka (librdkafka), a third-party client: unlike kafka-python it sends
            # headers with null values, which feeds do.
            acks = _produce(broker.bootstrap_servers, cases)
            ends: dict[tuple[str, int], int] = {}
            for _, (partition, offset) in acks:
                ends[("feed", partition)] = max(ends.get(("feed", partition), 0), offset + 1)
            worker = WorkerProcess(
                tmp_path / "worker.log",
                **worker_settings(
                    broker,
                    "feed",
                    "feed",
                    batch_size=64,
                    thumbnail_px=0,
                    fetch_allow_networks="127.0.0.1/32",
                    image_fetch_timeout_s=1.5,
                    fetch_attempts=ATTEMPTS,
                ),
            )
            try:
                until(
                    lambda: committed_behind(broker.bootstrap_servers, "feed", ends) == 0,
                    timeout_s=max(600, n_records),
                    what="the worker to commit every record",
                    workers=[worker],
                )
                assert worker.proc.poll() is None, worker.output()  # never died
                metrics = worker.metrics()
            finally:
                code = worker.stop()
            assert code == 0, worker.output()
            log = worker.log_path.read_text(errors="replace")
            letters = {}
            for letter in dead_letters(broker.bootstrap_servers, "feed.dlq"):
                headers = {k: v for k, v in letter.headers if v is not None}
                letters[headers[SOURCE_HEADER].decode()] = (
                    headers[REASON_HEADER].decode(),
                    headers.get(TRANSIENT_HEADER) == b"true",
                )
    finally:
        server.close()

    stored = payloads([f"hf{i}" for i in range(len(cases))])
    sources: dict[int, list[str]] = {}
    for case, (partition, offset) in acks:
        sources.setdefault(id(case), []).append(f"feed/{partition}/{offset}")
    tally = Tally("hostile feeds: catalog records", fuzzed=True)
    for i, case in enumerate(cases):
        pid, mine = f"hf{i}", sources[id(case)]
        dead = [letters[s] for s in mine if s in letters]
        if case.expect == "indexed":
            assert not dead, (case.kind, dead)
            assert pid in stored, f"{pid} ({case.kind}) was not stored"
            assert stored[pid]["title"] == case.title, (case.kind, stored[pid])
            for name, value in case.attributes.items():
                assert stored[pid][name] == value, (case.kind, name)
            outcome = "indexed with its title and attributes"
        elif case.expect == "absent":
            assert not dead, (case.kind, dead)
            assert pid not in stored, f"{pid} ({case.kind}) came back"
            outcome = "deleted; the stale upsert after it skipped"
        elif case.expect == "dead":
            assert len(dead) == len(mine), f"{pid} ({case.kind}): {len(dead)} dead letters"
            assert pid not in stored, f"{pid} ({case.kind}) both stored and dead-lettered"
            for reason, transient in dead:
                assert reason.strip()
                assert transient == case.transient, (case.kind, reason)
                if case.transient:
                    assert f"after {ATTEMPTS} attempts" in reason, reason
            outcome = "dead-lettered, marked transient" if case.transient else "dead-lettered"
        else:
            assert bool(dead) != (pid in stored), f"{pid}: stored {pid in stored}, {dead}"
            outcome = "indexed" if pid in stored else "dead-lettered"
        tally.add(f"{case.kind}: {outcome}")
    # No dead letter belongs to a record that was not expected to die.
    expected_sources = {s for c in cases for s in sources[id(c)]}
    assert set(letters) <= expected_sources
    assert "Traceback" not in log, log[-3000:]
    tally.write(
        records=n_records,
        dead_letters=len(letters),
        worker_restarts=0,
        stale_skipped=int(metrics.get('vitrine_ingest_records_total{outcome="stale"}', 0)),
    )
