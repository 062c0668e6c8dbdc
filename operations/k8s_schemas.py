"""Schema checks of rendered Kubernetes objects (`operations.k8s_checks` runs them).

- every object is validated against its schema with every error reported: the Kubernetes
  OpenAPI schemas of the pinned `kubernetes-validate` (strict: unknown fields are errors), and
  for custom resources the upstream KubeRay, KEDA and Strimzi CRDs vendored in deploy/k8s/crds,
  made strict the same way (operations.k8s_crds);
- each RayService's serveConfigV2 is parsed by Serve's own schema, its import paths and gRPC
  servicer functions are imported, its `args` must be settings of that application, and the
  custom Ray resources it asks for must be offered by a worker group.
"""

from __future__ import annotations

import importlib
import json
import re
from functools import cache
from pathlib import Path

import yaml

from operations.k8s_crds import crd_schema
from operations.settings import PROCESS_SETTINGS

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
    return _validator_of(json.loads(schema_path.read_text()), definitions_path)


@cache
def _crd_validator(api_version: str, kind: str, definitions_path: Path):
    schema = crd_schema(api_version, kind)
    if schema is None:
        raise KeyError(f"no vendored CRD serves {api_version} {kind}")
    return _validator_of(schema, definitions_path)


def _validator_of(schema: dict, definitions_path: Path):
    import jsonschema
    from referencing import Registry, Resource

    definitions = Resource.from_contents(json.loads(definitions_path.read_text()))
    registry = Resource.from_contents(schema) @ (definitions @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def schema_problems(obj: dict, k8s_version: str) -> list[str]:
    """Every schema error of one object, as 'path: message'."""
    if not {"apiVersion", "kind"} <= obj.keys():
        return ["no apiVersion or kind"]
    k8s_dir = _kubernetes_schema_dir(k8s_version)
    name = _schema_file_name(obj)
    definitions = k8s_dir / "_definitions.json"
    if (k8s_dir / name).is_file():
        validator = _validator(k8s_dir / name, definitions)
    elif crd_schema(obj["apiVersion"], obj["kind"]) is not None:
        validator = _crd_validator(obj["apiVersion"], obj["kind"], definitions)
    else:
        return [
            f"no schema for {obj['apiVersion']} {obj['kind']}: vendor its CRD in "
            "deploy/k8s/crds (SOURCES.md)"
        ]
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
