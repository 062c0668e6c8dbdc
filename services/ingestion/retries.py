"""Retrying a write while the encoder or the store is unavailable (the worker's loop)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import grpc

from shared.serving.errors import DependencyError, dependency_status

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def with_retries(
    fn: Callable[[], T],
    *,
    stop: Callable[[], bool],
    max_backoff_s: float = 10,
    on_retry: Callable[[grpc.StatusCode], None] = lambda _: None,
) -> T:
    """Runs fn until it succeeds, backing off while a dependency is unavailable: the clients
    (shared.serving.clients) raised DependencyError with UNAVAILABLE, or TimeoutError."""
    backoff = 0.2
    while True:
        try:
            return fn()
        except (DependencyError, TimeoutError) as e:
            status = dependency_status(e)
            if status not in RETRYABLE or stop():
                raise
            on_retry(status)
            log.warning("dependency unavailable (%s); retrying in %.1f s", status.name, backoff)
            time.sleep(backoff)
            backoff = min(max_backoff_s, backoff * 2)
