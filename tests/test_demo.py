"""The demo's verdict ("ids equal", "echoed it back") rests on what the gateway answered.

The bridge writes ``portkey.trace_id`` from the id it sent and replaces it only with a non-blank
echo, so that attribute says "echoed" even when the gateway echoed nothing. These tests give the
demo's correlation exchanges in which the gateway echoed nothing, a blank or another id, or in
which nothing it answered was recorded, and check that it never reports them as correlated.
(``tests/test_cli.py`` runs the demo end to end through the real gateway, where all is well.)

The demo's closing metrics summary is read back from what the agent exported over OTLP: the tests
below export with the SDK's own OTLP exporter, or run the agent, and check the summary against
what was recorded and what the gateway answered.

The OSS gateway the demo starts runs traced: under each ``POST``, the demo shows the gateway's own
node (its SERVER span) and its upstream attempts, read from the spans the gateway itself exported
(service ``portkey-gateway``), never from the bridge's attributes.
"""

import gzip
import io
import json
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rich.console import Console

from otel_portkey import _cli
from otel_portkey._cli import demo
from otel_portkey._cli.demo import CAPTURED_ECHO_ATTRIBUTE, Delivery, DemoOptions, render, run_demo
from otel_portkey._cli.metrics_summary import (
    MetricsSummary,
    OtlpMetricsReceiver,
    histogram_quantile,
    summarize,
)
from otel_portkey._contract.call import DURATION_BUCKETS, answer_attributes
from otel_portkey._peers.loopback import LoopbackHandler, LoopbackServer, LoopbackService
from otel_portkey.testing import ForwardedRequest, OtlpReceiver, ReceivedSpan, free_port

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


GATEWAY = {"service.name": "portkey-gateway"}
SERVER_KIND, CLIENT_KIND = 2, 3


def exported(name, span_id, parent, kind, start_ms, resource=GATEWAY, **attributes):
    """A span as a traced gateway exports it: its own resource, a SERVER or CLIENT kind."""
    start = start_ms * 1_000_000
    return ReceivedSpan(name, TRACE, span_id, parent, kind, start, start + 2_000_000, attributes, resource)


def gateway_spans(portkey_span_id=GATEWAY_NODE, statuses=(429, 200)):
    """The gateway's node under the HTTP span, and one attempt per status, in the order they started."""
    server = exported(
        "POST",
        "5e5e5e5e5e5e5e5e",
        HTTP_SPAN,
        SERVER_KIND,
        1,
        **{"portkey.span_id": portkey_span_id, "portkey.trace_id": TRACE, "http.response.status_code": 200},
    )
    attempts = [
        exported(
            "POST",
            f"{n:016x}",
            server.span_id,
            CLIENT_KIND,
            1 + n,
            **{"server.address": "127.0.0.1", "server.port": 5000 + n, "http.response.status_code": status},
        )
        for n, status in enumerate(statuses, 1)
    ]
    return [server, *reversed(attempts)]  # listed last-first: the demo orders them by start


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


# ---- the gateway's own node ------------------------------------------------------------------


def traced_result(extra_spans, received=None):
    received = [exchange({**ANSWERED, "x-portkey-trace-id": TRACE})] if received is None else received
    return demo._result("answer", spans() + extra_spans, received, "test gateway", 0.0, gateway_traced=True)


def test_the_gateways_node_and_its_attempts_come_from_the_gateways_own_spans(monkeypatch):
    # Also under the HTTP span: a SERVER span of another service (not the gateway's node).
    other = exported("POST", "0badc0de0badc0de", HTTP_SPAN, SERVER_KIND, 0, {"service.name": "else"})
    outcome = traced_result([other, *gateway_spans()])
    (call,) = outcome.calls
    node = call.gateway_node
    assert node is not None
    assert (node.span_id, node.parent_span_id, node.service) == (
        "5e5e5e5e5e5e5e5e",
        HTTP_SPAN,
        "portkey-gateway",
    )
    assert (node.portkey_span_id, node.portkey_trace_id, node.status_code) == (GATEWAY_NODE, TRACE, 200)
    assert [(a.upstream, a.status_code) for a in node.attempts] == [
        ("127.0.0.1:5001", 429),
        ("127.0.0.1:5002", 200),
    ]
    as_json = json.loads(json.dumps(outcome.as_json()))
    assert as_json["gateway_traced"] is True
    assert as_json["calls"][0]["gateway_node"]["attempts"][0]["status_code"] == 429
    assert {s["service"] for s in as_json["spans"] if s["kind"] == "server"} == {"portkey-gateway", "else"}
    text = rendered(outcome, monkeypatch)
    lines = text.splitlines()
    order = [
        next(i for i, line in enumerate(lines) if marker in line)
        for marker in (
            "gateway call 1 received",
            "portkey-gateway server POST  http 200  portkey.span_id a1b2c3d4e5f60708  (as received)",
            "portkey-gateway attempt 1 POST 127.0.0.1:5001  http 429",
            "portkey-gateway attempt 2 POST 127.0.0.1:5002  http 200",
            "gateway call 1 answered",
        )
    ]
    assert order == sorted(order), text
    assert "traced as service 'portkey-gateway'" in text
    assert "exported no span" not in text


def test_a_gateway_node_carrying_another_span_id_is_shown_as_such(monkeypatch):
    outcome = traced_result(gateway_spans(portkey_span_id="ffffffffffffffff"))
    assert outcome.calls[0].gateway_node.portkey_span_id == "ffffffffffffffff"
    text = rendered(outcome, monkeypatch)
    assert "portkey.span_id ffffffffffffffff  (not the id received)" in text
    assert "(as received)" not in text


def test_a_traced_gateway_that_exported_nothing_is_said_and_an_untraced_one_is_not(monkeypatch):
    outcome = traced_result([])
    assert outcome.calls[0].gateway_node is None
    assert "the gateway exported no span for this call" in rendered(outcome, monkeypatch)
    untraced = result([exchange({**ANSWERED, "x-portkey-trace-id": TRACE})])
    assert untraced.as_json()["gateway_traced"] is False
    text = rendered(untraced, monkeypatch)
    assert "exported no span" not in text
    assert "traced as service" not in text


def test_without_a_hop_the_gateways_spans_are_not_taken_for_calls():
    """With no recording hop (``--live``) the calls are rebuilt from the spans that carry
    ``portkey.span_id``: the gateway's SERVER span carries one too, and is not a call."""
    outcome = demo._result("", spans() + gateway_spans(), None, "no hop", 0.0)
    assert len(outcome.calls) == 1
    assert outcome.trace_id == TRACE


@pytest.mark.integration
def test_the_demo_through_the_real_gateway_shows_the_gateways_own_node(oss_gateway, monkeypatch):
    """The demo starts the real OSS gateway traced. Under each of the agent's ``POST`` spans the
    receiver got, from service ``portkey-gateway``, exactly one SERVER span carrying that POST's
    ``portkey.span_id`` and trace id, and under it one upstream attempt answered 200: the
    gateway's own spans, as it exported them. The demo's result and tree show the same."""
    outcome = run_demo(DemoOptions())
    assert outcome.gateway == "OSS Portkey gateway 1.15.2"
    assert outcome.gateway_traced is True
    assert outcome.all_correlated is True
    exported_by_gateway = [s for s in outcome.spans if s.resource.get("service.name") == "portkey-gateway"]
    posts = [
        s for s in outcome.spans if s.name == "POST" and s.resource.get("service.name") == "otel-portkey-demo"
    ]
    assert len(posts) == 4
    for post in posts:
        (server,) = [s for s in exported_by_gateway if s.parent_span_id == post.span_id]
        assert server.kind == SERVER_KIND
        assert server.trace_id == post.trace_id == outcome.trace_id
        assert server.attributes["portkey.span_id"] == post.attributes["portkey.span_id"]
        assert server.attributes["portkey.trace_id"] == outcome.trace_id
        assert server.attributes["http.response.status_code"] == 200
        (attempt,) = [s for s in exported_by_gateway if s.parent_span_id == server.span_id]
        assert attempt.kind == CLIENT_KIND
        assert attempt.attributes["http.response.status_code"] == 200
        assert attempt.attributes["server.address"] == "127.0.0.1"
        # What the demo made of them: the node of the call made through this POST.
        (call,) = [c for c in outcome.calls if c.http_span_id == post.span_id]
        assert call.gateway_node is not None
        assert call.gateway_node.span_id == server.span_id
        assert call.gateway_node.portkey_span_id == call.sent["x-portkey-span-id"], (
            "what the hop saw it receive"
        )
        assert [a.span_id for a in call.gateway_node.attempts] == [attempt.span_id]
        assert [a.status_code for a in call.gateway_node.attempts] == [200]
    assert len(exported_by_gateway) == 8, "the gateway exported nothing else"
    text = rendered(outcome, monkeypatch)
    assert text.count("portkey-gateway server POST  http 200  portkey.span_id ") == 4
    assert text.count("(as received)") == 4
    assert len(re.findall(r"portkey-gateway attempt 1 POST 127\.0\.0\.1:\d+  http 200", text)) == 4
    assert "attempt 2" not in text
    assert "exported no span" not in text


# ---- the metrics summary ---------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("q", "counts", "expected"),
    [
        # bounds 0.1, 0.5, 1: buckets (0, 0.1], (0.1, 0.5], (0.5, 1], (1, +Inf)
        pytest.param(0.5, [2, 4, 4, 0], 0.1 + 0.4 * 3 / 4, id="median: 3rd of 4 in (0.1, 0.5]"),
        pytest.param(0.95, [2, 4, 4, 0], 0.5 + 0.5 * 3.5 / 4, id="p95: 3.5th of 4 in (0.5, 1]"),
        pytest.param(0.5, [4, 0, 0, 0], 0.1 * 2 / 4, id="the lowest bucket starts at 0"),
        pytest.param(0.5, [0, 0, 0, 3], 1.0, id="the open bucket: its lower boundary"),
        pytest.param(0.99, [1, 0, 0, 1], 1.0, id="past the last boundary"),
        pytest.param(1.0, [1, 1, 0, 0], 0.5, id="the maximum: the highest non-empty bucket's top"),
        pytest.param(0.0, [0, 2, 0, 0], 0.1, id="the minimum: empty leading buckets skipped"),
        pytest.param(0.5, [0, 0, 0, 0], None, id="no observation"),
    ],
)
def test_histogram_quantile_interpolates_within_the_bucket_as_prometheus_does(q, counts, expected):
    estimate = histogram_quantile(q, (0.1, 0.5, 1.0), counts)
    assert estimate == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.unit
def test_histogram_quantile_refuses_what_is_not_a_histogram():
    with pytest.raises(ValueError, match="between 0 and 1"):
        histogram_quantile(1.5, (0.1,), [1, 0])
    with pytest.raises(ValueError, match="2 buckets, not 3"):
        histogram_quantile(0.5, (0.1,), [1, 0, 0])
    assert histogram_quantile(0.5, (), [3]) is None


CALLS = [  # (seconds, provider, cache status, fallback, retries): one gateway call each
    (0.01, "openai", "HIT", False, 0),
    (0.03, "openai", "MISS", False, 0),
    (0.04, "openai", "MISS", False, 2),
    (0.2, "anthropic", "MISS", True, 1),
    (0.7, "anthropic", "MISS", True, 0),
    (3.0, "openai", "DISABLED", False, 3),
]


@pytest.mark.unit
@pytest.mark.parametrize("temporality", [AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA])
def test_the_summary_is_read_back_from_an_otlp_export(temporality):
    """The SDK's own OTLP/HTTP exporter sends the instruments, collected twice (half the calls
    each time); the receiver decodes them and the summary adds up every call once."""
    with OtlpMetricsReceiver() as receiver:
        exporter = OTLPMetricExporter(
            endpoint=receiver.endpoint, preferred_temporality={Histogram: temporality, Counter: temporality}
        )
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        provider = MeterProvider(metric_readers=[reader])
        meter = provider.get_meter("otel_portkey")
        duration = meter.create_histogram(
            "portkey.gateway.request.duration", unit="s", explicit_bucket_boundaries_advisory=DURATION_BUCKETS
        )
        retries = meter.create_counter("portkey.gateway.retries", unit="{retry}")
        meter.create_counter("http.client.requests").add(7)  # another instrument: not counted
        for n, (seconds, provider_name, cache, fallback, retried) in enumerate(CALLS):
            attributes = {
                "portkey.provider": provider_name,
                "portkey.cache.status": cache,
                "portkey.fallback": fallback,
                "http.response.status_code": 200,
            }
            duration.record(seconds, attributes)
            retries.add(retried, attributes)
            if n == len(CALLS) // 2:
                assert provider.force_flush()
        provider.shutdown()
        points = receiver.points
    assert {p.metric for p in points} == {"portkey.gateway.request.duration", "portkey.gateway.retries"}
    assert len({p.time_ns for p in points}) == 2, "two exports arrived"
    summary = summarize(points)
    assert summary == MetricsSummary(
        calls=6,
        providers={"openai": 4, "anthropic": 2},
        retries=6,
        fallbacks=2,
        cache_statuses={"MISS": 4, "HIT": 1, "DISABLED": 1},
        # 6 calls in (0, .025] x1, (.025, .05] x2, (.1, .25] x1, (.5, 1] x1, (2.5, 5] x1:
        p50_seconds=pytest.approx(0.025 + 0.025 * (3 - 1) / 2),  # the 3rd call, 2nd of 2 in its bucket
        p95_seconds=pytest.approx(2.5 + 2.5 * (5.7 - 5) / 1),  # the 5.7th call, in (2.5, 5]
    )
    assert summary.as_json()["p95_seconds"] == 4.25
    assert summary.text() == (
        "6 calls (openai 4, anthropic 2)  retries 6  fallbacks 2  cache MISS 4, HIT 1, DISABLED 1  "
        "p50 50 ms  p95 4.25 s"
    )
    assert summarize([]) is None


@pytest.mark.integration
def test_the_demos_metrics_are_what_the_gateway_answered(model, monkeypatch):
    """End to end: the agent, under ``opentelemetry-instrument``, calls a "gateway" (the scripted
    model) that answers every call as a fallback to its second target, a cache hit, after 2
    retries. The summary is what the agent exported, and it matches what the gateway answered;
    with ``--otlp-endpoint`` the same export went on there."""
    model.add_response_headers(
        {
            "x-portkey-provider": "anthropic",
            "x-portkey-cache-status": "HIT",
            "x-portkey-retry-attempt-count": "2",
            "x-portkey-last-used-option-index": "config.targets[1]",
        }
    )
    with OtlpMetricsReceiver() as collector:
        outcome = run_demo(
            DemoOptions(gateway_url=f"http://127.0.0.1:{model.port}", otlp_endpoint=collector.url)
        )
        forwarded = summarize(collector.points)
    answers = [call.gateway_answer for call in outcome.calls]
    assert len(answers) == 4
    summary = outcome.metrics
    assert summary is not None
    assert summary.calls == len(answers)
    assert summary.retries == sum(int(a["x-portkey-retry-attempt-count"]) for a in answers) == 8
    assert summary.fallbacks == 4
    assert summary.providers == {"anthropic": 4}
    assert summary.cache_statuses == {"HIT": 4}
    assert 0 < summary.p50_seconds <= summary.p95_seconds
    assert forwarded == summary, "--otlp-endpoint received the same metrics"
    # That endpoint takes metrics only: the spans were not delivered, and the demo knows it.
    delivery = outcome.delivery
    assert delivery is not None
    assert delivery.metric_exports >= 1
    assert delivery.metric_exports_undelivered == 0
    assert delivery.spans == delivery.spans_undelivered == len(outcome.spans)
    assert delivery.spans_cause == "HTTP 404"
    assert delivery.sentence().startswith(f"the {len(outcome.spans)} spans were not delivered to ")
    assert json.loads(json.dumps(outcome.as_json()))["metrics"] == summary.as_json()
    text = rendered(outcome, monkeypatch)
    assert (
        "portkey.gateway.* metrics exported: 4 calls (anthropic 4)  retries 8  fallbacks 4  cache HIT 4"
        in text
    )


@pytest.mark.integration
def test_the_demo_says_when_otel_portkey_metrics_switched_them_off(model, monkeypatch):
    monkeypatch.setenv("OTEL_PORTKEY_METRICS", "false")
    outcome = run_demo(DemoOptions(gateway_url=f"http://127.0.0.1:{model.port}"))
    assert len(outcome.calls) == 4
    assert outcome.metrics is None
    assert outcome.as_json()["metrics"] is None
    assert (
        rendered(outcome, monkeypatch)
        .strip()
        .endswith("portkey.gateway.* metrics exported: none (OTEL_PORTKEY_METRICS=false)")
    )


# ---- where the trace goes: --otlp-endpoint and Jaeger ---------------------------------------------


def sdk_export(count=3):
    """An OTLP/protobuf export of ``count`` spans, encoded by the SDK's own encoder."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    for n in range(count):
        provider.get_tracer("test").start_span(f"span {n}").end()
    return encode_spans(exporter.get_finished_spans()).SerializeToString()


class Page(LoopbackService):
    """Answers every request with one status, content type and body (a stand-in web server)."""

    def __init__(self, body, status=200, content_type="text/html"):
        class Handler(LoopbackHandler):
            def answer(self):
                self.request_body()
                self.reply(status, body, content_type)

            do_GET = do_POST = answer

        self._server = LoopbackServer(Handler)


@pytest.mark.unit
def test_what_a_dead_endpoint_did_not_get_is_counted_and_said():
    dead = f"http://127.0.0.1:{free_port()}"
    delivery = Delivery(dead)
    for _ in range(3):
        delivery.send("/v1/traces", sdk_export(3))
    delivery.send("/v1/metrics", b"")
    assert (delivery.spans, delivery.spans_undelivered, delivery.spans_cause) == (9, 9, "connection refused")
    assert (delivery.metric_exports, delivery.metric_exports_undelivered) == (1, 1)
    assert delivery.failed
    assert delivery.sentence() == (
        f"the 9 spans and the metrics were not delivered to {dead} (connection refused): --otlp-endpoint "
        "takes the OTLP/HTTP base URL of a running Collector or Jaeger, like http://localhost:4318"
    )
    assert delivery.as_json()["spans_undelivered"] == 9


@pytest.mark.unit
def test_an_endpoint_that_takes_spans_but_no_metrics_is_no_failure():
    """Jaeger answers ``/v1/metrics`` with 404: the spans arrived, and that is all it takes."""
    with OtlpReceiver() as spans_only:
        delivery = Delivery(spans_only.endpoint)
        delivery.send("/v1/traces", sdk_export(2))
        delivery.send("/v1/metrics", b"")
        assert len(spans_only.spans) == 2
    assert not delivery.failed
    assert delivery.metrics_not_taken
    assert delivery.line() == (
        f"Sent to {spans_only.endpoint}: 2 spans "
        "(it takes no metrics: /v1/metrics answered 404, as Jaeger does)"
    )


@pytest.mark.unit
def test_a_web_page_is_not_an_otlp_answer():
    """Jaeger's UI port answers any POST with its page (200, text/html): nothing was delivered."""
    with Page(b"<html>Jaeger UI</html>") as ui_port:
        delivery = Delivery(ui_port.url)
        delivery.send("/v1/traces", sdk_export(1))
    assert delivery.failed
    assert delivery.sentence().startswith(
        f"the 1 span was not delivered to {ui_port.url} (it answered with a web page, not OTLP): "
    )
    delivery.send("/v1/traces", sdk_export(2))
    assert delivery.sentence().startswith(f"the 3 spans were not delivered to {ui_port.url} (it answered")


PLACEHOLDER_PAGE = (
    b"<h1>\xf0\x9f\xa5\x8b: This is not the Jaeger UI you are looking for!</h1>"  # Jaeger without its UI
)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("page", "expected"),
    [
        pytest.param(
            PLACEHOLDER_PAGE,
            "Jaeger: otel-portkey trace {trace} --jaeger {url}  (no UI at {url}: a Jaeger built without "
            "its UI assets)",
            id="no UI",
        ),
        pytest.param(
            b"<title>Jaeger UI</title>",
            "Jaeger: {url}/trace/{trace}  (in a terminal: otel-portkey trace {trace} --jaeger {url})",
            id="UI",
        ),
    ],
)
def test_the_jaeger_line_points_at_what_works(page, expected, monkeypatch):
    with Page(page) as jaeger:
        monkeypatch.setenv("OTEL_PORTKEY_JAEGER_UI_URL", jaeger.url)
        pointer = demo.jaeger_pointer(TRACE, spans_sent_on=False)
    assert pointer is not None
    assert pointer.line() == expected.format(trace=TRACE, url=jaeger.url)
    outcome = result([exchange({**ANSWERED, "x-portkey-trace-id": TRACE})])
    outcome.jaeger = pointer
    assert pointer.line() in rendered(outcome, monkeypatch)
    assert outcome.as_json()["jaeger"]["trace_command"].startswith(f"otel-portkey trace {TRACE}")


@pytest.mark.unit
def test_the_jaeger_line_without_a_jaeger(monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("OTEL_PORTKEY_JAEGER_UI_URL", url)
    pointer = demo.jaeger_pointer(TRACE, spans_sent_on=False)
    assert pointer is not None
    assert pointer.line() == (
        f"Jaeger: otel-portkey trace {TRACE} --jaeger {url}  "
        f"(Jaeger at {url} did not answer: connection refused)"
    )
    # Not configured: only a Jaeger that answers at the default URL is pointed at, and only when the
    # spans went on to --otlp-endpoint.
    monkeypatch.delenv("OTEL_PORTKEY_JAEGER_UI_URL")
    monkeypatch.setattr(demo, "DEFAULT_JAEGER", url)
    assert demo.jaeger_pointer(TRACE, spans_sent_on=True) is None
    with Page(PLACEHOLDER_PAGE) as jaeger:
        monkeypatch.setattr(demo, "DEFAULT_JAEGER", jaeger.url)
        assert demo.jaeger_pointer(TRACE, spans_sent_on=False) is None
        pointer = demo.jaeger_pointer(TRACE, spans_sent_on=True)
    assert pointer is not None
    assert pointer.has_ui is False


def demo_refused(gateway_url: str, capsys) -> str:
    """What ``demo --json --gateway-url gateway_url`` says on stderr, failing before any output."""
    assert _cli.main(["demo", "--json", "--gateway-url", gateway_url]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    return err


@pytest.mark.unit
def test_a_dead_gateway_url_is_one_sentence_before_the_agent_runs(capsys):
    dead = f"http://127.0.0.1:{free_port()}"
    assert demo_refused(dead, capsys) == (
        f"otel-portkey demo: the gateway at {dead} is not reachable (connection refused): start one with "
        "`otel-portkey gateway`, or drop --gateway-url and the demo starts its own\n"
    )


@pytest.mark.integration
def test_an_otlp_endpoint_that_takes_nothing_is_one_sentence_and_exit_1(oss_gateway, capsys):
    """Through the real gateway every call is correlated (exit 0 otherwise, as test_cli shows);
    nothing listens at ``--otlp-endpoint``: the demo says what did not arrive there, and exits 1."""
    dead = f"http://127.0.0.1:{free_port()}"
    code = _cli.main(["demo", "--json", "--gateway-url", oss_gateway.base_url, "--otlp-endpoint", dead])
    out, err = capsys.readouterr()
    printed = json.loads(out)
    assert printed["all_correlated"] is True
    assert code == 1
    spans_received = len(printed["spans"])  # every span the demo's receiver got was to go on
    assert printed["delivery"]["spans"] == printed["delivery"]["spans_undelivered"] == spans_received
    assert err == (
        f"otel-portkey demo: the {spans_received} spans and the metrics were not delivered to {dead} "
        "(connection refused): --otlp-endpoint takes the OTLP/HTTP base URL of a running Collector or "
        "Jaeger, like http://localhost:4318\n"
    )


class HangsUp(LoopbackService):
    """A "gateway" that reads each request and closes the connection without an answer."""

    def __init__(self):
        class Handler(LoopbackHandler):
            def answer(self):
                self.request_body()
                self.close_connection = True

            do_GET = do_POST = answer

        self._server = LoopbackServer(Handler)


@pytest.mark.integration
def test_an_agent_failure_names_its_root_cause(capsys):
    """The gateway answers nothing: the recording hop answers 502 for it, the model client gives up.
    The sentence names the agent's exception and the root of its chain, not LangGraph's note."""
    with HangsUp() as gateway:
        code = _cli.main(["demo", "--json", "--gateway-url", gateway.url])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith("otel-portkey demo: the agent failed: ")
    assert "502" in line
    assert "(cause: " in line
    assert "During task" not in line


# ---- what the demo prints of a URL, a failure, an export: no secret, no escape, no traceback -----


@pytest.mark.unit
@pytest.mark.parametrize("url", ["http://[::1", "localhost:16686", "http://jaeger:99999"])
def test_a_jaeger_url_the_trace_command_refuses_is_said_to_be_unusable(url, monkeypatch):
    monkeypatch.setenv("OTEL_PORTKEY_JAEGER_UI_URL", url)
    pointer = demo.jaeger_pointer(TRACE, spans_sent_on=False)
    assert pointer is not None
    line = (
        f"Jaeger: OTEL_PORTKEY_JAEGER_UI_URL is not usable: {url!r} is not Jaeger's base URL (like "
        "http://localhost:16686), so the trace cannot be read from there"
    )
    assert pointer.line() == line
    outcome = result([exchange({**ANSWERED, "x-portkey-trace-id": TRACE})])
    outcome.jaeger = pointer
    assert line in rendered(outcome, monkeypatch)
    assert outcome.as_json()["jaeger_link"] is None


@pytest.mark.unit
def test_the_jaeger_line_shows_no_query_and_no_password(monkeypatch):
    with Page(b"<title>Jaeger UI</title>") as jaeger:
        monkeypatch.setenv("OTEL_PORTKEY_JAEGER_UI_URL", f"{jaeger.url}/?api_key=SECRET")
        with_query = demo.jaeger_pointer(TRACE, spans_sent_on=False)
        outcome = result([exchange({**ANSWERED, "x-portkey-trace-id": TRACE})])
        credentials = jaeger.url.replace("http://", "http://me:pw@")
        monkeypatch.setenv("OTEL_PORTKEY_JAEGER_UI_URL", credentials)
        with_password = demo.jaeger_pointer(TRACE, spans_sent_on=False)
    assert with_query is not None
    assert with_password is not None
    assert with_query.line() == (
        f"Jaeger: {jaeger.url}/trace/{TRACE}  "
        f"(in a terminal: otel-portkey trace {TRACE} --jaeger {jaeger.url})"
    )
    assert outcome.as_json()["jaeger_link"] == f"{jaeger.url}/trace/{TRACE}"
    masked = jaeger.url.replace("http://", "http://***@")
    assert with_password.line() == (
        f"Jaeger: {masked}/trace/{TRACE}  (in a terminal: otel-portkey trace {TRACE})"
    )


@pytest.mark.unit
def test_a_demo_failure_cannot_drive_the_terminal(capsys):
    hostile = f"http://127.0.0.1:{free_port()}/\x1b]0;pwned\x07\x1b[2J"
    err = demo_refused(hostile, capsys)
    assert err.startswith("otel-portkey demo: the gateway at http://127.0.0.1:")
    assert err.count("\n") == 1
    assert not any(c in err for c in "\x1b\x07"), repr(err)


@pytest.mark.unit
def test_the_agents_failure_shows_no_credentials():
    stderr = (
        "Traceback (most recent call last):\n  ...\n"
        f"{demo.FAILURE_MARK} openai.APIConnectionError: Connection error. (cause: httpx.ConnectError: "
        "https://me:s3cret@gw.corp/v1/chat/completions?api_key=SECRET failed)\n"
    )
    assert demo.agent_failure(stderr) == (
        "openai.APIConnectionError: Connection error. (cause: httpx.ConnectError: "
        "https://***@gw.corp/v1/chat/completions?api_key=*** failed)"
    )


@pytest.mark.unit
def test_the_relay_answers_an_export_it_cannot_inflate_without_a_traceback(capfd):
    """Not gzip, or gzip cut short: 400; more than 64 MiB once inflated: 413; the rest is relayed."""
    with (
        OtlpReceiver() as receiver,
        demo.ExportRelay(f"{receiver.endpoint}/v1/traces", f"{receiver.endpoint}/v1/metrics") as relay,
    ):

        def post(body):
            request = urllib.request.Request(
                f"{relay.url}/v1/traces",
                data=body,
                headers={"content-encoding": "gzip", "content-type": "application/x-protobuf"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    return answer.status
            except urllib.error.HTTPError as error:
                return error.code

        assert post(b"not gzip at all") == 400
        assert post(gzip.compress(sdk_export(2))[:-8]) == 400
        assert post(gzip.compress(b"\0" * (64 * 2**20 + 1))) == 413
        assert post(gzip.compress(sdk_export(2))) == 200
        assert len(receiver.spans) == 2
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.integration
def test_a_module_in_the_current_folder_does_not_shadow_the_agents_packages(tmp_path, monkeypatch):
    """``opentelemetry-instrument`` puts the current folder on PYTHONPATH and ``python -c`` puts it
    first on sys.path: a user's own ``langchain_openai.py`` there must not replace the package."""
    (tmp_path / "cwd").mkdir()
    (tmp_path / "cwd" / "langchain_openai.py").write_text(
        "raise ImportError('the current folder was used')\n"
    )
    (tmp_path / "app").mkdir()
    script = tmp_path / "app" / "agent.py"
    script.write_text("import langchain_openai\nprint(langchain_openai.__file__)\n")
    monkeypatch.chdir(tmp_path / "cwd")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none")
    process = demo.run_agent(script, env, timeout=120)
    assert process.returncode == 0, process.stderr
    imported = Path(process.stdout.strip())
    assert imported.name == "__init__.py"
    assert imported.parent.name == "langchain_openai"
    assert tmp_path not in imported.parents


class ConnectProxy(LoopbackService):
    """An HTTPS proxy that notes each ``CONNECT host:port`` and refuses it (403)."""

    def __init__(self):
        self.targets = []
        proxy = self

        class Handler(LoopbackHandler):
            def do_CONNECT(self):
                proxy.targets.append(self.path)
                self.close_connection = True
                self.reply(403)

        self._server = LoopbackServer(Handler)


@pytest.mark.integration
def test_live_behind_a_proxy_does_not_ask_for_a_direct_connection(monkeypatch):
    """Behind a mandatory proxy the hosted gateway's host may not even resolve here: the demo lets
    the agent go through the proxy (as httpx does) instead of refusing to run."""
    monkeypatch.setattr(demo, "HOSTED_GATEWAY", "https://portkey.invalid")  # never resolves
    monkeypatch.setenv("PORTKEY_API_KEY", "pk-test")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        with pytest.raises(demo.DemoError) as failed:
            run_demo(DemoOptions(live=True))
    assert str(failed.value).startswith("the agent failed: ")
    assert "portkey.invalid:443" in proxy.targets
