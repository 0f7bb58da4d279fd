"""Traces across processes: a gateway and a router (``isa-broker gateway`` and ``isa-broker
router``) export their spans over OTLP/HTTP to a collector the test runs; one release notice
makes one connected trace from the POST through the outbox, Kafka and the router to the
webhook attempt, the receiver gets the attempt's ``traceparent`` and the CloudEvents
distributed-tracing extension, and no span names the person."""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from services.demo.receivers import Receivers
from tests.factories import identifying, release_notice
from tests.parts import CLI, agency

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class ExportedSpan:
    service: str
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    attributes: dict[str, Any]


def _value(v: AnyValue) -> Any:
    field = v.WhichOneof("value")
    return getattr(v, field) if field else None


class Collector:
    """An OTLP/HTTP trace receiver (``POST /v1/traces``, protobuf): it decodes each export
    request with OpenTelemetry's own protobuf classes and keeps the spans."""

    def __init__(self) -> None:
        self.spans: list[ExportedSpan] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                collector.add(ExportTraceServiceRequest.FromString(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, request: ExportTraceServiceRequest) -> None:
        with self.lock:
            for rs in request.resource_spans:
                resource = {a.key: _value(a.value) for a in rs.resource.attributes}
                for scope in rs.scope_spans:
                    for s in scope.spans:
                        self.spans.append(
                            ExportedSpan(
                                service=resource.get("service.name", ""),
                                trace_id=s.trace_id.hex(),
                                span_id=s.span_id.hex(),
                                parent_id=s.parent_span_id.hex(),
                                name=s.name,
                                kind=s.kind,
                                attributes={a.key: _value(a.value) for a in s.attributes},
                            )
                        )

    def snapshot(self) -> list[ExportedSpan]:
        with self.lock:
            return list(self.spans)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.close()


async def _wait_http(url: str) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(400):
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never answered")


async def test_one_trace_from_post_to_webhook_across_processes(
    env: dict[str, str],
    processes: list[subprocess.Popen[bytes]],
    receivers: Receivers,
    collector: Collector,
    tmp_path: Path,
) -> None:
    traced = {
        **env,
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    base = env["ISA_BROKER_PUBLIC_URL"]
    processes.append(subprocess.Popen([*CLI, "gateway"], env=traced))  # noqa: S603
    await _wait_http(base + "/livez")
    processes.append(subprocess.Popen([*CLI, "router"], env=traced))  # noqa: S603
    prison, vawg = agency(env, "hmp-northgate"), agency(env, "eastborough-vawg")
    await vawg.subscribe(["release-notice"], receivers.url("eastborough-vawg"))
    notice = release_notice()
    r = await prison.publish("release-notice", notice)
    assert r.status_code == 202, r.text
    message_id = r.json()["id"]
    assert await receivers.wait_for({"eastborough-vawg"}, timeout=60)
    await prison.aclose()
    await vawg.aclose()
    [request] = receivers.for_party("eastborough-vawg")

    # the POST's server span names the message it accepted; its trace is the message's
    def trace_of_message() -> list[ExportedSpan]:
        spans = collector.snapshot()
        posts = [s for s in spans if s.attributes.get("isa.message.id") == message_id]
        trace_ids = {s.trace_id for s in posts}
        return [s for s in spans if s.trace_id in trace_ids]

    spans: list[ExportedSpan] = []
    for _ in range(200):
        spans = trace_of_message()
        if any(s.name.startswith("deliver ") for s in spans):
            break
        await asyncio.sleep(0.05)
    assert {s.trace_id for s in spans} and len({s.trace_id for s in spans}) == 1, spans
    by_id = {s.span_id: s for s in spans}

    def ancestors(span: ExportedSpan) -> list[ExportedSpan]:
        chain = []
        while span.parent_id:
            span = by_id[span.parent_id]  # a missing parent: the trace is broken
            chain.append(span)
        return chain

    [post] = [s for s in spans if s.name == "POST /v1/messages/release-notice"]
    [publish] = [s for s in spans if s.name.endswith(".release-notice.v1 publish")]
    [process] = [s for s in spans if s.name.endswith(".release-notice.v1 process")]
    [deliver] = [s for s in spans if s.name == "deliver release-notice"]
    # one connected trace: POST -> publish (outbox) -> process (Kafka headers) -> deliver
    assert post.parent_id == ""
    assert ancestors(deliver)[0] == process
    assert ancestors(process)[0] == publish
    assert ancestors(publish)[-1] == post
    # across two processes: the gateway's spans, then the router's
    assert (post.service, publish.service) == ("isa-broker-gateway", "isa-broker-gateway")
    assert (process.service, deliver.service) == ("isa-broker-router", "isa-broker-router")
    assert post.attributes["http.route"] == "/v1/messages/release-notice"
    assert post.attributes["http.response.status_code"] == 202
    [intake] = [s for s in ancestors(publish) if "isa.sender" in s.attributes]
    assert intake.attributes["isa.sender"] == "hmp-northgate"
    assert intake.attributes["isa.intake.outcome"] == "accepted"
    assert process.attributes["isa.route.outcome"] == "routed"
    assert deliver.attributes["isa.recipient"] == "eastborough-vawg"
    assert deliver.attributes["isa.delivery.outcome"] == "delivered"
    assert deliver.attributes["http.response.status_code"] == 204  # the receivers answer
    # the probes are not traced
    assert not [s for s in collector.snapshot() if "/livez" in s.name]

    # the receiver can continue the trace: the attempt's span in the HTTP header, the routing's
    # in the CloudEvent (distributed tracing extension)
    header = request.headers["traceparent"].split("-")
    assert header[1:3] == [deliver.trace_id, deliver.span_id]
    event = json.loads(request.body)
    assert event["traceparent"].split("-")[1:3] == [process.trace_id, process.span_id]

    # no span, of any trace, names the person
    exported = json.dumps(
        [[s.name, s.attributes] for s in collector.snapshot()], default=str, ensure_ascii=False
    )
    for value in identifying(notice):
        assert value not in exported
