"""A hostile gateway, through every client, with the real SDK and the real OTLP/HTTP exporters.

The gateway here is the tests' own loopback server answering ``x-portkey-*`` headers as raw bytes:
C0 controls, NUL, DEL, ANSI escapes, C1 controls (as latin-1 and as UTF-8), invalid UTF-8 (which
aiohttp hands over as lone surrogates) and a retry count of ``+99999``. The app's spans and the
bridge's metrics go through a real ``MeterProvider`` with a ``PeriodicExportingMetricReader`` and
the real OTLP/HTTP exporters to an OTLP receiver of the test's own, for several export intervals
(each re-encodes every series: what made the encoder log an error at every export before).

What must hold: no OpenTelemetry logger says ERROR, the bridge's guard is never hit, what the
receiver got holds no control character (it decodes every export and looks at every string), the
hostile values are dropped whole while the clean one in the same answer arrives, and the retries
counter stays at 0.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from otel_portkey import PortkeyInstrumentor
from otel_portkey._peers.loopback import LoopbackHandler, LoopbackServer, LoopbackService

from clients_all import CLIENTS

pytestmark = pytest.mark.integration

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
CALLS = 3
EXPORT_INTERVAL_MS = 200
EXPORTS = 5  # metric exports to wait for after the calls: several intervals, each encoding every series

# (header, raw value bytes). NUL makes aiohttp and httpx refuse the whole answer (the app then gets an
# exception without the bridge too), so it goes only to the clients that take it (http.client's).
HOSTILE_ANSWER = [
    (b"x-portkey-provider", b"op\x01en\x7fai\x1b[31mRED\x1b[0m\xff"),  # C0, DEL, an ANSI colour, not UTF-8
    (b"x-portkey-trace-id", b"\xff\xfeabc\xed\xa0\x80"),  # invalid UTF-8 (an encoded surrogate among it)
    (b"x-portkey-last-used-option-index", b"config.targets[1]\xc2\x9b2J\x85"),  # C1 CSI as UTF-8, NEL
    (b"x-portkey-retry-attempt-count", b"+99999"),
    (b"x-portkey-cache-status", b"MISS"),  # the one clean value: proof that the answer was read
]
WITH_NUL = {"requests", "urllib", "urllib3"}
NUL_ANSWER = (b"x-portkey-provider", b"\x00op\x01en\x7fai\x1b[31mRED")


class HostileGateway(LoopbackService):
    """Answers every POST with a chat completion and ``answer`` as raw header bytes, then closes."""

    thread_name = "hostile-gateway"

    def __init__(self, answer: list[tuple[bytes, bytes]]) -> None:
        body = json.dumps(
            {
                "id": "chatcmpl-hostile",
                "object": "chat.completion",
                "model": "gpt-4o",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
                ],
            }
        ).encode()
        head = [b"HTTP/1.1 200 OK", b"content-type: application/json", b"content-length: %d" % len(body)]
        head += [b"connection: close", *(name + b": " + value for name, value in answer)]
        response = b"\r\n".join(head) + b"\r\n\r\n" + body
        self.answered = 0
        gateway = self

        class Handler(LoopbackHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                gateway.answered += 1
                self.wfile.write(response)  # bytes as they are: no http.server encoding of the headers
                self.close_connection = True

        self._server = LoopbackServer(Handler)


def _strings(message: Any) -> Iterator[str]:
    """Every string field anywhere in a protobuf message (attribute keys and values, names, ...)."""
    for field, value in message.ListFields():
        repeated = getattr(field, "is_repeated", None)  # protobuf 6+; ``label`` before
        if repeated is None:
            repeated = field.label == field.LABEL_REPEATED
        values = value if repeated else [value]
        for item in values:
            if isinstance(item, str):
                yield item
            elif hasattr(item, "ListFields"):
                yield from _strings(item)


class OtlpSink(LoopbackService):
    """An OTLP/HTTP receiver for traces and metrics: decodes each export with the official messages.
    (``otel_portkey.testing.OtlpReceiver`` takes traces only.)"""

    thread_name = "otlp-sink"

    def __init__(self) -> None:
        self.metrics: list[ExportMetricsServiceRequest] = []
        self.traces: list[ExportTraceServiceRequest] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(LoopbackHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if (self.headers.get("content-encoding") or "").lower() == "gzip":
                    body = gzip.decompress(body)
                kind = {"/v1/metrics": ExportMetricsServiceRequest, "/v1/traces": ExportTraceServiceRequest}
                message_class = kind.get(self.path)
                if message_class is None:
                    self.reply(404)
                    return
                message = message_class()
                message.ParseFromString(body)
                with sink._lock:
                    (sink.metrics if self.path == "/v1/metrics" else sink.traces).append(message)
                self.reply(200, b"", "application/x-protobuf")

        self._server = LoopbackServer(Handler)

    def metric_exports(self) -> list[ExportMetricsServiceRequest]:
        with self._lock:
            return list(self.metrics)

    def trace_exports(self) -> list[ExportTraceServiceRequest]:
        with self._lock:
            return list(self.traces)


def points(export: ExportMetricsServiceRequest, name: str) -> list[Any]:
    return [
        point
        for resource in export.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in (*metric.histogram.data_points, *metric.sum.data_points)
    ]


def attributes(key_values: Any) -> dict[str, Any]:
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value") or "string_value") for kv in key_values}


def wait_until(predicate: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize("name", list(CLIENTS))
def test_a_hostile_gateway_reaches_no_attribute_and_no_exporter_complains(name, caplog):
    instrumentor_class, call = CLIENTS[name]
    answer = [NUL_ANSWER if h == NUL_ANSWER[0] and name in WITH_NUL else (h, v) for h, v in HOSTILE_ANSWER]
    caplog.set_level(logging.WARNING)
    with HostileGateway(answer) as gateway, OtlpSink() as sink:
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(f"{sink.url}/v1/traces")))
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(f"{sink.url}/v1/metrics"), export_interval_millis=EXPORT_INTERVAL_MS
        )
        meter_provider = MeterProvider(metric_readers=[reader])
        try:
            PortkeyInstrumentor().instrument(
                gateway_urls=[gateway.url], tracer_provider=tracer_provider, meter_provider=meter_provider
            )
            instrumentor_class().instrument(tracer_provider=tracer_provider)
            with tracer_provider.get_tracer("app").start_as_current_span("chat gpt-4o"):
                for _ in range(CALLS):
                    assert call(f"{gateway.url}/v1/chat/completions", {}, CHAT) == 200
            assert gateway.answered == CALLS
            after_calls = len(sink.metric_exports())
            assert wait_until(lambda: len(sink.metric_exports()) >= after_calls + EXPORTS), "too few exports"
        finally:
            meter_provider.shutdown()
            tracer_provider.shutdown()

    errors = [r for r in caplog.records if r.name.startswith("opentelemetry") and r.levelno >= logging.ERROR]
    assert errors == [], [(r.name, r.getMessage()) for r in errors]
    guards = [r for r in caplog.records if r.name.startswith("otel_portkey") and r.levelno >= logging.WARNING]
    assert guards == [], [r.getMessage() for r in guards]

    metric_exports = sink.metric_exports()
    received = [s for export in (*metric_exports, *sink.trace_exports()) for s in _strings(export)]
    assert received
    assert all(s.isprintable() for s in received), [s for s in received if not s.isprintable()]

    exports_with_points = [e for e in metric_exports if points(e, "portkey.gateway.request.duration")]
    assert len(exports_with_points) >= EXPORTS, "each of several exports encoded the call's series"
    [duration] = points(exports_with_points[-1], "portkey.gateway.request.duration")
    assert duration.count == CALLS
    assert attributes(duration.attributes) == {
        "portkey.cache.status": "MISS",
        "portkey.fallback": False,
        "http.response.status_code": 200,
        "server.address": "127.0.0.1",
    }, "hostile provider and option index dropped whole; the clean cache status kept"
    retries = points(exports_with_points[-1], "portkey.gateway.retries")
    assert [point.as_int for point in retries] == [0], "+99999 added nothing"

    spans = [
        span
        for export in sink.trace_exports()
        for resource in export.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
        if span.kind == SpanKind.CLIENT.value + 1  # OTLP numbers kinds from 1 (INTERNAL)
    ]
    assert len(spans) == CALLS
    for span in spans:
        portkey = {k: v for k, v in attributes(span.attributes).items() if k.startswith("portkey.")}
        assert portkey["portkey.cache.status"] == "MISS"
        assert "portkey.provider" not in portkey
        assert "portkey.last_used_option_index" not in portkey
        assert "portkey.retry.attempt_count" not in portkey
        assert portkey["portkey.trace_id"] == span.trace_id.hex(), "the hostile echo left the id sent"
