"""`make run`'s process helpers with no platform: naming what holds a port (real sockets and fake
connection tables), the parent-death launcher, and the restart supervisor's backoff, give-up and
stop (with `sh` children that exit at once)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections import namedtuple
from pathlib import Path

import psutil
import pytest

from operations.process import Listener, listeners, port_free, port_in_use
from operations.supervise import RestartPolicy, Supervisor, check_ports, describe_exit

Addr = namedtuple("Addr", "ip port")
Conn = namedtuple("Conn", "laddr status pid")


def test_a_listening_port_names_this_process():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert not port_free(port)
        line = port_in_use(port, "broker")
    assert line.startswith(f"port {port} (broker) is in use by pid {os.getpid()}: ")
    assert "pytest" in line or "python" in line
    assert "\n" not in line


def test_a_free_port_is_free():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, closed on exit, never listened
    assert port_free(port) and port_in_use(port) == ""
    assert check_ports([f"metrics={port}", "off=0", "unset="]) == []


def test_listeners_from_a_connection_table():
    table = [
        Conn(Addr("127.0.0.1", 9092), psutil.CONN_LISTEN, 41),
        Conn(Addr("::", 9092), psutil.CONN_LISTEN, 41),  # the same process on IPv6
        Conn(Addr("127.0.0.1", 9092), psutil.CONN_ESTABLISHED, 42),  # a client, not a holder
        Conn(Addr("0.0.0.0", 6379), psutil.CONN_LISTEN, 43),
        Conn(Addr("0.0.0.0", 9092), psutil.CONN_LISTEN, None),  # another user's
    ]
    found = listeners(9092, table, command_of=lambda pid: f"cmd-{pid}")
    assert found == [Listener(41, "cmd-41"), Listener(None, "cmd-None")]


def test_port_line_for_a_holder_of_another_user_and_for_an_unknown_one():
    tansu = Listener(7, "/x/tansu broker\n  --listener-url tcp://127.0.0.1:9092 " + "y" * 300)
    line = port_in_use(9092, "broker", listening=[tansu])
    assert line.startswith("port 9092 (broker) is in use by pid 7: /x/tansu broker --listener")
    assert line.endswith("...") and len(line) < 220
    other = port_in_use(9092, listening=[Listener(None, "a process of another user")])
    assert other == "port 9092 is in use by a process of another user"
    assert "ss -ltnp 'sport = :8000'" in port_in_use(8000, listening=[])


def test_restart_backoff_doubles_up_to_its_limit():
    policy = RestartPolicy(backoff_s=1, max_backoff_s=5)
    assert [policy.delay(n) for n in range(6)] == [1, 1, 2, 4, 5, 5]
    assert describe_exit(-9) == "SIGKILL" and describe_exit(3) == "status 3"


def _fast(**kw) -> RestartPolicy:
    return RestartPolicy(backoff_s=0.01, max_backoff_s=0.02, **kw)


def test_supervisor_restarts_then_gives_up_after_quick_failures(tmp_path):
    log, said = tmp_path / "w.log", []
    s = Supervisor(
        ["sh", "-c", "echo started; exit 3"],
        name="worker",
        policy=_fast(max_quick_failures=3),
        log_path=log,
        say=said.append,
    )
    assert s.run() == 1
    assert s.starts == 3
    assert [line.split(" (pid")[0] for line in said[:2]] == ["worker", "worker"]
    assert "exited with status 3" in said[0] and "restart 1 in" in said[0]
    assert "failed 3 times in a row" in said[2] and str(log) in said[2]
    assert "    started" in said[3]  # the log's tail follows the give-up line
    text = log.read_text()
    assert text.count("started\n") == 3 and text.count("supervisor: worker") == 3


def test_a_long_run_starts_a_new_series(tmp_path):
    """quick_s 0: no exit counts as quick, so the supervisor never gives up; a stop ends it."""
    said: list[str] = []
    s = Supervisor(["sh", "-c", "exit 1"], name="w", policy=_fast(quick_s=0), say=said.append)
    stopper = threading.Timer(0.5, s.stop)
    stopper.start()
    assert s.run() == 0
    stopper.join()
    assert s.starts >= 2 and not any("failed" in line for line in said)


def test_stop_terminates_the_child_and_returns(tmp_path):
    pid_file = tmp_path / "pid"
    s = Supervisor(["sh", "-c", f"echo $$ > {pid_file}; exec sleep 30"], name="w", say=print)
    stopper = threading.Thread(target=_stop_when_written, args=(s, pid_file))
    stopper.start()
    assert s.run() == 0
    stopper.join()
    assert s.starts == 1
    assert not psutil.pid_exists(int(pid_file.read_text()))  # reaped by the supervisor


def _gone(process: psutil.Process) -> bool:
    """Exited (a zombie until PID 1 reaps it, which may take a while in a container)."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _stop_when_written(s: Supervisor, path: Path) -> None:
    while not path.exists() or not path.read_text().strip():
        threading.Event().wait(0.02)
    s.stop()


def test_exec_child_gets_sigterm_when_its_parent_dies(tmp_path):
    """A shell starts `supervise exec -- sleep` and is SIGKILLed: the kernel ends the sleep."""
    pid_file = tmp_path / "pid"
    shell = subprocess.Popen(
        [
            "sh",
            "-c",
            f'{sys.executable} -m operations.supervise exec -- sh -c "echo \\$\\$ > {pid_file}; '
            'exec sleep 30" & wait',
        ],
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        while not pid_file.exists() or not pid_file.read_text().strip():
            assert shell.poll() is None
            threading.Event().wait(0.02)
        child = psutil.Process(int(pid_file.read_text()))
        assert child.ppid() == shell.pid
        shell.send_signal(signal.SIGKILL)
        shell.wait()
        deadline = threading.Event()
        for _ in range(500):  # up to 10 s; it ends at once
            if _gone(child):
                break
            deadline.wait(0.02)
        assert _gone(child), child
    finally:
        if shell.poll() is None:
            shell.kill()


@pytest.mark.parametrize("argv", [["exec"], ["exec", "--"], ["restart", "--"]])
def test_supervise_needs_a_command(argv):
    from operations.supervise import main

    with pytest.raises(SystemExit, match="no command"):
        main(argv)
