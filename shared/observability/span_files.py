"""Spans as JSON lines, one file per process: the `file:DIR` exporter of
shared.observability.tracing (imported only when tracing is on), and reading them back."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class JsonLinesExporter(SpanExporter):
    """A SpanExporter writing one JSON object per span to DIR/spans-SERVICE-PID.jsonl."""

    def __init__(self, directory: Path, service: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._path = directory / f"spans-{service}-{os.getpid()}.jsonl"
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = [json.dumps(span_record(s)) + "\n" for s in spans]
        with self._lock, self._path.open("a") as f:
            f.writelines(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def span_record(s: ReadableSpan) -> dict[str, Any]:
    """A finished span as plain JSON: ids in hex, links, attributes, status."""
    sc, parent = s.get_span_context(), s.parent
    if sc is None:  # a finished SDK span always has one
        raise ValueError(f"span {s.name!r} has no context")
    return {
        "name": s.name,
        "service": s.resource.attributes.get("service.name", ""),
        "trace_id": format(sc.trace_id, "032x"),
        "span_id": format(sc.span_id, "016x"),
        "parent_span_id": format(parent.span_id, "016x") if parent is not None else "",
        "links": [
            {
                "trace_id": format(link.context.trace_id, "032x"),
                "span_id": format(link.context.span_id, "016x"),
            }
            for link in s.links
        ],  # fmt: skip
        "start_ns": s.start_time,
        "end_ns": s.end_time,
        "attributes": dict(s.attributes or {}),
        "status": s.status.status_code.name,
    }


def read_spans(directory: Path) -> list[dict[str, Any]]:
    """Every span written under `directory` so far (a line being written is skipped)."""
    spans = []
    for path in sorted(directory.glob("spans-*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                spans.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return spans
