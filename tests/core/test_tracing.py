"""services.core.tracing without an exporter: when traces are off nothing is carried, and when
on, a ``traceparent`` is read and written strictly (W3C Trace Context s3.2). The whole path
across processes, with a real OTLP export, is tests/e2e/test_traces.py."""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from services.core import tracing
from services.core.logs import JsonLines

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN_ID = 0x00F067AA0BA902B7
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _span() -> NonRecordingSpan:
    return NonRecordingSpan(
        SpanContext(TRACE_ID, SPAN_ID, is_remote=True, trace_flags=TraceFlags(1))
    )


@pytest.fixture
def on(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if a tracer provider were installed (the global one is left alone: setting it
    would trace every later test of the session)."""
    monkeypatch.setattr(tracing, "_enabled", True)


def test_off_unless_an_endpoint_is_configured() -> None:
    assert tracing.configure("isa-broker", environ={}) is False
    disabled = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"}
    assert tracing.configure("isa-broker", environ=disabled) is False
    assert not tracing.enabled()


def test_off_nothing_is_carried() -> None:
    with trace.use_span(_span()):
        assert tracing.traceparent() is None
        assert tracing.headers_with_trace([("ce_id", b"m1")]) == [("ce_id", b"m1")]
    assert tracing.context_of(TRACEPARENT) is None


@pytest.mark.usefixtures("on")
def test_the_current_span_is_written_as_traceparent() -> None:
    with trace.use_span(_span()):
        assert tracing.traceparent() == TRACEPARENT
        assert tracing.headers_with_trace([("ce_id", b"m1")]) == [
            ("ce_id", b"m1"),
            ("traceparent", TRACEPARENT.encode()),
        ]


@pytest.mark.usefixtures("on")
def test_a_stored_or_received_traceparent_is_continued() -> None:
    for carried in (TRACEPARENT, TRACEPARENT.encode()):
        context = tracing.context_of(carried)
        assert context is not None
        parent = trace.get_current_span(context).get_span_context()
        assert (parent.trace_id, parent.span_id) == (TRACE_ID, SPAN_ID)
    headers = [("ce_id", b"m1"), ("traceparent", TRACEPARENT.encode())]
    found = tracing.from_headers(headers)
    assert found is not None
    assert trace.get_current_span(found).get_span_context().trace_id == TRACE_ID


@pytest.mark.usefixtures("on")
@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01; drop table",
        b"\xff\xfe",
    ],
)
def test_a_malformed_traceparent_is_ignored(value: str | bytes | None) -> None:
    assert tracing.context_of(value) is None


def test_json_log_lines_carry_the_trace() -> None:
    record = logging.LogRecord("isa_broker.x", logging.INFO, __file__, 1, "routed", None, None)
    assert "trace_id" not in json.loads(JsonLines().format(record))
    with trace.use_span(_span()):
        line = json.loads(JsonLines().format(record))
    assert line["trace_id"] == f"{TRACE_ID:032x}"
    assert line["span_id"] == f"{SPAN_ID:016x}"
