"""Runs the `vitrine` command line in a child process, as a user would, from the repository."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_vitrine(args: list[str], env: dict[str, str], *, timeout_s: float = 900) -> str:
    """stdout and stderr of `vitrine ARGS`; fails the test, with the output's tail, unless it
    exits 0."""
    proc = subprocess.run(
        [sys.executable, "-m", "cli.app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"vitrine {args[0]} exited {proc.returncode}:\n{output[-6000:]}"
    return output
