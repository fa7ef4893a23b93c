"""What an inbound ``traceparent`` lets a caller choose, and ``OTEL_PORTKEY_INBOUND_TRACE_CONTEXT=link``
(issue 29, item 2).

By default (OTel's usual behaviour) a service continues its caller's trace: a caller that sends
``traceparent: 00-<victim's trace id>-...`` chooses the Portkey trace the service's gateway calls land
in and the trace ``record_feedback`` scores. With ``link``, each inbound request starts a new trace
whose root span links to the caller's context: the forged id reaches no gateway and no feedback.

Integration: a real web framework (FastAPI on uvicorn, tests/edge_service.py) under
``opentelemetry-instrument`` with the bridge, the real OSS gateway behind a recording hop, a stand-in
for Portkey's feedback endpoint and an OTLP receiver that keeps every span's links. Unit: the
propagator and processor in process, with the SDK.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from opentelemetry import baggage, context, propagate, trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from otel_portkey import PortkeyInstrumentor
from otel_portkey._peers.loopback import LoopbackHandler, LoopbackServer
from otel_portkey.config import PortkeySettings
from otel_portkey.testing import RecordingProxy, ScriptedModelServer, free_port

from instrumented import BIN, ROOT, otel_env

FORGED_TRACE_ID = "deadbeefdeadbeefdeadbeefdeadbeef"
FORGED_SPAN_ID = "00f067aa0ba902b7"
FORGED = f"00-{FORGED_TRACE_ID}-{FORGED_SPAN_ID}-01"
API_KEY = "pk-edge-test"


class Peer:
    """Portkey's feedback endpoint and an OTLP/HTTP receiver in one loopback server: keeps each
    feedback body and each exported span with its links."""

    def __init__(self) -> None:
        self.feedback: list[dict[str, Any]] = []
        self.spans: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        peer = self

        class Handler(LoopbackHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path == "/v1/traces":
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    with peer._lock:
                        peer.spans += [
                            {
                                "name": span.name,
                                "kind": span.kind,
                                "trace_id": span.trace_id.hex(),
                                "parent": span.parent_span_id.hex(),
                                "links": [(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                            }
                            for resource in request.resource_spans
                            for scope in resource.scope_spans
                            for span in scope.spans
                        ]
                    self.reply(
                        200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf"
                    )
                elif self.path == "/v1/feedback" and self.headers.get("x-portkey-api-key") == API_KEY:
                    with peer._lock:
                        peer.feedback.append(json.loads(body))
                    self.reply(
                        200, b'{"status": "success", "message": "feedback recorded"}', "application/json"
                    )
                else:
                    self.reply(404)

        self._server = LoopbackServer(Handler)
        self._server.start("edge-peer")
        self.url = f"http://127.0.0.1:{self._server.port}"

    def server_span(self, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = [s for s in self.spans if s["name"] == "POST /ask"]
            if found or time.monotonic() > deadline:
                assert len(found) == 1, self.spans
                return found[0]
            time.sleep(0.05)

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture
def peer() -> Iterator[Peer]:
    server = Peer()
    yield server
    server.stop()


@contextmanager
def edge_service(peer: Peer, hop: RecordingProxy, model: ScriptedModelServer, **env: str) -> Iterator[str]:
    """tests/edge_service.py under opentelemetry-instrument on a free port; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [
            str(BIN / "opentelemetry-instrument"),
            sys.executable,
            str(ROOT / "tests" / "edge_service.py"),
            str(port),
        ],
        env=otel_env(
            peer.url,
            OTEL_SERVICE_NAME="edge-service",
            GATEWAY_URL=hop.url,
            MODEL_URL=model.base_url,
            PORTKEY_API_KEY=API_KEY,
            OTEL_PORTKEY_FEEDBACK_BASE_URL=f"{peer.url}/v1",
            **env,
        ),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/openapi.json", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    raise RuntimeError(f"the service did not start: {process.communicate()[0]}") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def outside_call(url: str, headers: dict[str, str]) -> dict[str, Any]:
    """A request from outside (no OTel in this client): only what an attacker would send."""
    request = urllib.request.Request(f"{url}/ask", method="POST", data=b"", headers=headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        answer: dict[str, Any] = json.load(response)
        return answer


def traceparent_trace_id(value: str) -> str:
    return value.split("-")[1]


@pytest.mark.integration
def test_by_default_an_inbound_traceparent_chooses_the_portkey_trace_and_the_feedbacks(
    peer: Peer, hop: RecordingProxy, model: ScriptedModelServer
) -> None:
    """The attack, as OTel's usual behaviour lets it through (documented in SECURITY.md)."""
    with edge_service(peer, hop, model) as url:
        answer = outside_call(url, {"traceparent": FORGED})
        server = peer.server_span()
    assert answer["status"] == 200
    assert answer["feedback"] == "success"
    assert answer["trace_id"] == FORGED_TRACE_ID
    (received,) = hop.requests
    assert received.headers["x-portkey-trace-id"] == FORGED_TRACE_ID
    assert [body["trace_id"] for body in peer.feedback] == [FORGED_TRACE_ID]
    assert (server["trace_id"], server["parent"], server["links"]) == (FORGED_TRACE_ID, FORGED_SPAN_ID, [])


@pytest.mark.integration
def test_with_link_a_forged_traceparent_reaches_no_gateway_and_no_feedback(
    peer: Peer, hop: RecordingProxy, model: ScriptedModelServer
) -> None:
    with edge_service(peer, hop, model, OTEL_PORTKEY_INBOUND_TRACE_CONTEXT="link") as url:
        answer = outside_call(url, {"traceparent": FORGED, "baggage": "plan=gold"})
        server = peer.server_span()
    assert answer["status"] == 200
    assert answer["feedback"] == "success"
    new_trace = answer["trace_id"]
    assert new_trace != FORGED_TRACE_ID
    assert answer["baggage_keys"] == ["plan"], "baggage is still extracted (and still untrusted)"
    (received,) = hop.requests
    assert received.headers["x-portkey-trace-id"] == new_trace
    assert traceparent_trace_id(received.headers["traceparent"]) == new_trace
    assert FORGED_TRACE_ID not in json.dumps(dict(received.headers))
    assert [body["trace_id"] for body in peer.feedback] == [new_trace]
    # The server span starts the new trace and links to what the caller sent.
    assert (server["trace_id"], server["parent"]) == (new_trace, "")
    assert server["links"] == [(FORGED_TRACE_ID, FORGED_SPAN_ID)]
    with peer._lock:
        assert [s["name"] for s in peer.spans if s["trace_id"] == FORGED_TRACE_ID] == []


@pytest.mark.integration
def test_with_link_a_request_without_traceparent_is_a_plain_new_trace(
    peer: Peer, hop: RecordingProxy, model: ScriptedModelServer
) -> None:
    with edge_service(peer, hop, model, OTEL_PORTKEY_INBOUND_TRACE_CONTEXT="link") as url:
        answer = outside_call(url, {})
        server = peer.server_span()
    assert answer["status"] == 200
    assert (server["trace_id"], server["parent"], server["links"]) == (answer["trace_id"], "", [])
    (received,) = hop.requests
    assert received.headers["x-portkey-trace-id"] == answer["trace_id"]


# --- in process --------------------------------------------------------------------------------


def server_span_for(headers: dict[str, str]) -> Any:
    """What a server instrumentation does: extract, attach that context, start the SERVER span."""
    token = context.attach(propagate.extract(headers))
    tracer = trace.get_tracer("t")
    try:
        with (
            tracer.start_as_current_span("GET /", kind=trace.SpanKind.SERVER) as server,
            tracer.start_as_current_span("child") as child,
        ):
            return server, child, baggage.get_all()
    finally:
        context.detach(token)


def test_link_in_process_starts_a_new_trace_linked_to_the_caller(spans: Any) -> None:
    PortkeyInstrumentor().instrument(inbound_trace_context="link")
    server, child, entries = server_span_for({"traceparent": FORGED, "baggage": "k=v"})
    assert format(server.context.trace_id, "032x") != FORGED_TRACE_ID
    assert server.parent is None
    ((link),) = server.links
    assert (format(link.context.trace_id, "032x"), format(link.context.span_id, "016x")) == (
        FORGED_TRACE_ID,
        FORGED_SPAN_ID,
    )
    assert link.context.is_remote
    assert child.context.trace_id == server.context.trace_id
    assert not child.links, "only the root links"
    assert dict(entries) == {"k": "v"}


def test_continue_is_the_default_and_unlinks_nothing(spans: Any) -> None:
    PortkeyInstrumentor().instrument()
    server, _, _ = server_span_for({"traceparent": FORGED})
    assert format(server.context.trace_id, "032x") == FORGED_TRACE_ID
    assert format(server.parent.span_id, "016x") == FORGED_SPAN_ID
    assert not server.links


def test_link_leaves_a_given_context_without_a_traceparent_alone(spans: Any) -> None:
    PortkeyInstrumentor().instrument(inbound_trace_context="link")
    with trace.get_tracer("t").start_as_current_span("local") as local:
        given = context.get_current()
        assert trace.get_current_span(propagate.extract({}, context=given)) is local


def test_link_holds_when_the_app_sets_another_propagator_after_the_bridge(spans: Any) -> None:
    """An app that sets its own propagator after ``instrument()`` (adding B3, X-Ray) keeps ``link``
    from its very next inbound request: the new propagator is wrapped as it is set. Uninstrumented,
    ``set_global_textmap`` is the API's own again."""
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    api_setter = propagate.set_global_textmap
    instrumentor = PortkeyInstrumentor()
    instrumentor.instrument(inbound_trace_context="link")
    try:
        propagate.set_global_textmap(CompositePropagator([TraceContextTextMapPropagator()]))
        server, _, _ = server_span_for({"traceparent": FORGED})
        assert format(server.context.trace_id, "032x") != FORGED_TRACE_ID
        assert server.parent is None
    finally:
        instrumentor.uninstrument()
    assert propagate.set_global_textmap is api_setter


def test_after_uninstrument_link_does_nothing(spans: Any) -> None:
    instrumentor = PortkeyInstrumentor()
    instrumentor.instrument(inbound_trace_context="link")
    instrumentor.uninstrument()
    server, _, _ = server_span_for({"traceparent": FORGED})
    assert format(server.context.trace_id, "032x") == FORGED_TRACE_ID


def test_the_setting_reads_the_environment_and_refuses_other_values(caplog: pytest.LogCaptureFixture) -> None:
    variable = "OTEL_PORTKEY_INBOUND_TRACE_CONTEXT"
    assert PortkeySettings.from_env({}).inbound_trace_context == "continue"
    assert PortkeySettings.from_env({variable: " LINK "}).inbound_trace_context == "link"
    assert PortkeySettings.from_env(
        {variable: "link"}, inbound_trace_context="continue"
    ).inbound_trace_context == ("continue")
    with caplog.at_level(logging.WARNING):
        assert PortkeySettings.from_env({variable: "links"}).inbound_trace_context == "continue"
    assert "OTEL_PORTKEY_INBOUND_TRACE_CONTEXT='links' is not one of" in caplog.text


def test_an_sdk_span_without_add_link_gets_no_link_and_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    from opentelemetry.trace import SpanContext

    from otel_portkey._otel.processor import INBOUND_CALLER, PortkeySpanProcessor

    class OldSpan:  # an SDK span from before Span.add_link
        kind = trace.SpanKind.SERVER
        parent = None

        def set_attributes(self, attributes: object) -> None:
            pass

    caller = SpanContext(int(FORGED_TRACE_ID, 16), int(FORGED_SPAN_ID, 16), is_remote=True)
    parent_context = context.set_value(INBOUND_CALLER, caller)
    processor = PortkeySpanProcessor()
    with caplog.at_level(logging.WARNING, logger="otel_portkey"):
        for _ in range(3):
            processor.on_start(OldSpan(), parent_context)  # type: ignore[arg-type]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "no add_link" in warnings[0]
