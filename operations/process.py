"""Process lifecycle helpers: dying with the parent, and naming what holds a port.

A process started in a session of its own (the local broker's Tansu) is out of reach of a Ctrl-C
or a kill of its parent's process group: when its parent died without stopping it, it stayed
on its port, re-parented to PID 1, and the next `make run` failed there (issue 17). Linux's
parent-death signal (prctl(2) PR_SET_PDEATHSIG) ends it with its parent whatever killed the
parent, and is kept across execve(2).
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    return ctypes.CDLL(None, use_errno=True).prctl


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Asks the kernel to send `sig` to this process when its parent dies.

    Returns:
        False where the platform has no such signal (not Linux); the caller then lives on.

    Raises:
        ProcessLookupError: the parent had already died (this process was re-parented).
    """
    prctl = _prctl()
    if prctl is None:
        return False
    parent = os.getppid()
    if prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # it died before the call: no signal will come
        raise ProcessLookupError("the parent process is gone")
    return True


def parent_death_preexec(sig: int = signal.SIGKILL) -> Callable[[], object] | None:
    """A `preexec_fn` for subprocess.Popen: the child gets `sig` when the calling *thread* ends
    (prctl(2): the signal follows the thread that forked). None where unsupported.

    libc is resolved here, before the fork, so the child only makes the one system call.
    """
    prctl = _prctl()
    if prctl is None:
        return None
    return lambda: prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


@dataclass(frozen=True)
class Listener:
    """A process listening on a TCP port; pid None when it belongs to another user."""

    pid: int | None
    command: str


def port_free(port: int) -> bool:
    """Whether a server could bind `port` on every interface now (as Ray, Serve and Tansu do)."""
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((address, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return False
            # Anything else (no IPv6 here, a privileged port) is not another server's doing.
    return True


def listeners(port: int, connections: Iterable | None = None, command_of=None) -> list[Listener]:
    """The processes listening on `port`.

    Args:
        port: a TCP port.
        connections: psutil-style connections (laddr, status, pid); default: the machine's.
        command_of: pid -> command line; default: from psutil.
    """
    import psutil

    if connections is None:
        try:
            connections = psutil.net_connections(kind="tcp")
        except psutil.AccessDenied:  # macOS without root: the port is known busy, not by whom
            connections = []
    found: dict[int | None, Listener] = {}
    for c in connections:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port:
            found.setdefault(c.pid, Listener(c.pid, (command_of or _command)(c.pid)))
    return list(found.values())


def _command(pid: int | None) -> str:
    import psutil

    if pid is None:
        return "a process of another user"
    try:
        process = psutil.Process(pid)
        return " ".join(process.cmdline()) or process.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "?"


def port_in_use(port: int, name: str = "", *, listening: list[Listener] | None = None) -> str:
    """One line naming `port` and what holds it, or "" when it is free.

    Args:
        port: the TCP port.
        name: what the caller wanted it for ("broker").
        listening: the listeners (default: looked up when the port is not free).
    """
    if listening is None:
        if port_free(port):
            return ""
        listening = listeners(port)
    what = f"port {port}" + (f" ({name})" if name else "")
    if not listening:
        return f"{what} is in use (by a process this user cannot see: `ss -ltnp 'sport = :{port}'`)"
    holders = "; ".join(
        f"pid {x.pid}: {_short(x.command)}" if x.pid else x.command for x in listening
    )
    return f"{what} is in use by {holders}"


def _short(command: str, limit: int = 160) -> str:
    command = " ".join(command.split())  # one line, whatever the command line held
    return command if len(command) <= limit else command[: limit - 3] + "..."
