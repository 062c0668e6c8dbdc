"""What a cluster of several Ray nodes on one machine needs: each application on its node role,
and replica ports that are never shared (the integration suite runs on such a cluster:
tests/integration/test_nodes.py)."""

from __future__ import annotations

import asyncio

import pytest

from operations.local_ray import HEAD_RESOURCE, MODEL_RESOURCE, ROLE_CLAIM
from operations.ports import free_port
from operations.profiles import place_on_nodes
from operations.serve import load_config
from shared.serving.ray_fixes import bind_replica_ports_alone, integer_options


def test_the_models_go_to_model_nodes_and_the_gateway_and_store_to_the_head():
    config = load_config()
    placed = place_on_nodes(config)
    roles = {
        app["name"]: app["deployments"][0]["ray_actor_options"]["resources"]
        for app in placed["applications"]
    }
    assert roles == {
        "image-encoder": {MODEL_RESOURCE: ROLE_CLAIM},
        "text-encoder": {MODEL_RESOURCE: ROLE_CLAIM},
        "fusion": {MODEL_RESOURCE: ROLE_CLAIM},
        "vector-store": {HEAD_RESOURCE: ROLE_CLAIM},
        "gateway": {HEAD_RESOURCE: ROLE_CLAIM},
    }
    # CPUs as in deploy/serve/vitrine.yaml, and the loaded config left as it was
    for before, after in zip(config["applications"], placed["applications"], strict=True):
        cpus = before["deployments"][0]["ray_actor_options"]["num_cpus"]
        assert after["deployments"][0]["ray_actor_options"]["num_cpus"] == cpus
        assert "resources" not in before["deployments"][0]["ray_actor_options"]


def test_reuseport_options_become_the_integers_grpc_reads():
    options = [("grpc.so_reuseport", "0"), ("grpc.max_send_message_length", 10)]
    assert integer_options(options) == [
        ("grpc.so_reuseport", 0),
        ("grpc.max_send_message_length", 10),
    ]
    assert integer_options(None) == []


def test_serves_grpc_servers_no_longer_share_a_port():
    """Serve's own server class, as a replica makes it: before the fix a second server bound a
    port already in use (SO_REUSEPORT on), after it the bind fails, which makes Serve move the
    replica to another port. (Should a Ray upgrade fix Serve, the first assertion fails and
    shared/serving/ray_fixes.py can go.)"""
    from ray.serve._private import grpc_util

    port = free_port()

    async def second_bind_on_a_used_port() -> int:
        first = grpc_util.gRPCGenericServer(
            lambda *a: None, extra_options=[("grpc.so_reuseport", "0")]
        )
        first.add_insecure_port(f"[::]:{port}")
        await first.start()
        try:
            second = grpc_util.gRPCGenericServer(
                lambda *a: None, extra_options=[("grpc.so_reuseport", "0")]
            )
            return second.add_insecure_port(f"[::]:{port}")
        finally:
            await first.stop(None)

    original = grpc_util.gRPCGenericServer
    try:
        assert asyncio.run(second_bind_on_a_used_port()) == port  # Serve as shipped: shared
        bind_replica_ports_alone()
        bind_replica_ports_alone()  # idempotent
        assert grpc_util.gRPCGenericServer.__mro__[1] is original
        with pytest.raises(RuntimeError, match="Failed to bind"):
            asyncio.run(second_bind_on_a_used_port())
    finally:
        grpc_util.gRPCGenericServer = original


def test_vitrine_deploy_nodes_config_writes_the_placed_config(tmp_path, capsys):
    import yaml

    from cli.app import main

    out = tmp_path / "nodes.yaml"
    assert main(["deploy", "nodes-config", "--output", str(out)]) == 0
    assert yaml.safe_load(out.read_text()) == place_on_nodes(load_config())
    assert capsys.readouterr().out == f"wrote {out}\n"
    assert main(["deploy", "nodes-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == place_on_nodes(load_config())
