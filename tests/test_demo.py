"""The demo's verdict ("ids equal", "echoed it back") rests on what the gateway answered.

The bridge writes ``portkey.trace_id`` from the id it sent and replaces it only with a non-blank
echo, so that attribute says "echoed" even when the gateway echoed nothing. These tests give the
demo's correlation exchanges in which the gateway echoed nothing, a blank or another id, or in
which nothing it answered was recorded, and check that it never reports them as correlated.
(``tests/test_cli.py`` runs the demo end to end through the real gateway, where all is well.)
"""

import io
import json

import pytest
from rich.console import Console

from otel_portkey._cli import demo
from otel_portkey._cli.demo import CAPTURED_ECHO_ATTRIBUTE, DemoOptions, render, run_demo
from otel_portkey._contract.call import answer_attributes
from otel_portkey.testing import ForwardedRequest, ReceivedSpan

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
OTHER_TRACE = "0" * 31 + "1"
HTTP_SPAN = "00f067aa0ba902b7"
GATEWAY_NODE = "a1b2c3d4e5f60708"
CALLER = "chat gpt-4o"


def span(name, span_id, parent="", **attributes):
    return ReceivedSpan(name, TRACE, span_id, parent, 3, 0, 1_000_000, attributes, {})


def spans(**http_attributes):
    """A root, the calling ``chat`` span and its HTTP span, as the bridge leaves them: the HTTP span
    says ``portkey.trace_id`` = the id sent, whatever the gateway answered."""
    return [
        span("seed agent run", "1111111111111111"),
        span(CALLER, "2222222222222222", "1111111111111111"),
        span(
            "POST",
            HTTP_SPAN,
            "2222222222222222",
            **{"portkey.trace_id": TRACE, "portkey.span_id": GATEWAY_NODE, **http_attributes},
        ),
    ]


def exchange(response_headers):
    """The hop's record of one call: the bridge's headers arrived; the gateway answered these."""
    sent = {
        "x-portkey-trace-id": TRACE,
        "x-portkey-parent-span-id": HTTP_SPAN,
        "x-portkey-span-id": GATEWAY_NODE,
        "x-portkey-span-name": CALLER,
    }
    return ForwardedRequest("POST", "/v1/chat/completions", sent, 200, response_headers)


def result(received, **http_attributes):
    return demo._result("answer", spans(**http_attributes), received, "test gateway", 0.0)


def rendered(outcome, monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr("rich.console.Console", lambda **kw: Console(file=out, width=300, **kw))
    render(outcome)
    return out.getvalue()


ANSWERED = {"x-portkey-cache-status": "DISABLED", "x-portkey-provider": "openai"}


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(ANSWERED, id="no echo header"),
        pytest.param({**ANSWERED, "x-portkey-trace-id": ""}, id="blank echo"),
        pytest.param({**ANSWERED, "x-portkey-trace-id": OTHER_TRACE}, id="another id"),
    ],
)
def test_a_call_the_gateway_did_not_echo_is_not_correlated(answer, monkeypatch):
    # The span as the bridge leaves it after this answer.
    bridge_says = answer_attributes(answer.get).get("portkey.trace_id", TRACE)
    outcome = result([exchange(answer)], **{"portkey.trace_id": bridge_says})
    (call,) = outcome.calls
    if not answer.get("x-portkey-trace-id"):
        assert call.answered["portkey.trace_id"] == TRACE, "the span alone would say all is well"
    assert call.correlated is False
    assert outcome.as_json()["all_correlated"] is False
    assert outcome.as_json()["calls"][0]["echoed"] == answer.get("x-portkey-trace-id", "")
    text = rendered(outcome, monkeypatch)
    assert "ids differ" in text
    assert "ids equal" not in text
    assert "0 of 1 LLM calls" in text
    assert f"answered  trace {answer.get('x-portkey-trace-id') or '(none)'}" in text


def test_a_call_the_gateway_echoed_is_correlated(monkeypatch):
    outcome = result([exchange({**ANSWERED, "x-portkey-trace-id": TRACE})])
    (call,) = outcome.calls
    assert call.echoed == TRACE
    assert call.correlated is True
    assert outcome.as_json()["all_correlated"] is True
    text = rendered(outcome, monkeypatch)
    assert "ids equal" in text
    assert "1 of 1 LLM calls carry OTel trace" in text
    assert f"answered  trace {TRACE}  cache DISABLED" in text


def test_an_echo_does_not_excuse_a_request_the_gateway_received_otherwise():
    wrong_parent = exchange({"x-portkey-trace-id": TRACE})
    wrong_parent.headers["x-portkey-span-name"] = "POST /v1/chat/completions"
    (call,) = result([wrong_parent]).calls
    assert call.correlated is False


def test_without_a_recording_hop_nothing_is_claimed(monkeypatch):
    """``--live``: no hop in front of hosted Portkey, and no echo captured from its response."""
    outcome = result(None)
    (call,) = outcome.calls
    assert call.request_recorded is False
    assert call.echoed is None
    assert call.correlated is None
    assert outcome.as_json()["all_correlated"] is None
    text = rendered(outcome, monkeypatch)
    assert "not verified" in text
    assert "ids equal" not in text
    assert "0 of 1 LLM calls" in text
    assert "1 not verified" in text
    assert "sent (as its span says; not recorded)" in text


@pytest.mark.parametrize(("captured", "verdict"), [([TRACE], True), ([""], False), ([OTHER_TRACE], False)])
def test_without_a_hop_the_echo_captured_from_the_response_decides(captured, verdict, monkeypatch):
    outcome = result(None, **{CAPTURED_ECHO_ATTRIBUTE: captured})
    (call,) = outcome.calls
    assert call.echoed == captured[0]
    assert call.correlated is verdict
    text = rendered(outcome, monkeypatch)
    assert "ids equal" not in text, "parent and span name were not seen by anything but the span"
    assert ("trace id echoed" in text) is verdict


@pytest.mark.integration
def test_the_demo_through_a_gateway_that_echoes_a_blank_reports_no_correlation(model, monkeypatch):
    """End to end: the agent runs under ``opentelemetry-instrument`` against a "gateway" that is the
    scripted model answering ``x-portkey-trace-id: ""`` (as the OSS gateway does when it got none)."""
    model.add_response_headers({"x-portkey-trace-id": ""})
    outcome = run_demo(DemoOptions(gateway_url=f"http://127.0.0.1:{model.port}"))
    assert len(outcome.calls) == 4
    for call in outcome.calls:
        assert call.sent["x-portkey-trace-id"] == call.otel_trace_id == outcome.trace_id
        assert call.answered["portkey.trace_id"] == outcome.trace_id, "the span alone says all is well"
        assert call.echoed == ""
        assert call.correlated is False
    assert json.loads(json.dumps(outcome.as_json()))["all_correlated"] is False
    text = rendered(outcome, monkeypatch)
    assert text.count("ids differ") == 4
    assert "0 of 4 LLM calls" in text
    assert "which echoed it back. 4 not:" in text
    # The HTTP instrumentation captured the same blank from the response: the evidence --live uses.
    http_spans = [s for s in outcome.spans if "portkey.span_id" in s.attributes]
    assert [s.attributes[CAPTURED_ECHO_ATTRIBUTE] for s in http_spans] == [[""]] * 4
    live_view = demo._result("", outcome.spans, None, "no hop", 0.0)
    assert [call.correlated for call in live_view.calls] == [False] * 4
