"""The Serve platform the integration tests run against: deploying every application of
deploy/serve/vitrine.yaml on the session's Ray, more gateways beside it, waiting for it to serve
(the fixtures are in tests/integration/conftest.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from operations.ports import free_port
from tests.support.tiny import write_catalog, write_tiny_bundle


@dataclass(frozen=True)
class Platform:
    gateway: str  # host:port of the public SearchService
    http: str  # base URL of the HTTP API
    bundle: Path
    catalog: Path
    config: dict  # the Serve config as deployed


@dataclass(frozen=True)
class TrainedBundle:
    path: Path
    cache_dir: Path  # VITRINE_TRAIN_CACHE_DIR of the training (its synthetic catalog lies there)
    output: str  # what `vitrine train` printed


def deploy_platform(
    tmp_path_factory, *, all_args: dict | None = None, gateway_args: dict | None = None
):
    """The `platform` fixture's body: deploys, yields the Platform, deletes its applications.
    `all_args` go to every application (settings every process shares, e.g. tracing),
    `gateway_args` to the gateway's."""
    from ray import serve

    from operations.indexing import index_catalog, proxy_address
    from operations.profiles import place_on_nodes
    from operations.serve import deploy, load_config

    root = tmp_path_factory.mktemp("platform")
    bundle = write_tiny_bundle(root)
    catalog = write_catalog(root / "catalog")
    ports = {"http": free_port(), "gateway": free_port()}
    # On the session's cluster (tests/integration/conftest.py): the gateway and the store on
    # the head, the models on the model node.
    config = place_on_nodes(
        load_config(
            common_args={"bundle_path": str(bundle)},
            http_port=free_port(),
            proxy_grpc_port=free_port(),
            gateway_grpc_port=ports["gateway"],
        )
    )
    for app in config["applications"]:
        app["args"] |= all_args or {}
        if app["name"] == "gateway":
            app["args"] |= {"http_port": ports["http"], **(gateway_args or {})}
        if app["name"] == "vector-store":
            app["args"]["store_location"] = f"edge:{root / 'store'}"
            app["args"]["optimize_interval_s"] = 0.5
    deploy(config, timeout_s=300, progress=False)
    # Through the ingestion worker's processor and clients, at Serve's gRPC proxy (its port
    # is the session's first deploy's: proxy_address asks Serve).
    index_catalog(catalog, address=proxy_address(), batch_size=5, progress=False)
    yield Platform(
        gateway=f"127.0.0.1:{ports['gateway']}",
        http=f"http://127.0.0.1:{ports['http']}",
        bundle=bundle,
        catalog=catalog,
        config=config,
    )
    # Delete the applications, not Serve: the next module deploys on the same controller
    # (a controller shut down mid-session is not restarted cleanly by the next deploy).
    # All at once: deleted one by one, each waits out its replicas' graceful shutdown (about
    # 5 s an application here, RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S).
    names = [app["name"] for app in config["applications"]]
    for name in names:
        serve.delete(name, _blocking=False)
    deadline = time.monotonic() + 300
    while set(names) & set(serve.status().applications) and time.monotonic() < deadline:
        time.sleep(0.5)


def add_gateways(platform: Platform, apps: dict[str, dict]) -> dict[str, tuple[str, str]]:
    """Deploys more gateway applications beside the platform's: name -> args on top of the
    platform gateway's (same dependencies, ports of their own); removed with the platform.

    Returns:
        name -> (host:port of its gRPC API, host:port of its HTTP API).
    """
    import copy

    from operations.serve import deploy

    (gateway,) = (a for a in platform.config["applications"] if a["name"] == "gateway")
    addresses = {}
    for name, args in apps.items():
        app = copy.deepcopy(gateway)
        ports = {"grpc_port": free_port(), "http_port": free_port()}
        app.update(name=name, route_prefix=f"/{name}")
        app["args"] = {**app["args"], **ports, **args}
        # The platform's config spends the head's CPU; these extra gateways claim none
        # (they serve a test's few calls, not load).
        options = app["deployments"][0]["ray_actor_options"]
        options["num_cpus"] = 0  # its node role kept
        platform.config["applications"].append(app)  # the platform's teardown deletes it too
        addresses[name] = (f"127.0.0.1:{ports['grpc_port']}", f"127.0.0.1:{ports['http_port']}")
    deploy(platform.config, timeout_s=300, progress=False)
    return addresses


def wait_serving(channel, *, timeout_s: float = 60) -> None:
    """Waits until the gateway behind `channel` reports SERVING (every dependency answers)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
        if status == health_pb2.HealthCheckResponse.SERVING:
            return
        time.sleep(0.5)
    raise AssertionError(f"the gateway was not SERVING after {timeout_s:.0f} s")
