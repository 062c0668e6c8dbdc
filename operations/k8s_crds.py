"""Strict JSON schemas of the custom resources, made from the upstream CRDs vendored in
deploy/k8s/crds (SOURCES.md there says which versions).

A CRD's `openAPIV3Schema` is structural OpenAPI, not JSON Schema, and the API server prunes the
fields it does not declare instead of refusing them. `strict` turns it into a Draft 2020-12
schema that reports them: every object that declares its `properties` (and does not say
`x-kubernetes-preserve-unknown-fields`) gets `additionalProperties: false`;
`x-kubernetes-int-or-string` becomes integer-or-string, `nullable` allows null. The resource's
`metadata` is checked against Kubernetes' own ObjectMeta.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

from operations.serve import ROOT

CRD_DIR = ROOT / "deploy" / "k8s" / "crds"
OBJECT_META = "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


@cache
def _crds() -> dict[tuple[str, str], tuple[dict, str]]:
    """(apiVersion, kind) -> (the version's openAPIV3Schema, the file it came from)."""
    found = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                api = f"{spec['group']}/{version['name']}"
                schema = version["schema"]["openAPIV3Schema"]
                found[(api, spec["names"]["kind"])] = (schema, path.name)
    return found


def crd_schema(api_version: str, kind: str) -> dict | None:
    """The strict JSON schema of a custom resource; None when no vendored CRD serves it."""
    entry = _crds().get((api_version, kind))
    if entry is None:
        return None
    schema, source = entry
    out = strict(schema)
    properties = out.setdefault("properties", {})
    properties["apiVersion"] = {"const": api_version}
    properties["kind"] = {"const": kind}
    properties["metadata"] = {"$ref": OBJECT_META}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://vitrine.dev/crds/{api_version}/{kind}",
        "description": f"{kind} ({api_version}) from deploy/k8s/crds/{source}, strict",
        **out,
        "required": sorted({"apiVersion", "kind", *out.get("required", ())}),
    }


def strict(node: Any) -> Any:
    """A structural OpenAPI schema as a JSON Schema that refuses undeclared fields."""
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {
        key: (
            {name: strict(sub) for name, sub in value.items()}
            if key in ("properties", "patternProperties")
            else strict(value)
        )
        for key, value in node.items()
        if not key.startswith("x-kubernetes-") and key != "nullable"
    }
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    declares = "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields")
    if declares and "additionalProperties" not in node:
        out["additionalProperties"] = False
    return out


def vendored() -> list[tuple[str, str, str]]:
    """(apiVersion, kind, file) of every custom resource version the vendored CRDs serve."""
    return sorted((api, kind, source) for (api, kind), (_, source) in _crds().items())


def crd_files() -> list[Path]:
    return sorted(CRD_DIR.glob("*.yaml"))
