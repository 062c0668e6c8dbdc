"""deploy/serve/vitrine.yaml is a valid Serve config whose every path imports."""

from __future__ import annotations

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from operations.k8s_schemas import import_attr
from operations.serve import load_config
from shared.serving.apps import BUNDLE_APPS, DEPLOYMENTS, SERVE_APPS


@pytest.fixture(scope="module")
def config() -> dict:
    return load_config()


def test_config_validates_against_serves_schema(config):
    schema = ServeDeploySchema.model_validate(config)
    names = [a.name for a in schema.applications]
    assert names == ["image-encoder", "text-encoder", "fusion", "vector-store", "gateway"]


def test_the_config_holds_the_names_of_shared_serving_apps(config):
    """The names every caller uses (shared/serving/apps.py) are the config's."""
    assert tuple(app["name"] for app in config["applications"]) == SERVE_APPS
    for app in config["applications"]:
        assert [d["name"] for d in app["deployments"]] == [DEPLOYMENTS[app["name"]]]


def test_every_import_path_and_servicer_resolves(config):
    for app in config["applications"]:
        assert callable(import_attr(app["import_path"]))
    for fn in config["grpc_options"]["grpc_servicer_functions"]:
        assert callable(import_attr(fn))


def test_batching_is_configured_and_validates(config):
    from shared.serving.batching import BatchConfig

    deployments = {d["name"]: d for a in config["applications"] for d in a.get("deployments", [])}
    for name in ("ImageEncoder", "TextEncoder", "Fusion"):
        BatchConfig(**deployments[name]["user_config"])  # the one home of the batching knobs
        assert deployments[name]["max_ongoing_requests"] >= (
            2 * deployments[name]["user_config"]["max_batch_size"]
        )


def test_the_local_config_fits_two_cores(config):
    """One replica each, CPU budgets summing to the 2 cores `make run` and CI machines have:
    autoscaling onto busy cores adds queueing, not capacity (issue: serving at model speed)."""
    deployments = [d for a in config["applications"] for d in a["deployments"]]
    assert all("autoscaling_config" not in d for d in deployments)
    assert all(d.get("num_replicas", 1) == 1 for d in deployments)
    assert sum(d["ray_actor_options"]["num_cpus"] for d in deployments) <= 2.0


def test_kubernetes_profiles_autoscale_every_application_but_the_gateway():
    from operations.profiles import PROFILES, render_serve_config

    for profile in PROFILES:
        rendered = yaml.safe_load(render_serve_config(profile))
        for app in rendered["applications"]:
            (deployment,) = app["deployments"]
            scaling = deployment.get("autoscaling_config")
            if app["name"] == "gateway":
                assert scaling is None and deployment["num_replicas"] >= 2
            else:
                assert "num_replicas" not in deployment
                assert 1 <= scaling["min_replicas"] <= scaling["max_replicas"]
                if app["name"] != "vector-store":  # model replicas scale on batcher load
                    assert scaling["policy"]["policy_function"].endswith("BatchUtilizationPolicy")


def test_overrides_reach_the_right_apps(config):
    patched = load_config(
        common_args={"bundle_path": "/b"}, http_port=1, proxy_grpc_port=2, gateway_grpc_port=3
    )
    for app in patched["applications"]:
        assert ("bundle_path" in app["args"]) == (app["name"] in BUNDLE_APPS)
    gateway = next(a for a in patched["applications"] if a["name"] == "gateway")
    assert gateway["args"]["grpc_port"] == 3
    assert (patched["http_options"]["port"], patched["grpc_options"]["port"]) == (1, 2)


def test_gateway_port_differs_from_the_serve_grpc_proxy(config):
    from services.gateway.config import GatewaySettings

    assert GatewaySettings().grpc_port != config["grpc_options"]["port"]


def test_free_ports_stay_out_of_every_serve_replica_port_range():
    """Replicas bind with SO_REUSEPORT; a test's gateway or broker port inside a replica range
    could later be shared with a replica (the likely cause of a test search that once hung 30 s)."""
    from operations.ports import SERVE_REPLICA_PORTS, free_port, private_port_ranges

    for slot in (0, 49, 99):
        env: dict[str, str] = {}
        private_port_ranges(env, slot=slot)
        for name, value in env.items():
            assert int(value) in SERVE_REPLICA_PORTS, (name, value)
    for default in (30000, 31000, 40000, 41000):  # Serve's own HTTP and gRPC ranges
        assert default in SERVE_REPLICA_PORTS
    assert not {free_port() for _ in range(200)} & set(SERVE_REPLICA_PORTS)


def test_a_bad_autoscaling_policy_is_reported():
    from types import SimpleNamespace

    from operations.k8s_schemas import _policy_problems

    def deployment(policy):
        return SimpleNamespace(autoscaling_config={"min_replicas": 1, "policy": policy})

    good = {
        "policy_function": "shared.serving.autoscaling:BatchUtilizationPolicy",
        "policy_kwargs": {"target_busy": 0.5},
    }
    assert _policy_problems("a", deployment(good)) == []
    bad_path = {**good, "policy_function": "shared.serving.autoscaling:NoSuchPolicy"}
    assert "NoSuchPolicy" in _policy_problems("a", deployment(bad_path))[0]
    bad_kwargs = {**good, "policy_kwargs": {"target_busy": 2}}
    assert "target_busy" in _policy_problems("a", deployment(bad_kwargs))[0]
