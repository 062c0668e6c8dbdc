"""The Serve application and deployment names, written once.

Every caller names an internal service by its application (Serve routes a gRPC call by its
`application` metadata, and `shared.serving.endpoints` finds its targets by it); a driver that
takes a handle names the deployment too. The Serve config (deploy/serve/vitrine.yaml) and the
Kubernetes manifests hold the same names as data; tests/unit/test_serve_config.py checks they
agree.
"""

from __future__ import annotations

IMAGE_ENCODER = "image-encoder"
TEXT_ENCODER = "text-encoder"
FUSION = "fusion"
VECTOR_STORE = "vector-store"
GATEWAY = "gateway"

# The internal services: only the gateway and the ingestion worker call them, with the token.
INTERNAL_APPS = (IMAGE_ENCODER, TEXT_ENCODER, FUSION, VECTOR_STORE)
# Every application of the Serve config, in its order.
SERVE_APPS = (*INTERNAL_APPS, GATEWAY)
# The applications that load the model bundle (they take `bundle_path`).
BUNDLE_APPS = frozenset(INTERNAL_APPS)

# The one deployment of each application.
DEPLOYMENTS = {
    IMAGE_ENCODER: "ImageEncoder",
    TEXT_ENCODER: "TextEncoder",
    FUSION: "Fusion",
    VECTOR_STORE: "VectorStore",
    GATEWAY: "Gateway",
}
IMAGE_ENCODER_DEPLOYMENT = DEPLOYMENTS[IMAGE_ENCODER]
TEXT_ENCODER_DEPLOYMENT = DEPLOYMENTS[TEXT_ENCODER]
FUSION_DEPLOYMENT = DEPLOYMENTS[FUSION]
VECTOR_STORE_DEPLOYMENT = DEPLOYMENTS[VECTOR_STORE]
GATEWAY_DEPLOYMENT = DEPLOYMENTS[GATEWAY]
