"""Per-key request rates: a token bucket per API key entry, in each gateway replica.

A key entry may carry a rate (`NAME:KEY:SCOPES:50/s` or `...:600/min`): its bucket holds one
second's worth of requests (at least one) and refills at the rate. A request that finds it empty
is refused with RESOURCE_EXHAUSTED (HTTP 429) and the time until a request would pass
(`retry-after-ms` trailing metadata, `Retry-After` header). Buckets live in the replica: with R
gateway replicas behind a load balancer a key gets up to R times its rate.
"""

from __future__ import annotations

import math
import re
import threading
import time

from shared.serving.errors import LimitError

_RATE = re.compile(r"(\d+(?:\.\d+)?)/(s|min)")


class RateLimitedError(LimitError):
    """A key over its rate; `retry_after_s` says when the next request would pass."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def parse_rate(text: str) -> float:
    """Requests per second of `50/s` or `600/min`.

    Raises:
        ValueError: another form, or a rate of 0.
    """
    match = _RATE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"rate {text!r} is not N/s or N/min")
    rate = float(match.group(1)) / (1.0 if match.group(2) == "s" else 60.0)
    if rate <= 0:
        raise ValueError(f"rate {text!r} admits nothing")
    return rate


class RateLimiter:
    """Token buckets by key name; thread-safe (gRPC server threads and the HTTP loop share it)."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, at)
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        # Shipped to each replica (Serve pickles the gateway's arguments): empty buckets there.
        return {"clock": self._clock}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["clock"])  # type: ignore[misc]

    def take(self, name: str, rate_per_s: float) -> None:
        """Takes one request from `name`'s bucket.

        Raises:
            RateLimitedError: the bucket is empty.
        """
        capacity = max(1.0, rate_per_s)
        with self._lock:
            now = self._clock()
            tokens, at = self._buckets.get(name, (capacity, now))
            tokens = min(capacity, tokens + (now - at) * rate_per_s)
            if tokens < 1.0:
                self._buckets[name] = (tokens, now)
                wait_s = (1.0 - tokens) / rate_per_s
                raise RateLimitedError(
                    f"API key {name!r} is over its rate of {rate_per_s:g} requests/s; retry in "
                    f"{math.ceil(wait_s * 1000)} ms",
                    wait_s,
                )
            self._buckets[name] = (tokens - 1.0, now)
