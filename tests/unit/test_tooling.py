"""The build tooling: the proto drift check and the self-documenting Makefile."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _copy_tree(dst: Path) -> None:
    for name in ("protos", "scripts"):
        shutil.copytree(ROOT / name, dst / name)
    shutil.copytree(
        ROOT / "shared" / "api",
        dst / "shared" / "api",
        ignore=shutil.ignore_patterns("__pycache__"),
    )


def _check(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(tree / "scripts" / "check_protos.sh")],
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


def test_committed_generated_code_matches_the_protos(tmp_path):
    _copy_tree(tmp_path)
    proc = _check(tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_editing_a_proto_without_regenerating_fails_the_check(tmp_path):
    _copy_tree(tmp_path)
    proto = tmp_path / "protos" / "vitrine" / "search" / "v1" / "search.proto"
    proto.write_text(
        proto.read_text().replace("Timing timing = 3;", "Timing timing = 3;\n  string cursor = 99;")
    )
    proc = _check(tmp_path)
    assert proc.returncode != 0
    assert "out of date" in proc.stderr and "make protos" in proc.stderr


def test_make_help_lists_every_target_with_a_description():
    makefile = (ROOT / "Makefile").read_text()
    phony = set(re.search(r"^\.PHONY:(.*)$", makefile, re.M).group(1).split())
    documented = set(re.findall(r"^([a-zA-Z0-9_-]+):.*## ", makefile, re.M))
    assert phony == documented
    out = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "help"], capture_output=True, text=True, check=True
    ).stdout
    for target in phony:
        assert re.search(rf"^\s*(\x1b\[36m)?{target}\b", out, re.M), target


def test_ci_runs_make_test():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
