"""Trace and span ids from the current OpenTelemetry span, with no cost when OpenTelemetry is absent."""

from __future__ import annotations

import re

import pytest
from conftest import complete_builder, run_python, track
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import sentinel_durable as sentinel
from sentinel_durable.otel import current_span_ids, resolve_span_ids
from sentinel_durable.testing.pytest_plugin import ReadEvents

TRACE_ID = re.compile(r"[0-9a-f]{32}")
SPAN_ID = re.compile(r"[0-9a-f]{16}")

#: track() and EventBuilder.build() fill the ids once Config grows the otel_trace_ids option.
needs_wiring = pytest.mark.skipif(
    "otel_trace_ids" not in sentinel.Config.model_fields, reason="Client and EventBuilder do not fill span ids yet"
)


@pytest.fixture(scope="module")
def tracer() -> trace.Tracer:
    return TracerProvider().get_tracer("tests")  # not the global provider: nothing leaks into other tests


def ids_of(span: trace.Span) -> tuple[str, str]:
    context = span.get_span_context()
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def test_current_span_ids_are_the_current_spans_as_w3c_hex(tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span("llm call") as span:
        ids = current_span_ids()
    assert ids == ids_of(span)
    assert ids is not None
    assert TRACE_ID.fullmatch(ids[0])
    assert SPAN_ID.fullmatch(ids[1])


def test_current_span_ids_follow_the_innermost_span(tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span("request") as outer:
        with tracer.start_as_current_span("llm call") as inner:
            assert current_span_ids() == ids_of(inner)
        assert current_span_ids() == ids_of(outer)
    assert ids_of(inner)[0] == ids_of(outer)[0]


def test_no_span_ids_outside_a_span() -> None:
    assert current_span_ids() is None


def test_no_span_ids_for_an_invalid_span_context() -> None:
    with trace.use_span(trace.INVALID_SPAN):
        assert current_span_ids() is None


def test_resolve_span_ids_keeps_what_the_caller_set(tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span("llm call") as span:
        assert resolve_span_ids(None, None) == ids_of(span)
        assert resolve_span_ids("caller-trace", "caller-span") == ("caller-trace", "caller-span")
        assert resolve_span_ids("caller-trace", None) == ("caller-trace", None)  # never mixed with the span's
    assert resolve_span_ids(None, None) == (None, None)


# --- no cost without OpenTelemetry ----------------------------------------------------------------


def test_importing_and_tracking_does_not_import_opentelemetry() -> None:
    result = run_python(
        """
        import sys, tempfile
        import sentinel_durable
        from sentinel_durable.otel import current_span_ids
        client = sentinel_durable.Client(brokers=["127.0.0.1:1"], topic="t", spool_dir=tempfile.mkdtemp())
        client.track(service="s", model="m", prompt="p", response="r", latency_ms=1.0)
        client.close(timeout=0)
        print(current_span_ids(), sorted(name for name in sys.modules if name.startswith("opentelemetry")))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "None []"


def test_works_when_opentelemetry_is_not_installed() -> None:
    result = run_python(
        """
        import sys, tempfile
        sys.modules["opentelemetry"] = None  # as if it were not installed: importing it raises ImportError
        import sentinel_durable
        from sentinel_durable.otel import current_span_ids
        client = sentinel_durable.Client(brokers=["127.0.0.1:1"], topic="t", spool_dir=tempfile.mkdtemp())
        client.track(service="s", model="m", prompt="p", response="r", latency_ms=1.0)
        client.close(timeout=0)
        print(current_span_ids())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "None"


# --- on the record (the client and the builder) ---------------------------------------------------


@needs_wiring
@pytest.mark.broker
def test_a_spans_ids_appear_on_the_record(
    tracer: trace.Tracer, sentinel_client: sentinel.Client, sentinel_events: ReadEvents
) -> None:
    with tracer.start_as_current_span("llm call") as span:
        track(sentinel_client)
    track(sentinel_client)  # outside any span
    inside, outside = sentinel_events(expected=2)
    assert (inside.trace_id, inside.span_id) == ids_of(span)
    assert (outside.trace_id, outside.span_id) == (None, None)


@needs_wiring
@pytest.mark.broker
def test_ids_set_by_the_caller_win_over_the_span(
    tracer: trace.Tracer, sentinel_client: sentinel.Client, sentinel_events: ReadEvents
) -> None:
    with tracer.start_as_current_span("llm call"):
        track(sentinel_client, trace_id="4bf92f3577b34da6a3ce929d0e0e4736", span_id="00f067aa0ba902b7")
    (event,) = sentinel_events(expected=1)
    assert (event.trace_id, event.span_id) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")


@needs_wiring
@pytest.mark.broker
@pytest.mark.parametrize("sentinel_client_options", [{"otel_trace_ids": False}])
def test_otel_trace_ids_false_leaves_the_ids_unset(
    tracer: trace.Tracer, sentinel_client: sentinel.Client, sentinel_events: ReadEvents
) -> None:
    with tracer.start_as_current_span("llm call"):
        track(sentinel_client)
    (event,) = sentinel_events(expected=1)
    assert (event.trace_id, event.span_id) == (None, None)


@needs_wiring
def test_the_builder_fills_the_ids_of_the_current_span(tracer: trace.Tracer) -> None:
    builder = complete_builder()
    with tracer.start_as_current_span("llm call") as span:
        event = builder.build()
    assert (event.trace_id, event.span_id) == ids_of(span)
    assert builder.build().trace_id is None  # outside the span
