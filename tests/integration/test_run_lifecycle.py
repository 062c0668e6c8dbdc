"""`make run`'s pieces that need no Ray, against the real broker: `vitrine broker` takes Tansu
with it when it is killed, says which process holds a taken port, and `vitrine status`'s
ingestion verdicts (ok, STALLED, DEAD) from a real consumer group and a real worker's metrics.

The whole `make run` (SIGKILLed worker restarted, Ctrl-C leaving nothing) is in
test_quickstart.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from kafka import KafkaConsumer, KafkaProducer

from operations.broker import BrokerError, LocalBroker
from operations.ports import free_port
from operations.process import port_free
from operations.status import check_ingestion, group_members
from services.ingestion.metrics import IngestMetrics
from shared.streaming.events import ensure_topics

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
GROUP = {"max_poll_interval_ms": 3000, "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


def _gone(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _until(condition, timeout_s: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.1)


def test_killed_vitrine_broker_takes_tansu_with_it(tmp_path):
    port = free_port()
    log = tmp_path / "broker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.app", "broker", "--port", str(port)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _until(lambda: "Kafka-protocol broker" in log.read_text(), what=log.read_text())
        [tansu] = psutil.Process(proc.pid).children()
        assert "tansu" in tansu.name() and os.getsid(tansu.pid) != os.getsid(proc.pid)
        proc.send_signal(signal.SIGKILL)  # no handler runs: only the kernel can stop Tansu now
        proc.wait()
        _until(lambda: _gone(tansu), what=f"tansu {tansu.pid} outlived vitrine broker")
        _until(lambda: port_free(port), what=f"port {port} still taken")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_vitrine_broker_on_a_taken_port_names_the_holder():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "cli.app", "broker", "--port", str(port)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert proc.returncode == 2, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(
        f"vitrine broker: port {port} (broker) is in use by pid {os.getpid()}"
    )


def test_a_second_broker_on_the_port_of_a_first_says_which_holds_it():
    """A second Tansu on a taken port exits with status 0 while the first answers in its place:
    refused up front, naming the first."""
    with LocalBroker() as first:
        tansu = psutil.Process(first._process.pid)  # other tests may have left children too
        with pytest.raises(BrokerError, match=rf"port {first.port} \(broker\) is in use by pid "):
            LocalBroker(port=first.port, start_timeout_s=60).start()
        assert tansu.is_running()


@pytest.fixture
def broker():
    with LocalBroker() as b:
        ensure_topics(b.bootstrap_servers, {"catalog": 2, "dlq": 1})
        yield b


def _status(broker, metrics_url: str, *, stall_after_s: float) -> dict:
    checks = check_ingestion(
        broker.bootstrap_servers,
        "workers",
        "catalog",
        "dlq",
        timeout_s=5,
        worker_metrics=metrics_url,
        stall_after_s=stall_after_s,
    )
    return {c.component: c for c in checks}


def test_status_sees_a_live_idle_a_stalled_and_a_dead_worker(broker):
    """A consumer in the group stands for the worker (it joins and never commits); the worker's
    metrics are IngestMetrics served as the worker serves them."""
    bootstrap = broker.bootstrap_servers
    assert group_members(bootstrap, "workers", timeout_s=5) == 0
    metrics = IngestMetrics()
    url = f"http://127.0.0.1:{metrics.serve(0)}/metrics"
    consumer = KafkaConsumer("catalog", bootstrap_servers=bootstrap, group_id="workers", **GROUP)
    try:
        _until(lambda: (consumer.poll(200), consumer.assignment())[1], what="no assignment")
        assert group_members(bootstrap, "workers", timeout_s=5) == 1
        idle = _status(broker, url, stall_after_s=0)["ingestion"]
        assert idle.ok and idle.state == "lag 0", idle  # nothing to do: healthy, however long

        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        for i in range(5):
            producer.send("catalog", key=f"p{i}".encode(), value=b"x")
        producer.close()
        working = _status(broker, url, stall_after_s=3600)["ingestion"]
        assert working.ok and working.state == "lag 5", working
        stalled = _status(broker, url, stall_after_s=0)["ingestion"]
        assert not stalled.ok and stalled.state == "STALLED", stalled
        assert "no commit since the worker started" in stalled.detail

        dead_url = f"http://127.0.0.1:{free_port()}/metrics"
        dead = _status(broker, dead_url, stall_after_s=3600)["ingestion"]
        assert not dead.ok and dead.state == "DEAD" and dead_url in dead.detail, dead
    finally:
        consumer.close()
    _until(lambda: group_members(bootstrap, "workers", timeout_s=5) == 0, what="member left")
    gone = _status(broker, "", stall_after_s=3600)["ingestion"]
    assert not gone.ok and gone.state == "DEAD" and "no member in group workers" in gone.detail
