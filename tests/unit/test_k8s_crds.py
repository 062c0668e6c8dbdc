"""The vendored upstream CRDs made strict (operations.k8s_crds)."""

from __future__ import annotations

import jsonschema

from operations.k8s_crds import crd_schema, strict, vendored


def test_every_custom_resource_the_manifests_use_has_its_upstream_crd():
    served = {(api, kind) for api, kind, _ in vendored()}
    assert {
        ("ray.io/v1", "RayService"),
        ("ray.io/v1", "RayJob"),
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("kafka.strimzi.io/v1", "Kafka"),
        ("kafka.strimzi.io/v1", "KafkaNodePool"),
        ("kafka.strimzi.io/v1", "KafkaTopic"),
    } <= served
    assert crd_schema("ray.io/v9", "RayService") is None


def test_strict_refuses_undeclared_fields_and_keeps_kubernetes_types():
    schema = strict(
        {
            "type": "object",
            "properties": {
                "port": {"x-kubernetes-int-or-string": True},
                "note": {"type": "string", "nullable": True},
                "free": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "properties": {"a": {"type": "integer"}},
                },  # fmt: skip
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        }
    )
    check = jsonschema.Draft202012Validator(schema).is_valid
    assert check({"port": 8080}) and check({"port": "metrics"}) and check({"note": None})
    assert check({"free": {"anything": 1}}) and check({"labels": {"x": "y"}})
    assert not check({"prot": 8080})  # a typo
    assert not check({"port": 1.5}) and not check({"labels": {"x": 1}})
