"""What the gateway records of each query: its metrics (shared.observability.metrics), its span,
and one structured log line.

The log line is JSON on the `ray.serve.vitrine.queries` logger (the gateway replica's log file,
`logs/serve/replica_gateway_*.log`): trace id, API, query kind, status code, hits and stage
timings in milliseconds. Never a query's text, image bytes, key or payload. Every failed query
is logged; answered ones with probability `log_sample_ratio`.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from shared.observability import tracing
from shared.observability.metrics import make
from shared.serving.errors import status_of
from shared.types import SearchMode, SearchQuery, SearchResult

query_log = logging.getLogger("ray.serve.vitrine.queries")

STAGES = ("encode", "fuse", "search")


def code_of(error: BaseException) -> str:
    """The gRPC status name a query failing with `error` is answered with."""
    if isinstance(error, TimeoutError):
        return "DEADLINE_EXCEEDED"  # as the servers answer it
    if not isinstance(error, Exception):  # cancelled: the caller went away
        return "CANCELLED"
    return status_of(error)[0].name


def kind_of(query: SearchQuery) -> str:
    """text, image, composed (a reference and words), product (a catalog product as the
    reference), examples (more-like-this without a reference) or lexical."""
    if query.mode is SearchMode.LEXICAL:
        return "lexical"
    reference = "image" if query.image is not None else "product" if query.product_id else ""
    words = bool(query.text.strip())
    if reference and words:
        return "composed"
    if reference:
        return reference
    return "text" if words else "examples"


class QueryObserver:
    """Counts, times, traces and logs the queries of one gateway replica."""

    def __init__(self, *, log_sample_ratio: float = 0.01, metric=make) -> None:
        self.requests = metric("vitrine_gateway_requests")
        self.seconds = metric("vitrine_gateway_request_seconds")
        self.stages = metric("vitrine_gateway_stage_seconds")
        self.log_sample_ratio = log_sample_ratio

    @contextmanager
    def query(self, query: SearchQuery, *, api: str, parent: Any = None) -> Iterator[dict]:
        """The block that answers `query`: its span, then its metrics and log line. The block
        puts the SearchResult in the yielded dict under "result"."""
        kind = kind_of(query)
        outcome: dict[str, Any] = {}
        started = time.perf_counter()
        code = "OK"
        with tracing.span(
            "vitrine.Search", parent=parent, server=True, attributes={"api": api, "kind": kind}
        ) as span:
            try:
                yield outcome
            except BaseException as e:
                code = code_of(e)
                raise
            finally:
                seconds = time.perf_counter() - started
                result = outcome.get("result")
                if span is not None:
                    span.set_attribute("code", code)
                self._record(api, kind, code, seconds, result)

    def _record(
        self, api: str, kind: str, code: str, seconds: float, result: SearchResult | None
    ) -> None:
        self.requests.inc(tags={"api": api, "kind": kind, "code": code})
        self.seconds.observe(seconds, tags={"api": api, "kind": kind})
        if result is not None:
            t = result.timing
            for stage, ms in zip(STAGES, (t.encode_ms, t.fuse_ms, t.search_ms), strict=True):
                if stage != "fuse" or kind == "composed":  # only composed queries are fused
                    self.stages.observe(ms / 1000, tags={"stage": stage, "kind": kind})
        if code != "OK" or random.random() < self.log_sample_ratio:
            query_log.info(json.dumps(log_record(api, kind, code, seconds, result)))


def log_record(
    api: str, kind: str, code: str, seconds: float, result: SearchResult | None
) -> dict[str, Any]:
    """The query's log line: no text, image, key or payload."""
    record: dict[str, Any] = {
        "event": "query",
        "trace_id": tracing.trace_id(),
        "api": api,
        "kind": kind,
        "code": code,
        "total_ms": round(seconds * 1000, 3),
    }
    if result is not None:
        t = result.timing
        record |= {
            "hits": len(result.hits),
            "mode": result.mode.value if result.mode is not None else "",
            "encode_ms": round(t.encode_ms, 3),
            "fuse_ms": round(t.fuse_ms, 3),
            "search_ms": round(t.search_ms, 3),
        }
    return record
