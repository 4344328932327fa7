"""Tracing off: `span` makes the parent's context current itself instead of asking OpenTelemetry's API for a span.
What a handler sees inside (the context its messages carry on, the trace id its logs name) must be what the API's
non-recording span gives, for any parent a message may bring: well-formed, malformed, absent, with a tracestate."""

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from platform_runtime import tracing

pytestmark = pytest.mark.unit

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
PARENTS = [
    {},
    {"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01"},
    {"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-00", "tracestate": "vendor=a,other=b"},
    {"traceparent": f"00-{TRACE_ID.upper()}-{SPAN_ID}-01"},  # upper case: malformed
    {"traceparent": f"01-{TRACE_ID}-{SPAN_ID}-01-future"},  # a later version may carry more
    {"traceparent": f"ff-{TRACE_ID}-{SPAN_ID}-01"},  # a forbidden version
    {"traceparent": f"00-{'0' * 32}-{SPAN_ID}-01"},  # an invalid trace id
    {"traceparent": f"00-{TRACE_ID}-{'0' * 16}-01"},  # an invalid span id
    {"traceparent": "garbage", "tracestate": "vendor=a"},
    {"traceparent": 42, "tracestate": ["not", "text"]},  # not text at all
    {"tracestate": "vendor=a"},  # a tracestate without a traceparent
    {"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01", "tracestate": "=bad,,vendor=a"},
]


@contextlib.contextmanager
def api_span(parent: dict):
    """What `span` did before, and still does when a provider records: the API's own span."""
    with trace.NoOpTracer().start_as_current_span("handle Probe", context=tracing.extract(parent),
                                                  kind=trace.SpanKind.CONSUMER) as made:
        yield made


@pytest.fixture
def tracing_off(monkeypatch):
    """The fast path whatever provider an earlier test of this process left installed."""
    monkeypatch.setattr(tracing, "_recording", False)


def seen_inside(span_of, parent: dict) -> tuple:
    with span_of(parent) as made:
        return tracing.current(), tracing.trace_id(), made.get_span_context()


def test_tracing_is_off_unless_a_recording_provider_is_installed():
    assert tracing._recording is False
    tracing.use_provider(trace.NoOpTracerProvider())
    assert tracing._recording is False
    tracing.use_provider(None)
    assert tracing._recording is False


@pytest.mark.parametrize("parent", PARENTS, ids=range(len(PARENTS)))
def test_off_a_handler_sees_what_the_apis_span_gives(tracing_off, parent):
    assert seen_inside(lambda p: tracing.span("handle Probe", p, topic="t"), parent) == seen_inside(api_span, parent)
    assert tracing.current() == {}  # and the context is left as it was found


# The fixture's setting holds for every example: nothing in the test changes it.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(traceparent=st.one_of(st.none(), st.text(max_size=70), st.from_regex(
    r"\A[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-[0-9a-z]{0,8})?\Z")),
       tracestate=st.one_of(st.none(), st.text(max_size=40), st.from_regex(r"\A[a-z]{1,5}=[a-z0-9]{1,5}\Z")))
def test_off_any_parent_passes_through_as_the_api_would(tracing_off, traceparent, tracestate):
    parent = {"traceparent": traceparent, "tracestate": tracestate}
    assert seen_inside(lambda p: tracing.span("handle Probe", p), parent) == seen_inside(api_span, parent)


def test_off_an_exception_leaves_the_context_as_it_was(tracing_off):
    with pytest.raises(RuntimeError), tracing.span("handle Probe", PARENTS[1]):
        raise RuntimeError("the handler failed")
    assert tracing.current() == {} and tracing.trace_id() is None
