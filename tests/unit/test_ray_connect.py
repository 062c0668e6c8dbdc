"""Joining a Ray cluster from the CLI fails at once, naming the address, when nothing answers
there (operations.serve.refuse_dead_cluster): Ray's client would retry a dead GCS for minutes."""

from __future__ import annotations

import socket

import pytest

from operations.ports import free_port
from operations.serve import cluster_address, refuse_dead_cluster


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


def test_a_listening_address_or_no_file_passes(tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        refuse_dead_cluster(f"127.0.0.1:{server.getsockname()[1]}", {})
    refuse_dead_cluster("auto", {"RAY_TMPDIR": str(tmp_path)})  # no file: Ray says so itself
