"""Tracing is off unless asked for; on, spans go to OTLP (and a file if named). Each case in its own interpreter:
OpenTelemetry's global tracer provider can be set only once per process."""

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.unit


def run(code: str, **env: str) -> dict:
    script = textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


CONFIGURED = """
    import json
    from opentelemetry import trace
    from platform_runtime import tracing
    from platform_runtime.settings import ServiceSettings

    settings = ServiceSettings(database_url="postgresql+asyncpg://x/y", http_port=1)
    on = tracing.configure("svc", settings.tracing_enabled, settings.otel_exporter_otlp_endpoint,
                           settings.tracing_file)
    provider = trace.get_tracer_provider()
    processors = getattr(getattr(provider, "_active_span_processor", None), "_span_processors", ())
    exporters = sorted(type(getattr(p, "span_exporter", None) or getattr(p, "_batch_processor")._exporter).__name__
                       for p in processors)
    with tracing.span("handle Probe", {}):
        made = tracing.trace_id() is not None
    print(json.dumps({"on": on, "exporters": exporters, "span_made": made}))
"""


def test_off_by_default_no_sdk_and_no_spans_made():
    assert run(CONFIGURED) == {"on": False, "exporters": [], "span_made": False}


def test_an_otlp_endpoint_turns_tracing_on_with_the_otlp_exporter():
    result = run(CONFIGURED, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")  # nothing listens: export fails quietly
    assert result == {"on": True, "exporters": ["OTLPSpanExporter"], "span_made": True}


def test_tracing_enabled_with_a_file_writes_spans_as_json_lines(tmp_path):
    path = tmp_path / "spans-{service}.jsonl"
    result = run(CONFIGURED, TRACING_ENABLED="true", TRACING_FILE=str(path))
    assert result == {"on": True, "exporters": ["JsonLinesExporter"], "span_made": True}
    (span,) = [json.loads(line) for line in (tmp_path / "spans-svc.jsonl").read_text().splitlines()]
    assert (span["name"], span["service"], span["parent_id"]) == ("handle Probe", "svc", None)
