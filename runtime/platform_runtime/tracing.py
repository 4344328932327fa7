"""W3C trace context across the platform, and OpenTelemetry spans when tracing is on.

Every message carries its trace context in the CloudEvents distributed-tracing extension attributes
`traceparent` / `tracestate` of the envelope (`ce_traceparent` / `ce_tracestate` headers in binary mode).
A consumed message's context becomes the current context while it is handled (a `handle <Type>` span
when tracing is on), and every message its handler writes to the outbox carries the current context, so
the relay publishes it on unchanged: a command and everything it causes, across the four services and
through durable timers, is one trace.

Off by default: the incoming context passes through as it came, and no span is built (`span` makes the
parent's context current itself, which is what the OpenTelemetry API alone would do, at about two thirds of its
cost). `TRACING_ENABLED=true` or `OTEL_EXPORTER_OTLP_ENDPOINT` installs the SDK: spans are recorded and
exported over OTLP/HTTP (the exporter reads the standard `OTEL_EXPORTER_OTLP_*` variables), and
`TRACING_FILE` also writes them as JSON lines (tests, local debugging).
"""

import contextlib
import json
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from opentelemetry import context, trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .logging import redact_text

_PROPAGATOR = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("platform_runtime")
# Whether a provider that records spans is installed (configure, use_provider). Off, `span` does not ask the API.
_recording = False


def configure(service: str, enabled: bool, otlp_endpoint: str | None = None, file: str | None = None) -> bool:
    """Install the SDK when tracing is on; returns whether it is."""
    if not (enabled or otlp_endpoint):
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if file:
        # Batched in the SDK's own thread: no file write on the event loop for every message.
        provider.add_span_processor(BatchSpanProcessor(JsonLinesExporter(file.format(service=service)),
                                                       schedule_delay_millis=500))
    trace.set_tracer_provider(provider)
    use_provider(provider)
    return True


def use_provider(provider: trace.TracerProvider | None) -> None:
    """Record this process's spans with `provider` (None: back to the global one). Tests use it with an
    in-memory exporter, since OpenTelemetry's global provider can be set only once per process."""
    global _tracer, _recording
    provider = provider or trace.get_tracer_provider()
    _tracer = provider.get_tracer("platform_runtime")
    _recording = not isinstance(provider, (trace.NoOpTracerProvider, trace.ProxyTracerProvider))


def extract(carrier: dict[str, Any]) -> context.Context:
    """The context named by a message's `traceparent` / `tracestate` (an empty one if absent or malformed)."""
    fields = {k: v for k in ("traceparent", "tracestate") if isinstance(v := carrier.get(k), str)}
    return _PROPAGATOR.extract(fields)


def current() -> dict[str, str]:
    """`traceparent` (and `tracestate`) of the current context, for the messages written now; {} if none."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier


@contextlib.contextmanager
def span(name: str, parent: dict[str, Any], **attributes: Any) -> Iterator[trace.Span]:
    """Make `parent`'s context current for the block, inside a span of its own when tracing is on."""
    if not _recording:
        # The API's span would be a NonRecordingSpan of the parent's context, made current: extract() makes that
        # context already, so it is made current as it is. The same current() and trace_id() inside, without the
        # API's span, attributes and contexts built for nothing: 25.7 -> 16.2 us for a span with a trace_id() and a
        # current() inside, on the benchmark machine (issue 10, thirty-third step); every message handled passes here.
        token = context.attach(extract(parent))
        try:
            yield trace.get_current_span()
        finally:
            context.detach(token)
        return
    with _tracer.start_as_current_span(name, context=extract(parent), kind=trace.SpanKind.CONSUMER,
                                       attributes={k: v for k, v in attributes.items() if v is not None}) as s:
        yield s


def trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


class JsonLinesExporter:
    """Spans as JSON lines in a file: enough to check a trace's shape without a collector."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the process's life
        self._lock = threading.Lock()

    def export(self, spans: Sequence) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        with self._lock:
            for s in spans:
                self._file.write(redact_text(json.dumps({
                    "name": s.name, "service": s.resource.attributes.get("service.name"),
                    "trace_id": format(s.context.trace_id, "032x"), "span_id": format(s.context.span_id, "016x"),
                    "parent_id": format(s.parent.span_id, "016x") if s.parent else None,
                    "attributes": dict(s.attributes or {}),
                })) + "\n")  # like a log line: no email or token (a request's url.path may hold anything)
            self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._file.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
