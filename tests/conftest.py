"""Session-wide environment, set before anything imports Ray (Serve reads it at import)."""

import os
import secrets

from operations.ports import private_port_ranges
from shared.serving.endpoints import internal_message_limit

# The serving configuration `make run` uses: Serve's direct ingress and gRPC transport
# (deploy/serve/vitrine.yaml explains why).
os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Throughput-optimised Serve buffers 1000 log records per replica before writing; our replicas
# log little outside the request path (no access log), so write each record at once.
os.environ.setdefault("RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The internal services refuse gRPC calls without the platform's internal token: one per session,
# inherited by the session's Ray (its replicas) and every subprocess (tests/support/internal.py).
if not os.environ.get("VITRINE_INTERNAL_TOKEN_FILE"):
    os.environ.setdefault("VITRINE_INTERNAL_TOKEN", secrets.token_urlsafe(32))
internal_message_limit(os.environ)
# Replica ports of our own, so a test cluster never answers for `make run` or a benchmark.
private_port_ranges(os.environ, slot=os.getpid() % 50)
