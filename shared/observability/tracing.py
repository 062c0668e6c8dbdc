"""OpenTelemetry tracing: one tracer provider per process, W3C trace context in gRPC metadata,
HTTP and Kafka headers, and batches that link the requests they carry.

Off (no exporter set, the default) nothing is imported beyond this module and every helper
returns at its first line: `span` yields None, `inject` returns the metadata it was given.

On, each process names itself (`service.name`) and exports its spans: `otlp` to an
OpenTelemetry collector (OTLP/gRPC at `endpoint`), or `file:DIR` as one JSON line per span in
DIR/spans-SERVICE-PID.jsonl (what the integration tests read: an in-memory exporter cannot see
the replicas). A query's trace starts at the gateway (or at the caller, when its request carries
a `traceparent`); a catalog event's starts at `vitrine publish` and travels in the record's
headers. The sampler keeps a trace whose parent was kept, and a root with `sample_ratio`: so
`sample_ratio: 0` traces exactly the requests that arrive with a sampled `traceparent`.

Dynamic batching joins requests of different traces. A batch span never adopts one of them as
its parent: it is a child of the request when it carries one, else a root with a link to every
request it carries, kept when any of them was kept (`LinkedSampler`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_HEADERS = (TRACEPARENT, TRACESTATE)

_lock = threading.Lock()
_tracer: Any = None  # the process's tracer once `setup` enabled tracing; None: off
_provider: Any = None


@dataclass(frozen=True)
class TracingConfig:
    """How a process traces (VITRINE_TRACING_* settings, shared by every process).

    exporter: "" (off), "otlp" (OTLP/gRPC to `endpoint`) or "file:DIR" (JSON lines).
    endpoint: the OTLP collector's address, e.g. http://127.0.0.1:4317.
    sample_ratio: the share of root traces kept (children follow their parent).
    """

    exporter: str = ""
    endpoint: str = "http://127.0.0.1:4317"
    sample_ratio: float = 1.0

    def __post_init__(self) -> None:
        if self.exporter and self.exporter != "otlp" and not self.exporter.startswith("file:"):
            raise ValueError(
                f"tracing exporter {self.exporter!r}: use '' (off), 'otlp' or 'file:DIRECTORY'"
            )
        if not 0.0 <= self.sample_ratio <= 1.0:
            raise ValueError(f"tracing sample ratio {self.sample_ratio} is not within [0, 1]")


def enabled() -> bool:
    return _tracer is not None


def setup(service: str, config: TracingConfig | None) -> bool:
    """Makes this process trace as `service` when `config` names an exporter (the first call
    wins: one tracer provider per process). Returns whether the process traces."""
    global _tracer, _provider
    if config is None or not config.exporter:
        return enabled()
    with _lock:
        if _tracer is not None:
            return True
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        provider = TracerProvider(
            resource=Resource.create({"service.name": service}),
            sampler=_sampler(config.sample_ratio),
        )
        provider.add_span_processor(_processor(config, service))
        if _provider is None:  # OpenTelemetry's global may be set once per process
            trace.set_tracer_provider(provider)
        _provider, _tracer = provider, provider.get_tracer("vitrine")
    return True


def shutdown() -> None:
    """Flushes and stops this process's spans (tests: tracing is off again after it)."""
    global _tracer
    with _lock:
        if _provider is not None:
            _provider.shutdown()
        _tracer = None


def _processor(config: TracingConfig, service: str):
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    if config.exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        insecure = config.endpoint.startswith("http://")
        return BatchSpanProcessor(OTLPSpanExporter(endpoint=config.endpoint, insecure=insecure))
    from shared.observability.span_files import JsonLinesExporter

    directory = Path(config.exporter.removeprefix("file:"))
    return SimpleSpanProcessor(JsonLinesExporter(directory, service))


def _sampler(ratio: float):
    from opentelemetry.sdk.trace.sampling import (
        Decision,
        ParentBased,
        Sampler,
        SamplingResult,
        TraceIdRatioBased,
    )

    base = ParentBased(TraceIdRatioBased(ratio))

    class LinkedSampler(Sampler):
        """ParentBased(ratio), and a root kept when a span it links to was kept."""

        def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None,
                          links=None, trace_state=None):  # fmt: skip
            from opentelemetry import trace

            parent = trace.get_current_span(parent_context).get_span_context()
            if not parent.is_valid and any(
                link.context.trace_flags.sampled for link in links or ()
            ):
                return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
            return base.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )

        def get_description(self) -> str:
            return f"LinkedSampler({base.get_description()})"

    return LinkedSampler()


@contextlib.contextmanager
def span(
    name: str,
    *,
    parent: Any = None,
    links: Sequence[Any] = (),
    attributes: dict[str, Any] | None = None,
    server: bool = False,
    client: bool = False,
) -> Iterator[Any]:
    """A span made current for the block (None when tracing is off). `parent` is an OTel
    Context (from `extract`/`current`); None: the current one."""
    if _tracer is None:
        yield None
        return
    from opentelemetry.trace import SpanKind

    kind = SpanKind.SERVER if server else SpanKind.CLIENT if client else SpanKind.INTERNAL
    with _tracer.start_as_current_span(
        name, context=parent, kind=kind, links=links, attributes=attributes
    ) as s:
        yield s


def current() -> Any:
    """The current OTel Context, to carry across a thread or a queue (None when off)."""
    if _tracer is None:
        return None
    from opentelemetry import context

    return context.get_current()


@contextlib.contextmanager
def attached(ctx: Any) -> Iterator[None]:
    """Makes `ctx` (from `current` on another thread) current for the block."""
    if _tracer is None or ctx is None:
        yield
        return
    from opentelemetry import context

    token = context.attach(ctx)
    try:
        yield
    finally:
        context.detach(token)


def trace_id() -> str:
    """The current trace's id in hex ("" outside a kept span, or when off)."""
    if _tracer is None:
        return ""
    from opentelemetry import trace

    sc = trace.get_current_span().get_span_context()
    return format(sc.trace_id, "032x") if sc.is_valid and sc.trace_flags.sampled else ""


def inject(metadata: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """`metadata` (gRPC) plus the current span's W3C trace context, when there is one."""
    if _tracer is None:
        return metadata
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return metadata + tuple(carrier.items()) if carrier else metadata


def kafka_headers() -> list[tuple[str, bytes]]:
    """The current span's trace context as Kafka record headers ([] when none)."""
    if _tracer is None:
        return []
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(k, v.encode()) for k, v in carrier.items()]


def extract(pairs: Iterable[tuple[Any, Any]] | None) -> Any:
    """The remote trace context in gRPC metadata, HTTP or Kafka headers (str or bytes values);
    None when off or absent. A malformed `traceparent` is ignored (a new trace starts)."""
    if _tracer is None or not pairs:
        return None
    carrier = {}
    for key, value in pairs:
        name = key.decode("latin-1") if isinstance(key, bytes) else str(key)
        if name.lower() in _HEADERS and value is not None:
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            carrier[name.lower()] = text[:512]
    if TRACEPARENT not in carrier:
        return None
    from opentelemetry import propagate

    return propagate.extract(carrier)


def batch_span(name: str, contexts: Sequence[Any], attributes: dict[str, Any] | None = None):
    """The span of work done for several requests at once: the child of their one span when
    they share it, else a root linked to each of theirs (a no-op block when off)."""
    if _tracer is None:
        return span(name)
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.trace import Link

    seen: dict[tuple[int, int], Any] = {}
    for ctx in contexts:
        sc = trace.get_current_span(ctx).get_span_context() if ctx is not None else None
        if sc is not None and sc.is_valid:
            seen.setdefault((sc.trace_id, sc.span_id), (ctx, sc))
    if len(seen) == 1:
        ((ctx, _),) = seen.values()
        return span(name, parent=ctx, attributes=attributes)
    links = [Link(sc) for _, sc in seen.values()]
    return span(name, parent=Context(), links=links, attributes=attributes)
