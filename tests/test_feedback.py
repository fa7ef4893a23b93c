"""record_feedback against a local endpoint that checks path, method, API key and body."""

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry import trace

from otel_portkey import PortkeyInstrumentor, record_feedback, record_feedback_async
from otel_portkey._contract.ids import format_trace_id

API_KEY = "pk-test-feedback"


class FeedbackEndpoint:
    def __init__(self):
        self.received = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                endpoint.received.append((self.command, self.path, dict(self.headers), body))
                ok = self.path == "/v1/feedback" and self.headers.get("x-portkey-api-key") == API_KEY
                answer = json.dumps(
                    {"status": "success", "message": "feedback recorded"} if ok else {"error": "no"}
                ).encode()
                self.send_response(200 if ok else 401)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"


@pytest.fixture
def endpoint(monkeypatch):
    server = FeedbackEndpoint()
    monkeypatch.setenv("PORTKEY_API_KEY", API_KEY)
    monkeypatch.setenv("OTEL_PORTKEY_FEEDBACK_BASE_URL", server.base_url)
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_feedback_for_the_current_trace(endpoint):
    with trace.get_tracer("t").start_as_current_span("request") as span:
        answer = record_feedback(5, weight=0.5, metadata={"reason": "helpful", "n": 1})
    assert answer.status == "success"
    ((method, path, headers, body),) = endpoint.received
    assert (method, path) == ("POST", "/v1/feedback")
    assert headers["x-portkey-api-key"] == API_KEY
    assert body == {
        "trace_id": format_trace_id(span.get_span_context().trace_id),
        "value": 5,
        "weight": 0.5,
        "metadata": {"reason": "helpful", "n": "1"},
    }


def test_async_feedback_with_an_explicit_trace_id(endpoint):
    answer = asyncio.run(record_feedback_async(-10, trace_id="seed-trace-42"))
    assert answer.status == "success"
    assert endpoint.received[0][3] == {"trace_id": "seed-trace-42", "value": -10, "weight": 1.0}


def test_feedback_names_the_callers_trace_id_kept_by_the_respect_policy(endpoint, model, spans):
    import httpx

    PortkeyInstrumentor().instrument(gateway_urls=[f"http://127.0.0.1:{model.port}"])
    with trace.get_tracer("t").start_as_current_span("request"):
        httpx.post(
            f"http://127.0.0.1:{model.port}/v1/chat/completions",
            headers={"x-portkey-trace-id": "seed-trace-7"},
            json={},
        )
        record_feedback(1)
    assert endpoint.received[0][3]["trace_id"] == "seed-trace-7"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"value": 11}, "integer from -10 to 10"),
        ({"value": 2.5}, "integer from -10 to 10"),
        ({"value": True}, "integer from -10 to 10"),
        ({"value": 1, "weight": 1.5}, "number from 0 to 1"),
        ({"value": 1, "weight": "0.5"}, "number from 0 to 1"),
        ({"value": 1, "metadata": ["x"]}, "mapping"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(endpoint, kwargs, message):
    with pytest.raises(ValueError, match=message):
        record_feedback(trace_id="t", **kwargs)
    assert endpoint.received == []


def test_outside_any_trace_it_asks_for_a_trace_id(endpoint):
    with pytest.raises(ValueError, match="inside a span, or pass trace_id="):
        record_feedback(1)


def test_without_an_api_key_it_names_the_variable(monkeypatch):
    monkeypatch.delenv("PORTKEY_API_KEY", raising=False)
    with pytest.raises(ValueError, match="PORTKEY_API_KEY"):
        record_feedback(1, trace_id="t")
