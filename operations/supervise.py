"""How `make run` (scripts/run.sh) starts its processes so that none outlives it.

    python -m operations.supervise exec -- CMD ...      CMD, ended by SIGTERM when its parent dies
    python -m operations.supervise restart [...] -- CMD CMD, restarted with backoff when it exits
    python -m operations.supervise ports NAME=PORT ...  exit 2, one line per port in use

`exec` sets the parent-death signal (operations/process.py) and replaces itself with CMD, so CMD
keeps its pid and needs no wrapper process. `restart` is a small supervisor for the ingestion
worker: in Kubernetes its Deployment restarts it; under `make run` this does, logging each
restart, and gives up with a message after a series of quick failures instead of looping.
Only the standard library and operations/process.py are imported: `exec` runs before every command.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from operations.process import parent_death_preexec, port_in_use, set_parent_death_signal


@dataclass(frozen=True)
class RestartPolicy:
    """When to restart a process that exited, and when to stop trying.

    Attributes:
        max_quick_failures: give up after this many exits in a row, each within `quick_s` of
            its start (a process that ran longer starts a new series).
        quick_s: an exit sooner than this after the start is a quick failure.
        backoff_s: the wait before the first restart of a series, doubled at each next one.
        max_backoff_s: the longest wait.
        stop_timeout_s: how long a stopping child may take after SIGTERM before SIGKILL (the
            worker finishes its batch first).
    """

    max_quick_failures: int = 5
    quick_s: float = 30.0
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    stop_timeout_s: float = 60.0

    def delay(self, quick_failures: int) -> float:
        """Seconds to wait before the next start, after `quick_failures` in a row (0 or more)."""
        return min(self.max_backoff_s, self.backoff_s * 2 ** max(0, quick_failures - 1))


def describe_exit(code: int) -> str:
    """`status 1`, or `SIGKILL` for a child killed by a signal."""
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"status {code}"


class Supervisor:
    """Runs `argv` until stopped, restarting it when it exits (a context for one child).

    Args:
        argv: the command.
        name: what it is, in messages ("ingestion worker").
        policy: restarts and backoff.
        log_path: the child's stdout and stderr, appended; the supervisor's lines go there too.
        say: where the supervisor's lines go besides the log (default: stderr).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str,
        policy: RestartPolicy = RestartPolicy(),
        log_path: Path | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.argv, self.name, self.policy, self.log_path = list(argv), name, policy, log_path
        self._say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self._child: subprocess.Popen | None = None
        self._stop_at: float | None = None  # monotonic time a stop was asked for
        self.starts = 0

    def stop(self, *_: object) -> None:
        """Stops the child and the loop (a signal handler: SIGTERM and SIGINT)."""
        if self._stop_at is None:
            self._stop_at = time.monotonic()
        if self._child is not None and self._child.poll() is None:
            self._child.send_signal(signal.SIGTERM)

    def run(self) -> int:
        """Returns 0 once stopped, 1 after giving up."""
        quick = 0
        while self._stop_at is None:
            started = time.monotonic()
            child = self._run_child()
            code = child.returncode
            if self._stop_at is not None:
                return 0
            ran = time.monotonic() - started
            quick = quick + 1 if ran < self.policy.quick_s else 0
            if quick >= self.policy.max_quick_failures:
                self._give_up(code)
                return 1
            delay = self.policy.delay(quick)
            self._note(
                f"{self.name} (pid {child.pid}) exited with {describe_exit(code)} after "
                f"{ran:.1f} s; restart {self.starts} in {delay:.3g} s"
            )
            self._sleep(delay)
        return 0

    def _run_child(self) -> subprocess.Popen:
        """Starts the child and returns it once it has exited (killed if it outlives a stop by
        stop_timeout_s)."""
        with self._log() as out:
            child = self._child = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT if out is not None else None,
                # The child ends with this supervisor, whatever ends it.
                preexec_fn=parent_death_preexec(signal.SIGTERM),
            )
        self.starts += 1
        if self._stop_at is not None:  # a stop that came while it was starting
            child.send_signal(signal.SIGTERM)
        while True:
            try:
                child.wait(timeout=0.5)
                return child
            except subprocess.TimeoutExpired:
                stop_at = self._stop_at
                if stop_at is not None and time.monotonic() - stop_at > self.policy.stop_timeout_s:
                    self._note(f"{self.name} ignored SIGTERM; killing it")
                    child.kill()

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self._stop_at is None and time.monotonic() < deadline:
            time.sleep(min(0.2, deadline - time.monotonic()))

    def _log(self):
        # No log file: the child writes to the supervisor's own stdout and stderr.
        return open(self.log_path, "ab") if self.log_path else contextlib.nullcontext()

    def _note(self, line: str) -> None:
        self._say(line)
        if self.log_path is not None:
            with open(self.log_path, "a") as log:
                log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} supervisor: {line}\n")

    def _give_up(self, code: int) -> None:
        p = self.policy
        self._note(
            f"{self.name} failed {p.max_quick_failures} times in a row, each within "
            f"{p.quick_s:.0f} s of starting (last: {describe_exit(code)}); not restarting it"
            + (f"; its log: {self.log_path}" if self.log_path else "")
        )
        if self.log_path is not None:
            tail = self.log_path.read_text(errors="replace").splitlines()[-15:]
            self._say("\n".join(f"    {line}" for line in tail))


def exec_dying_with_parent(argv: Sequence[str]) -> None:
    """Replaces this process with `argv`, which gets SIGTERM when this process's parent dies."""
    try:
        set_parent_death_signal(signal.SIGTERM)
    except ProcessLookupError:
        raise SystemExit(f"not starting {argv[0]}: its parent is gone") from None
    os.execvp(argv[0], list(argv))


def check_ports(named: Sequence[str]) -> list[str]:
    """One line per port in use, for NAME=PORT arguments (port 0, or empty: not bound)."""
    lines = []
    for item in named:
        name, _, port = item.rpartition("=")
        if port.strip() and int(port) and (line := port_in_use(int(port), name)):
            lines.append(line)
    return lines


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m operations.supervise", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "exec", help="run CMD in place of this process; SIGTERM when its parent dies"
    )
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p = sub.add_parser("restart", help="run CMD, restart it with backoff when it exits")
    p.add_argument("--name", default="process", help="what it is, in messages")
    p.add_argument("--log", type=Path, help="append the child's output (and restarts) here")
    p.add_argument("--max-quick-failures", type=int, default=RestartPolicy.max_quick_failures)
    p.add_argument("--quick-s", type=float, default=RestartPolicy.quick_s)
    p.add_argument("--backoff-s", type=float, default=RestartPolicy.backoff_s)
    p.add_argument("--max-backoff-s", type=float, default=RestartPolicy.max_backoff_s)
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p = sub.add_parser("ports", help="exit 2 naming each NAME=PORT in use and what holds it")
    p.add_argument("named", nargs="+", metavar="NAME=PORT")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "ports":
        busy = check_ports(args.named)
        for line in busy:
            print(line, file=sys.stderr)
        return 2 if busy else 0
    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not command:
        raise SystemExit("no command after --")
    if args.command == "exec":
        exec_dying_with_parent(command)
    set_parent_death_signal(signal.SIGTERM)
    supervisor = Supervisor(
        command,
        name=args.name,
        policy=RestartPolicy(
            max_quick_failures=args.max_quick_failures,
            quick_s=args.quick_s,
            backoff_s=args.backoff_s,
            max_backoff_s=args.max_backoff_s,
        ),
        log_path=args.log,
    )
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    return supervisor.run()


if __name__ == "__main__":
    raise SystemExit(main())
