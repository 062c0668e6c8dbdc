"""The Kubernetes manifests (deploy/k8s) render, validate, and stay tied to the code: no cluster.

Every overlay is rendered with the pinned kustomize and run through `vitrine deploy check`'s
checks; then each check is shown to fail on a broken copy of the rendered objects.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from operations.k8s_checks import check_objects, check_overlay, kustomize
from operations.profiles import (
    K8S_DIR,
    OVERLAYS,
    PROFILES,
    render_serve_config,
    stale_serve_configs,
)
from operations.serve import DEFAULT_CONFIG, ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {
        overlay: [o for o in yaml.safe_load_all(kustomize(K8S_DIR / "overlays" / overlay)) if o]
        for overlay in OVERLAYS
    }


def _one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    (found,) = [
        o
        for o in objects
        if o["kind"] == kind and (name is None or o["metadata"]["name"].startswith(name))
    ]
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_and_passes_every_check(overlay):
    report = check_overlay(K8S_DIR / "overlays" / overlay)
    assert report.problems == []
    kinds = {o["kind"] for o in report.objects}
    assert {"RayService", "Deployment", "ScaledObject", "ConfigMap"} <= kinds
    if overlay != "prod-green":
        assert {
            "RayJob",
            "Kafka",
            "KafkaNodePool",
            "KafkaTopic",
            "StatefulSet",
            "Service",
            "PodDisruptionBudget",
            "NetworkPolicy",
            "Namespace",
        } <= kinds
        assert {
            o["metadata"].get("namespace") for o in report.objects if o["kind"] != "Namespace"
        } == {_one(report.objects, "Namespace")["metadata"]["name"]}


def test_the_cli_check_exits_zero_and_names_each_overlay():
    done = subprocess.run(
        [sys.executable, "-m", "cli.app", "deploy", "check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for overlay in OVERLAYS:
        assert re.search(rf"^ok +{overlay}: \d+ objects", done.stdout, re.M), done.stdout


def test_embedded_serve_configs_are_fresh_renders_of_vitrine_yaml():
    assert stale_serve_configs() == [], "run `make k8s-serve-config` and commit"


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_kubernetes_serve_config_changes_only_placement(profile):
    source = yaml.safe_load(DEFAULT_CONFIG.read_text())
    rendered = yaml.safe_load(render_serve_config(profile))
    placement = {"ray_actor_options", "num_replicas", "autoscaling_config"}
    for top in ("proxy_location", "http_options", "grpc_options", "logging_config"):
        assert rendered[top] == source[top]
    for before, after in zip(source["applications"], rendered["applications"], strict=True):
        assert {k: v for k, v in after.items() if k != "deployments"} == {
            k: v for k, v in before.items() if k != "deployments"
        }
        (d_before,), (d_after,) = before["deployments"], after["deployments"]
        for key in set(d_before) | set(d_after):
            if key not in placement:
                assert d_after.get(key) == d_before.get(key), (after["name"], key)
    gateway = next(a for a in rendered["applications"] if a["name"] == "gateway")
    assert gateway["deployments"][0]["ray_actor_options"]["resources"] == {"vitrine_gateway": 1}


def test_serve_config_in_the_rayservice_is_the_rendered_one(rendered):
    for overlay, profile in (("dev", "cpu"), ("prod", "gpu"), ("prod-green", "gpu")):
        embedded = _one(rendered[overlay], "RayService")["spec"]["serveConfigV2"]
        assert yaml.safe_load(embedded) == yaml.safe_load(render_serve_config(profile))


def test_gateway_service_selects_the_gateway_pods_of_the_blue_slot_only(rendered):
    objects = rendered["prod"]
    selector = _one(objects, "Service", "vitrine-gateway")["spec"]["selector"]
    groups = _one(objects, "RayService")["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    matching = [
        g["groupName"]
        for g in groups
        if selector.items() <= g["template"]["metadata"]["labels"].items()
    ]
    assert matching == ["gateway"]
    assert selector["vitrine.dev/slot"] == "blue"
    gateway = next(g for g in groups if g["groupName"] == "gateway")
    container = gateway["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["grpc"] == {"port": 9000}
    assert container["livenessProbe"]["grpc"]["service"] == "vitrine.liveness"


def test_green_slot_is_a_second_serving_slot(rendered):
    blue, green = rendered["prod"], rendered["prod-green"]
    green_service = _one(green, "RayService")
    assert green_service["metadata"]["name"] == "vitrine-green"
    for group in green_service["spec"]["rayClusterConfig"]["workerGroupSpecs"]:
        assert group["template"]["metadata"]["labels"]["vitrine.dev/slot"] == "green"

    def env(objects):
        deployment = _one(objects, "Deployment", "vitrine-ingestion")
        (ref,) = deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
        return _one(objects, "ConfigMap", ref["configMapRef"]["name"])["data"]

    blue_env, green_env = env(blue), env(green)
    assert (
        green_env["VITRINE_INGESTION_CONSUMER_GROUP"]
        != blue_env["VITRINE_INGESTION_CONSUMER_GROUP"]
    )
    assert green_env["VITRINE_INGESTION_IMAGE_ENCODER_ADDRESS"] == "vitrine-green-serve-svc:9100"
    trigger = _one(green, "ScaledObject")["spec"]["triggers"][0]["metadata"]
    assert trigger["consumerGroup"] == green_env["VITRINE_INGESTION_CONSUMER_GROUP"]
    assert (
        _one(green, "ScaledObject")["spec"]["scaleTargetRef"]["name"] == "vitrine-ingestion-green"
    )

    def bundle(objects):
        ray = _one(objects, "RayService")["spec"]["rayClusterConfig"]["headGroupSpec"]
        (ref,) = ray["template"]["spec"]["containers"][0]["envFrom"]
        return _one(objects, "ConfigMap", ref["configMapRef"]["name"])["data"][
            "VITRINE_BUNDLE_PATH"
        ]

    assert bundle(green) != bundle(blue)


# ---- each check fails on a broken manifest ---------------------------------------------------


def _broken(objects: list[dict], change) -> list[str]:
    objects = copy.deepcopy(objects)
    change(objects)
    return check_objects(objects).problems


def _container(objects, kind, index=0):
    obj = _one(objects, kind)
    if kind == "RayService":
        return obj["spec"]["rayClusterConfig"]["workerGroupSpecs"][index]["template"]["spec"][
            "containers"
        ][0]
    return obj["spec"]["template"]["spec"]["containers"][0]


def _env_map(objects, prefix):
    return next(
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith(prefix)
    )["data"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda o: _container(o, "Deployment").update(imagePullPolicyy="Always"),
            "'imagePullPolicyy' was unexpected",
        ),
        (
            lambda o: _container(o, "RayService")["resources"].update(limitz={}),
            "'limitz' was unexpected",
        ),
        (
            lambda o: _one(o, "RayService")["spec"]["rayClusterConfig"].update(headGroupSpecs={}),
            "'headGroupSpecs' was unexpected",
        ),
        (
            lambda o: _one(o, "ScaledObject")["spec"]["triggers"][0]["metadata"].update(
                lagThreshold=500
            ),
            "lagThreshold: 500 is not of type 'string'",
        ),
        (
            lambda o: _env_map(o, "vitrine-ingestion-env").update(VITRINE_INGESTION_BATCH_SIZ="3"),
            "VITRINE_INGESTION_BATCH_SIZ is not a setting of ingestion",
        ),
        (
            lambda o: _env_map(o, "vitrine-ingestion-env").update(VITRINE_BATCH_SIZE="3"),
            "VITRINE_BATCH_SIZE is now VITRINE_INGESTION_BATCH_SIZE",
        ),
        (
            lambda o: _env_map(o, "vitrine-serve-env").update(VITRINE_TORCH_THREADS="1"),
            "VITRINE_TORCH_THREADS is now VITRINE_IMAGE_ENCODER_TORCH_THREADS, "
            "VITRINE_TEXT_ENCODER_TORCH_THREADS, VITRINE_FUSION_TORCH_THREADS",
        ),
        (
            lambda o: _env_map(o, "vitrine-serve-env").update(VITRINE_LOG_LEVEL="INFO"),
            "VITRINE_LOG_LEVEL sets nothing: the Serve applications log at",
        ),
        (
            lambda o: _env_map(o, "vitrine-ingestion-env").update(
                VITRINE_INGESTION_BATCH_SIZE="many"
            ),
            "VITRINE_INGESTION_BATCH_SIZE='many'",
        ),
        (
            lambda o: _env_map(o, "vitrine-serve-env").update(VITRINE_INGESTION_CONSUMER_GROUP="x"),
            "VITRINE_INGESTION_CONSUMER_GROUP is not a setting of image-encoder",
        ),
        (
            lambda o: _env_map(o, "vitrine-serve-env").update(OMP_THREADS="1"),
            "OMP_THREADS is not read by",
        ),
        (
            lambda o: _container(o, "Deployment").update(name="sidecar"),
            "runs an unknown process",
        ),
        (
            lambda o: _one(o, "RayService")["spec"].update(
                serveConfigV2=_one(o, "RayService")["spec"]["serveConfigV2"].replace(
                    "services.fusion.app:build_app", "services.fusion.apps:build_app"
                )
            ),
            "application fusion: services.fusion.apps:build_app does not import",
        ),
        (
            lambda o: _one(o, "RayService")["spec"].update(
                serveConfigV2=_one(o, "RayService")["spec"]["serveConfigV2"].replace(
                    "add_FusionServiceServicer_to_server", "add_FusionServicer_to_server"
                )
            ),
            "add_FusionServicer_to_server does not import",
        ),
        (
            lambda o: _one(o, "RayService")["spec"].update(serveConfigV2="applications: 3"),
            "serveConfigV2 is not a valid Serve config",
        ),
        (
            lambda o: _one(o, "RayService")["spec"]["rayClusterConfig"]["workerGroupSpecs"][1][
                "rayStartParams"
            ].pop("resources"),
            "asks for Ray resource 'vitrine_gateway', which no worker group offers",
        ),
        (
            lambda o: _one(o, "RayService")["spec"]["rayClusterConfig"]["workerGroupSpecs"][
                1
            ].update(maxReplicas=1),
            "2 replicas need 2 'vitrine_gateway', the worker groups offer at most 1",
        ),
        (
            lambda o: _container(o, "Deployment")["securityContext"].update(
                readOnlyRootFilesystem=False
            ),
            "root filesystem is writable",
        ),
        (
            lambda o: _container(o, "Deployment")["resources"].pop("limits"),
            "no limits for cpu, memory",
        ),
        (
            lambda o: _one(o, "ScaledObject")["spec"].update(maxReplicaCount=12),
            "maxReplicaCount 12 is more than the catalog topic's 6 partitions",
        ),
        (
            lambda o: _env_map(o, "vitrine-ingestion-env").update(
                VITRINE_INGESTION_DLQ_TOPIC="dead"
            ),
            "VITRINE_INGESTION_DLQ_TOPIC=dead is not a KafkaTopic",
        ),
        (
            lambda o: o.append({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {}}),
            "no schema for example.com/v1 Widget",
        ),
        # The upstream CRDs (deploy/k8s/crds), made strict: typos and wrong types in every
        # custom resource, down to the pod templates they embed.
        (
            lambda o: _one(o, "RayService")["spec"]["rayClusterConfig"]["headGroupSpec"][
                "template"
            ]["spec"]["containers"][0].update(imagePullPolicyy="Always"),
            "'imagePullPolicyy' was unexpected",
        ),
        (
            lambda o: _one(o, "RayService")["spec"]["rayClusterConfig"]["workerGroupSpecs"][
                0
            ].update(maxReplicas="six"),
            "maxReplicas: 'six' is not of type 'integer'",
        ),
        (
            lambda o: _one(o, "RayJob")["spec"].update(shutdownAfterJobFinishes="yes"),
            "shutdownAfterJobFinishes: 'yes' is not of type 'boolean'",
        ),
        (
            lambda o: _one(o, "RayJob")["spec"].update(entrypointt="python -m x"),
            "'entrypointt' was unexpected",
        ),
        (
            lambda o: _one(o, "Kafka")["spec"]["kafka"].update(listenerz=[]),
            "'listenerz' was unexpected",
        ),
        (
            lambda o: _one(o, "KafkaNodePool")["spec"].update(replicas="three"),
            "replicas: 'three' is not of type 'integer'",
        ),
        (
            lambda o: next(t for t in o if t["kind"] == "KafkaTopic")["spec"].update(partitons=6),
            "'partitons' was unexpected",
        ),
        (
            lambda o: _one(o, "ScaledObject")["spec"].update(pollingIntervall=5),
            "'pollingIntervall' was unexpected",
        ),
        (
            lambda o: _env_map(o, "vitrine-serve-env").update(VITRINE_ENVIRONMENT="development"),
            "container 'ray-head': VITRINE_ENVIRONMENT is not production",
        ),
        (
            lambda o: _env_map(o, "vitrine-serve-env").update(
                VITRINE_GATEWAY_ALLOW_UNAUTHENTICATED="true"
            ),
            "VITRINE_GATEWAY_ALLOW_UNAUTHENTICATED lets every caller in",
        ),
        (
            lambda o: _container(o, "Deployment")["env"][0]["valueFrom"]["secretKeyRef"].update(
                optional=True
            ),
            "VITRINE_INTERNAL_TOKEN's Secret 'vitrine-internal-token' is optional",
        ),
        (
            lambda o: _container(o, "RayService")["env"].pop(),
            "container 'ray-worker': VITRINE_INTERNAL_TOKEN is not from a Secret",
        ),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_each_check_catches_a_broken_manifest(rendered, change, expected):
    problems = _broken(rendered["dev"], change)
    assert any(expected in p for p in problems), problems


def test_an_overlay_that_does_not_render_is_reported(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    report = check_overlay(tmp_path)
    assert len(report.problems) == 1
    assert report.problems[0].startswith("does not render:")
    assert "missing.yaml" in report.problems[0]


# ---- the image --------------------------------------------------------------------------------

DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"


def test_image_is_built_on_the_pinned_ray_and_python():
    text = DOCKERFILE.read_text()
    pinned = re.search(
        r"^ray\[[^\]]+\]==(\S+)$", (ROOT / "requirements/base.txt").read_text(), re.M
    )
    assert re.search(rf"^ARG RAY_VERSION={re.escape(pinned.group(1))}$", text, re.M)
    python = re.search(r'requires-python = ">=3\.(\d+)', (ROOT / "pyproject.toml").read_text())
    for base in re.findall(r"^FROM rayproject/ray:\$\{RAY_VERSION\}-(\S+)", text, re.M):
        assert base.startswith(f"py3{python.group(1)}-"), base
    for manifest in ("base/slot/rayservice.yaml", "base/training/rayjob.yaml"):
        assert f'rayVersion: "{pinned.group(1)}"' in (K8S_DIR / manifest).read_text()


def test_everything_the_image_copies_exists_and_is_in_the_build_context():
    text = DOCKERFILE.read_text()
    sources = [
        path
        for line in re.findall(r"^COPY (?:--\S+ )*(.+)$", text, re.M)
        for path in line.split()[:-1]
    ]
    assert sources, "no COPY lines found"
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for source in sources:
        assert (ROOT / source).exists(), source
        assert source.rstrip("/") in allowed, f"{source} is excluded by .dockerignore"
    # The modules the manifests run are inside what is copied.
    for module in ("services/ingestion/app.py", "training/configs/catalog.yaml"):
        assert any(module.startswith(s.rstrip("/") + "/") for s in sources), module


def test_rayjob_trains_with_a_config_that_exists():
    job = yaml.safe_load((K8S_DIR / "base/training/rayjob.yaml").read_text().split("\n---\n")[0])
    config = re.search(r"--config (\S+)", job["spec"]["entrypoint"]).group(1)
    assert (ROOT / Path(config).relative_to("/home/ray/vitrine")).is_file()


def test_serves_grpc_message_limit_in_the_cluster_is_the_internal_one():
    """Serve's gRPC servers accept as much as the internal clients send (the YAML holds the
    number as data; shared/serving/endpoints.py is its one home)."""
    from shared.serving.endpoints import INTERNAL_MAX_MESSAGE_BYTES

    slot = yaml.safe_load((K8S_DIR / "base" / "slot" / "kustomization.yaml").read_text())
    (serve_env,) = [g for g in slot["configMapGenerator"] if g["name"] == "vitrine-serve-env"]
    literals = dict(item.split("=", 1) for item in serve_env["literals"])
    assert int(literals["RAY_SERVE_GRPC_MAX_MESSAGE_SIZE"]) == INTERNAL_MAX_MESSAGE_BYTES
