"""A minimal OTLP/HTTP trace receiver on loopback, for tests and the demo.

It accepts ``POST /v1/traces`` (protobuf, optionally gzip, whole or chunked), decodes the spans
with the official ``opentelemetry-proto`` messages, and keeps them with the request headers it
came with. It stands in for a collector or for Portkey's OTLP endpoint (which checks ``x-portkey-api-key``).
"""

from __future__ import annotations

import gzip
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from .loopback import LoopbackHandler, LoopbackServer, LoopbackService


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as it arrived over OTLP: ids as lowercase hex, attributes as Python values."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    resource: dict[str, Any]

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


@dataclass(frozen=True)
class ReceivedExport:
    """One export request: its path, headers (lowercased) and spans."""

    path: str
    headers: dict[str, str]
    spans: list[ReceivedSpan]


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in any_value.kvlist_value.values}
    return getattr(any_value, kind)


def _attributes(key_values: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in key_values}


def decode_spans(payload: bytes) -> list[ReceivedSpan]:
    """The spans of an OTLP ``ExportTraceServiceRequest`` in protobuf form."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(payload)
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        kind=span.kind,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes=_attributes(span.attributes),
                        resource=resource,
                    )
                )
    return spans


def relay(url: str, payload: bytes) -> bool:
    """POST an OTLP/protobuf export to ``url``, best effort: whether it was taken."""
    request = urllib.request.Request(
        url, data=payload, headers={"content-type": "application/x-protobuf"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5):
            return True
    except OSError:
        return False


def answer(handler: LoopbackHandler, status: int, body: bytes) -> None:
    """Answer an OTLP/HTTP export with ``status`` and a protobuf ``body`` (empty unless 200)."""
    handler.reply(status, body if status == 200 else b"", "application/x-protobuf")


class OtlpReceiver(LoopbackService):
    """``with OtlpReceiver() as receiver: ... receiver.spans`` (``endpoint`` is the base URL).

    ``path`` is where exports are accepted (Portkey's is ``/v1/otel/v1/traces``); with
    ``required_headers`` an export missing one of them is answered 401 and kept in ``rejected``;
    with ``forward_to`` (an OTLP/HTTP base URL) each accepted export is relayed there too.
    """

    thread_name = "otlp-receiver"

    def __init__(
        self,
        required_headers: dict[str, str] | None = None,
        path: str = "/v1/traces",
        forward_to: str | None = None,
    ) -> None:
        self.exports: list[ReceivedExport] = []
        self.rejected: list[ReceivedExport] = []
        self._lock = threading.Lock()
        self._required = {k.lower(): v for k, v in (required_headers or {}).items()}
        self.path = path
        self.forward_to = forward_to
        self.forward_failures = 0
        self.refused = 0  # exports answered with a scripted failure (see :meth:`fail_next`)
        self._fail_next: list[int] = []
        receiver = self

        class Handler(LoopbackHandler):
            def do_POST(self) -> None:
                body = self.request_body()  # whole or chunked (OpenTelemetry for Node sends chunks)
                if body is None:
                    return
                if (self.headers.get("content-encoding") or "").lower() == "gzip":
                    body = gzip.decompress(body)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    failure = receiver._fail_next.pop(0) if receiver._fail_next else None
                    receiver.refused += failure is not None
                if failure is not None:
                    self.reply(failure)
                    return
                ok_path = self.path == receiver.path
                ok_headers = all(headers.get(k) == v for k, v in receiver._required.items())
                try:
                    spans = decode_spans(body) if ok_path else []
                except Exception:
                    spans, ok_path = [], False
                export = ReceivedExport(self.path, headers, spans)
                with receiver._lock:
                    (receiver.exports if ok_path and ok_headers else receiver.rejected).append(export)
                if ok_path and ok_headers and receiver.forward_to:
                    receiver._forward(body)
                status = 200 if ok_path and ok_headers else (401 if ok_path else 404)
                answer(self, status, ExportTraceServiceResponse().SerializeToString())

        self._server = LoopbackServer(Handler)

    def _forward(self, payload: bytes) -> None:
        """Relay an accepted export to ``<forward_to>/v1/traces`` (best effort, failures counted)."""
        if not relay(f"{self.forward_to}/v1/traces", payload):
            self.forward_failures += 1

    def fail_next(self, count: int = 1, status: int = 503) -> None:
        """Answer the next ``count`` exports with ``status`` (a retryable outage by default)."""
        with self._lock:
            self._fail_next.extend([status] * count)

    @property
    def endpoint(self) -> str:
        """Base URL for ``OTEL_EXPORTER_OTLP_ENDPOINT`` (spans go to ``<endpoint>/v1/traces``)."""
        return f"http://127.0.0.1:{self._server.port}"

    @property
    def spans(self) -> list[ReceivedSpan]:
        """Every accepted span so far."""
        with self._lock:
            return [span for export in self.exports for span in export.spans]

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> list[ReceivedSpan]:
        """Wait until ``predicate(spans)`` is true; return the spans either way."""
        deadline = time.monotonic() + timeout
        while not predicate(self.spans) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.spans
