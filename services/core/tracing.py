"""Traces with OpenTelemetry: one trace from an agency's POST to each delivery attempt,
across the gateway and router processes. Off unless an OTLP endpoint is configured.

A message's trace is carried in three hops, none of which keeps a span open in memory:

1. **POST → outbox.** The gateway's request span is the current span when intake stores the
   message; its W3C ``traceparent`` is stored with the message (``messages.trace_context``),
   because the outbox relay publishes later, in another task (or after a restart).
2. **Outbox → Kafka → router.** The relay's publish span is a child of the stored context, and
   its ``traceparent`` travels in the Kafka record's headers (W3C Trace Context, in clear beside
   the encrypted value: it names no one). The router's routing span continues from the
   record's headers, and stores its own ``traceparent`` on each delivery row
   (``deliveries.trace_context``), since the dispatcher attempts a delivery later, perhaps
   from another router or after hours of retries.
3. **Delivery row → attempt.** Each attempt is a span under the routing span. A webhook POST
   carries the attempt's ``traceparent`` header, and the delivered CloudEvent carries the
   CloudEvents distributed-tracing extension (``traceparent``, the routing span) so that a
   receiver can join the trace; a record on an agency topic carries the same header.

Span attributes are ids, parties, message types, channels, outcomes and HTTP status codes:
never a payload, a person's identifier or a URL's query (docs/operations.md, Traces).

Configuration is OpenTelemetry's own environment variables, read by its SDK, so that an
operator sets them as for any other service: tracing is on when
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (and
``OTEL_SDK_DISABLED`` is not ``true``); spans are exported over OTLP/HTTP (protobuf) in
batches (``OTEL_BSP_*``), sampled by ``OTEL_TRACES_SAMPLER`` (default: parent-based, always
on), named by ``OTEL_SERVICE_NAME`` (default: ``isa-broker-gateway``, ``isa-broker-router`` or
``isa-broker`` for a process running both)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger("isa_broker.tracing")

#: the instrumentation scope of every span the broker makes
TRACER = trace.get_tracer("isa_broker")

_PROPAGATOR = TraceContextTextMapPropagator()
#: W3C Trace Context s3.2: version 00, 32 hex trace id, 16 hex parent id, 2 hex flags
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
#: the header (Kafka record and HTTP) and the CloudEvents extension attribute
TRACEPARENT = "traceparent"

_enabled = False

__all__ = [
    "TRACEPARENT",
    "Span",
    "SpanKind",
    "annotate",
    "configure",
    "context_of",
    "enabled",
    "failed",
    "headers_with_trace",
    "span",
    "traceparent",
]


def enabled() -> bool:
    """Whether this process exports spans (:func:`configure` found an endpoint)."""
    return _enabled


def configure(service: str, environ: Mapping[str, str] | None = None) -> bool:
    """Export spans over OTLP/HTTP when the environment names an endpoint; otherwise leave
    OpenTelemetry's no-op tracer in place, so that every span below costs next to nothing.
    Once per process (a tracer provider cannot be replaced); returns whether tracing is on."""
    global _enabled
    env = os.environ if environ is None else environ
    if _enabled:
        return True
    wanted = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not wanted or env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    # imported only when tracing is on: the SDK and the exporter are not needed otherwise
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    try:
        version = metadata.version("isa-broker")
    except metadata.PackageNotFoundError:  # run from a checkout that was not installed
        version = "unknown"
    attributes: dict[str, Any] = {SERVICE_VERSION: version}
    if not env.get("OTEL_SERVICE_NAME"):
        attributes[SERVICE_NAME] = service
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _enabled = True
    log.info("traces exported over OTLP/HTTP as %s", env.get("OTEL_SERVICE_NAME") or service)
    return True


def shutdown() -> None:
    """Export the spans still queued (a process that stops calls this)."""
    provider = trace.get_tracer_provider()
    flush = getattr(provider, "force_flush", None)
    if _enabled and flush is not None:
        flush(5000)


# -- carrying a context ---------------------------------------------------------------------


def traceparent() -> str | None:
    """The current span's W3C ``traceparent``, or None when no span is being recorded (tracing
    off, or a span not sampled and without a sampled parent)."""
    if not _enabled:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    value = carrier.get(TRACEPARENT)
    return value if value and _TRACEPARENT.match(value) else None


def context_of(value: str | bytes | None) -> Context | None:
    """The context a stored or received ``traceparent`` continues; None for none, or for a
    value that is not a well-formed ``traceparent`` (it is ignored, never an error)."""
    if not _enabled or not value:
        return None
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    if not _TRACEPARENT.match(text):
        return None
    return _PROPAGATOR.extract({TRACEPARENT: text})


def from_headers(headers: Iterable[tuple[str, bytes]]) -> Context | None:
    """The context in a Kafka record's headers (the ``traceparent`` header), if any."""
    for name, value in headers:
        if name == TRACEPARENT:
            return context_of(value)
    return None


def headers_with_trace(headers: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """``headers`` of a Kafka record, with the current span's ``traceparent`` added."""
    value = traceparent()
    return [*headers, (TRACEPARENT, value.encode())] if value else headers


# -- spans ----------------------------------------------------------------------------------


@contextmanager
def span(
    name: str,
    *,
    parent: Context | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int | bool | None] | None = None,
) -> Iterator[Span]:
    """A span named ``name``, current within the block, under ``parent`` (a stored or
    received context) or else the current span. ``attributes`` must name no person: ids,
    parties, types and outcomes only; a None value is left out. An exception escaping the
    block marks the span as an error, by the exception's type only (its message might
    quote input). With traces off, the block runs under a span that records nothing, and
    nothing is made."""
    if not _enabled:
        yield trace.INVALID_SPAN
        return
    attrs = {k: v for k, v in (attributes or {}).items() if v is not None}
    with TRACER.start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes=attrs,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as e:
            if not isinstance(e, GeneratorExit):
                failed(current, type(e).__name__)
            raise


def annotate(attributes: Mapping[str, str | int | bool | None]) -> None:
    """Add ``attributes`` (ids, parties, types, outcomes; a None value is left out) to the
    current span, if one is being recorded."""
    if _enabled:
        current = trace.get_current_span()
        if current.is_recording():
            current.set_attributes({k: v for k, v in attributes.items() if v is not None})


def failed(current: Span, reason: str) -> None:
    """Mark ``current`` as failed, with a reason that names no person (an error's kind, an
    HTTP status)."""
    current.set_status(Status(StatusCode.ERROR, reason))
