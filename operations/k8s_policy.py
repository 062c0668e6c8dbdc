"""Vitrine's policies over the containers of rendered Kubernetes objects
(`operations.k8s_checks` runs them).

- every environment variable a container gets (env, envFrom of a rendered ConfigMap) must be a
  setting of the process that container runs, and its value must pass that setting's
  validation; other variables must be on the short list of what third-party code reads;
- serving and ingestion containers are closed by default: production mode, credentials from
  required Secrets;
- every container runs as non-root with a read-only root filesystem, no privilege escalation,
  no capabilities, and CPU and memory requests and limits;
- the ingestion worker's topics must exist as KafkaTopics, and KEDA may not run more workers
  than the catalog topic has partitions.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from operations.settings import PROCESS_SETTINGS, renamed_variables, variables
from shared.serving.apps import SERVE_APPS
from shared.settings import ENV_PREFIX, RETIRED, SettingsError, load_settings

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
    "ray-head": ("VITRINE_GATEWAY_API_KEYS", "VITRINE_INTERNAL_TOKEN"),
    "ray-worker": ("VITRINE_GATEWAY_API_KEYS", "VITRINE_INTERNAL_TOKEN"),
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


def object_name(obj: dict) -> str:
    """`Kind/name`, how every problem names its object."""
    return f"{obj.get('kind', '?')}/{obj.get('metadata', {}).get('name', '?')}"


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
                yield f"{object_name(obj)} container {container.get('name')!r}", pod, container


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
    known = {name for p in processes for name in variables(p)}
    for name in sorted(env):
        if name not in known and name not in third_party:
            problems.append(_unknown_variable(name, processes))
    literal = {k: v for k, v in env.items() if k in known and v is not None}
    for process in processes:
        mine = {k: v for k, v in literal.items() if k in variables(process)}
        with _environ(mine):
            try:
                load_settings(PROCESS_SETTINGS[process])
            except SettingsError as e:
                problems.append(str(e).replace("\n", " "))
    return problems


def _unknown_variable(name: str, processes: tuple[str, ...]) -> str:
    """Why a container's variable `name` is not read by the processes it runs."""
    if name in RETIRED:
        return f"{name} sets nothing: {RETIRED[name]}"
    new = [v for p, v in renamed_variables().get(name, {}).items() if p in processes]
    if new:
        return f"{name} is now {', '.join(new)} (one prefix per process)"
    if name.startswith(ENV_PREFIX):
        return f"{name} is not a setting of {', '.join(processes) or 'it'}"
    return f"{name} is not read by {', '.join(processes) or 'it'}"


def closed_problems(objects: list[dict]) -> list[str]:
    """Every serving and ingestion container runs in production mode, gets its credentials
    from Secrets it requires (a missing Secret stops the pod, never opens it), and is not told
    to let every caller in."""
    config_maps = _config_maps(objects)
    problems = []
    for where, _, container in _containers(objects):
        required = REQUIRED_SECRETS.get(container.get("name", ""), ())
        if not required:
            continue
        env, _ = _container_env(container, config_maps)
        if env.get("VITRINE_ENVIRONMENT") != "production":
            problems.append(f"{where}: VITRINE_ENVIRONMENT is not production")
        allow = "VITRINE_GATEWAY_ALLOW_UNAUTHENTICATED"
        if str(env.get(allow, "")).lower() in ("1", "true", "yes"):
            problems.append(f"{where}: {allow} lets every caller in")
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
    ingestion = PROCESS_SETTINGS["ingestion"]
    names = ingestion.env_names()
    catalog_partitions = None
    for where, _, container in _containers(objects):
        if container.get("name") != "ingestion":
            continue
        env, _ = _container_env(container, config_maps)
        for field_name in ("catalog_topic", "dlq_topic"):
            var = names[field_name]
            topic = env.get(var) or ingestion.model_fields[field_name].default
            if topic not in topics:
                problems.append(f"{where}: {var}={topic} is not a KafkaTopic")
            elif field_name == "catalog_topic":
                catalog_partitions = topics[topic].get("partitions")
    for obj in objects:
        if obj.get("kind") == "ScaledObject" and catalog_partitions is not None:
            most = obj["spec"].get("maxReplicaCount", 100)
            if most > catalog_partitions:
                problems.append(
                    f"{object_name(obj)}: maxReplicaCount {most} is more than the catalog topic's "
                    f"{catalog_partitions} partitions (the extra workers would idle)"
                )
    return problems
