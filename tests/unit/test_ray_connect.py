"""Joining a Ray cluster from the CLI fails at once, naming the address, when nothing answers
there (operations.serve.refuse_dead_cluster): Ray's client would retry a dead GCS for minutes."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from operations.ports import free_port
from operations.serve import (
    LOOPBACK_HEAD_ENV,
    RUN_RAY_TMPDIR,
    cluster_address,
    cluster_files,
    connect_ray,
    refuse_dead_cluster,
)


def test_auto_reads_the_file_of_the_last_ray_start(tmp_path):
    (tmp_path / "ray_current_cluster").write_text("127.0.0.1:6379\n")
    env = {"RAY_TMPDIR": str(tmp_path)}
    assert cluster_address("auto", env) == ("127.0.0.1:6379", str(tmp_path / "ray_current_cluster"))
    assert cluster_address("ray://10.0.0.1:10001", env) == ("10.0.0.1:10001", "RAY_ADDRESS")
    assert cluster_address("local", env)[0] == ""


def test_a_stale_cluster_file_is_refused_instead_of_retried(tmp_path):
    port = free_port()  # nothing listens on it
    (tmp_path / "ray_current_cluster").write_text(f"127.0.0.1:{port}")
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}.*ray_current_cluster"):
        refuse_dead_cluster("auto", {"RAY_TMPDIR": str(tmp_path)})


def test_a_listening_address_passes(tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        refuse_dead_cluster(f"127.0.0.1:{server.getsockname()[1]}", {})
        (tmp_path / "ray_current_cluster").write_text(f"127.0.0.1:{server.getsockname()[1]}")
        refuse_dead_cluster("auto", {"RAY_TMPDIR": str(tmp_path)})


def test_no_address_anywhere_is_refused_instead_of_searched(tmp_path):
    """Ray's own search for a GCS process calls the machine's address, where the loopback head
    of `make run` never answers: `vitrine serve status` in a second shell retried for minutes."""
    with pytest.raises(ConnectionError, match="no Ray cluster found.*ray_current_cluster"):
        refuse_dead_cluster("auto", {"RAY_TMPDIR": str(tmp_path)})
    refuse_dead_cluster("local", {"RAY_TMPDIR": str(tmp_path)})  # a new cluster: nothing to reach


def test_without_ray_tmpdir_the_run_scripts_temp_dir_comes_first():
    files = cluster_files({})
    assert files[0] == Path(RUN_RAY_TMPDIR) / "ray_current_cluster"
    assert files[-1] == Path("/tmp/ray/ray_current_cluster")
    run_sh = (Path(__file__).parents[2] / "scripts" / "run.sh").read_text()
    assert f'RAY_TMPDIR="${{RAY_TMPDIR:-{RUN_RAY_TMPDIR}}}"' in run_sh


def test_joining_a_loopback_head_after_ray_was_imported_is_refused(monkeypatch):
    """Ray reads the loopback setting when it is imported; imported without it, it would call
    the machine's address instead of the head and retry for minutes."""
    import types

    monkeypatch.setitem(sys.modules, "ray", sys.modules.get("ray") or types.ModuleType("ray"))
    monkeypatch.delenv(LOOPBACK_HEAD_ENV, raising=False)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{server.getsockname()[1]}")
        with pytest.raises(RuntimeError, match="before `ray` is imported"):
            connect_ray()
