"""Session-wide environment, set before anything imports Ray (Serve reads it at import)."""

import os

from operations.local_ray import prepare_environment

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The serving configuration of `make run` for the session's Ray, its replicas and every
# subprocess: direct ingress, one internal token (operations.local_ray.internal_metadata), the
# internal message limit, and replica ports of our own, so a test cluster never answers for
# `make run` or a benchmark.
prepare_environment(os.environ, port_slot=os.getpid() % 50)
# Ray's metrics agent reports each process's metrics every 10 s by default; the metrics tests
# (tests/integration/test_observability.py) wait for them, a second is enough.
os.environ.setdefault("RAY_metrics_report_interval_ms", "1000")
