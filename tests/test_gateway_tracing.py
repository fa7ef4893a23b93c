"""Inside the gateway (issue 26), proved with the real processes: an app under
``opentelemetry-instrument`` calls through ``otel-portkey gateway --otlp-endpoint`` (the pinned OSS
gateway under OpenTelemetry for Node); the app and the gateway both export OTLP/HTTP to the real
Collector (collector-config.yaml), which sends the spans to the real Jaeger and serves the metrics
to a real Prometheus.

Each call routes itself (a retry config, a fallback config whose targets hold API keys, a provider
and host), so the command's hop passes it unchanged to the test's scripted models. What is asserted
is what Jaeger and Prometheus answer: for each call the gateway's SERVER span is a child of the
app's ``POST`` span and carries its ``portkey.span_id``; the upstream attempts are CLIENT spans
under it with their statuses; nothing secret is on any of the gateway's spans.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from otel_portkey._peers.oss_gateway import gateway_preload, install_directory, installed_gateway
from otel_portkey.testing import ScriptedModelServer, free_port
from test_monitoring import by, prometheus  # noqa: F401  (the Prometheus fixture, scraping the Collector)
from test_readme import wait_for_gateway

from components import Jaeger, attribute, span_id
from instrumented import otel_env, run_instrumented

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).with_name("otel-portkey"))
APP = "gateway-tracing-app"
GATEWAY_SERVICE = "portkey-gateway"
SECRETS = {
    "APP_KEY": "sk-app-secret-5f0c1d",
    "GOOGLE_KEY": "AIza-google-secret-77ab",
    "FIRST_TARGET_KEY": "sk-first-target-secret-91e2",
    "SECOND_TARGET_KEY": "sk-second-target-secret-3c4d",
}
SERVER, CLIENT = (2, "SPAN_KIND_SERVER"), (3, "SPAN_KIND_CLIENT")
ERROR = (2, "STATUS_CODE_ERROR")
TOKEN_DELAY = 0.05  # between streamed events: the streamed call lasts 10 of them


@dataclass
class Run:
    """One run of the app through the traced gateway: its calls and where everything is."""

    calls: dict[str, dict[str, Any]]  # kind -> {"trace_id", "status"}
    ok: ScriptedModelServer
    retrying: ScriptedModelServer
    failing: ScriptedModelServer
    gateway_stderr: str


@pytest.fixture(scope="module")
def run(collector) -> Iterator[Run]:
    """``otel-portkey gateway --otlp-endpoint <Collector>`` started from a shell whose ``OTEL_*``
    belong to the app, the app run once through it, then the command stopped (Ctrl-C), which
    flushes the gateway's last spans and metrics."""
    with ScriptedModelServer() as ok, ScriptedModelServer() as retrying, ScriptedModelServer() as failing:
        retrying.fail_next(1, status=429)  # the gateway retries the first call once
        failing.fail_next(1000, status=500)  # the first fallback target always fails
        ok.stream_slowly(TOKEN_DELAY)
        port = free_port()
        shell = otel_env(collector.otlp_http, OTEL_SERVICE_NAME=APP, OTEL_RESOURCE_ATTRIBUTES="leak=app")
        gateway = subprocess.Popen(
            [CLI, "gateway", "--port", str(port), "--otlp-endpoint", collector.otlp_http],
            env=shell,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            printed = wait_for_gateway(gateway)
            assert f"go to {collector.otlp_http} (OTLP/HTTP) as service '{GATEWAY_SERVICE}'" in printed
            result = run_instrumented(
                "tests/gateway_tracing_app.py",
                otel_env(
                    collector.otlp_http,
                    OTEL_SERVICE_NAME=APP,
                    OTEL_PORTKEY_GATEWAY_URLS=f"http://127.0.0.1:{port}",
                    GATEWAY=f"http://127.0.0.1:{port}",
                    MODEL_OK=ok.base_url,
                    MODEL_RETRYING=retrying.base_url,
                    MODEL_FAILING=failing.base_url,
                    **SECRETS,
                ),
            )
            assert result.returncode == 0, result.stderr[-3000:]
        finally:
            gateway.send_signal(signal.SIGINT)
            _, stderr = gateway.communicate(timeout=60)
        assert gateway.returncode == 0, stderr
        calls = {}
        for line in result.stdout.splitlines():
            if line.startswith("{"):
                call = json.loads(line)
                calls[call.pop("kind")] = call
        yield Run(calls, ok, retrying, failing, stderr)


def resources(jaeger: Jaeger, trace_id: str) -> dict[str, dict[str, Any]]:
    """span id -> the attributes of the resource Jaeger stored the span under (``Jaeger.trace``
    gives the spans without their resource)."""
    url = f"http://127.0.0.1:{jaeger.ports['QUERY_HTTP']}/api/v3/traces/{trace_id}"
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    found = {}
    for resource_spans in body["result"]["resourceSpans"]:
        resource = resource_spans.get("resource", {})
        keys = [item["key"] for item in resource.get("attributes", [])]
        attributes = {key: attribute(resource, key) for key in keys}
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                found[span_id(span)] = attributes
    return found


@dataclass
class GatewayNode:
    """The app's ``POST`` span, the gateway's SERVER span under it, the attempts under that, and
    every span of the gateway's with its resource, as Jaeger returned them."""

    post: dict[str, Any]
    server: dict[str, Any]
    attempts: list[dict[str, Any]]
    gateway_spans: list[dict[str, Any]]
    resources: list[dict[str, Any]]


def tree(spans: list[dict[str, Any]], stored: dict[str, dict[str, Any]]) -> str:
    """The trace as Jaeger returned it, one line per span under its parent: service, kind, name,
    status, the HTTP status and Portkey's span id where there are, start offset and duration."""
    children: dict[str, list[dict[str, Any]]] = {}
    for span in sorted(spans, key=lambda s: int(s["startTimeUnixNano"])):
        children.setdefault(span_id(span, "parentSpanId"), []).append(span)
    ids = {span_id(s) for s in spans}
    start = min(int(s["startTimeUnixNano"]) for s in spans)
    lines: list[str] = []

    def show(span: dict[str, Any], depth: int) -> None:
        kind = str(span["kind"]).removeprefix("SPAN_KIND_").lower()
        kind = {"1": "internal", "2": "server", "3": "client"}.get(kind, kind)
        http_status = attribute(span, "http.response.status_code")
        portkey_span = attribute(span, "portkey.span_id")
        details = [str(stored[span_id(span)].get("service.name")), kind, repr(span["name"])]
        details += [f"http {http_status}"] if http_status else []
        details += ["ERROR"] if span.get("status", {}).get("code") in ERROR else []
        details += [f"portkey.span_id {portkey_span}"] if portkey_span else []
        begin, end = int(span["startTimeUnixNano"]), int(span["endTimeUnixNano"])
        details += [f"+{(begin - start) / 1e6:.0f} ms", f"{(end - begin) / 1e6:.0f} ms"]
        lines.append("  " * depth + "  ".join(details))
        for child in children.get(span_id(span), []):
            show(child, depth + 1)

    for root in [s for s in spans if span_id(s, "parentSpanId") not in ids]:
        show(root, 0)
    return "\n".join(lines)


def gateway_node(jaeger: Jaeger, trace_id: str, attempts: int) -> GatewayNode:
    # the app's root, its GenAI span and POST; the gateway's SERVER span and its attempts
    spans = jaeger.trace(trace_id, spans=4 + attempts)
    stored = resources(jaeger, trace_id)
    print(f"trace {trace_id}, as Jaeger returned it:\n{tree(spans, stored)}")  # shown when a test fails
    gateway_spans = [s for s in spans if stored[span_id(s)].get("service.name") == GATEWAY_SERVICE]
    (server,) = [s for s in gateway_spans if s["kind"] in SERVER]
    post = {span_id(s): s for s in spans}[span_id(server, "parentSpanId")]
    children = [s for s in gateway_spans if span_id(s, "parentSpanId") == span_id(server)]
    children.sort(key=lambda s: int(s["startTimeUnixNano"]))
    return GatewayNode(post, server, children, gateway_spans, [stored[span_id(s)] for s in gateway_spans])


def statuses(spans: list[dict[str, Any]]) -> list[tuple[int, bool]]:
    """(``http.response.status_code``, status is ERROR) of each span."""
    return [
        (attribute(s, "http.response.status_code"), s.get("status", {}).get("code") in ERROR) for s in spans
    ]


def assert_joined(node: GatewayNode, run: Run, kind: str) -> None:
    """The gateway's node hangs under the app's POST and carries the ids the bridge sent."""
    trace_id = run.calls[kind]["trace_id"]
    assert node.post["name"] == "POST"
    assert node.post["kind"] in CLIENT
    assert attribute(node.server, "portkey.span_id") == attribute(node.post, "portkey.span_id")
    assert attribute(node.server, "portkey.trace_id") == attribute(node.post, "portkey.trace_id") == trace_id
    assert [s["kind"] in CLIENT for s in node.attempts] == [True] * len(node.attempts)
    assert len(node.gateway_spans) == 1 + len(node.attempts), "the gateway made no other span"
    # The gateway's resource is its own: the app's OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES,
    # in the shell that started the command, did not reach it.
    for resource in node.resources:
        assert resource["service.name"] == GATEWAY_SERVICE
        assert "leak" not in resource


def assert_no_secret(node: GatewayNode) -> None:
    """No API key, Authorization value or config on any of the gateway's spans (names, attributes,
    events, status), and no header captured."""
    text = json.dumps(node.gateway_spans)
    for secret in SECRETS.values():
        assert secret not in text
    for fragment in ("Bearer", "custom_host", "strategy", "on_status_codes", "targets"):
        assert fragment not in text
    keys = {item["key"] for span in node.gateway_spans for item in span.get("attributes", [])}
    assert not [k for k in keys if "header" in k or "authorization" in k or "api_key" in k], keys


def test_a_retried_call_shows_each_attempt_under_the_gateways_node(run, jaeger):
    assert run.calls["retry"]["status"] == 200
    node = gateway_node(jaeger, run.calls["retry"]["trace_id"], attempts=2)
    assert_joined(node, run, "retry")
    assert statuses(node.attempts) == [(429, True), (200, False)]
    port = run.retrying.port
    assert [attribute(s, "server.port") for s in node.attempts] == [port, port]
    assert attribute(node.server, "http.response.status_code") == 200
    assert_no_secret(node)


def test_a_fallback_shows_the_failed_target_then_the_next(run, jaeger):
    assert run.calls["fallback"]["status"] == 200
    node = gateway_node(jaeger, run.calls["fallback"]["trace_id"], attempts=2)
    assert_joined(node, run, "fallback")
    assert statuses(node.attempts) == [(500, True), (200, False)]
    assert [attribute(s, "server.port") for s in node.attempts] == [run.failing.port, run.ok.port]
    assert_no_secret(node)


def test_a_streamed_calls_server_span_covers_the_stream(run, jaeger):
    assert run.calls["stream"]["status"] == 200
    node = gateway_node(jaeger, run.calls["stream"]["trace_id"], attempts=1)
    assert_joined(node, run, "stream")
    assert statuses(node.attempts) == [(200, False)]
    (attempt,) = node.attempts
    # The attempt ends when the upstream's last event is read; the server span when the gateway
    # has sent it on: after, and not before ten pauses between events went by.
    assert int(node.server["endTimeUnixNano"]) >= int(attempt["endTimeUnixNano"])
    duration = int(node.server["endTimeUnixNano"]) - int(node.server["startTimeUnixNano"])
    assert duration >= 9 * TOKEN_DELAY * 1e9
    assert_no_secret(node)


def test_a_key_in_the_upstream_urls_query_is_redacted(run, jaeger):
    """Google takes its API key in the query (``?key=``): the attempt's URL keeps the name only."""
    assert run.calls["google"]["status"] == 404  # the scripted model has no Gemini route
    received = [r for r in run.ok.received if ":generateContent" in r.path]
    assert received
    assert f"key={SECRETS['GOOGLE_KEY']}" in received[0].path, "the key went in the query"
    node = gateway_node(jaeger, run.calls["google"]["trace_id"], attempts=1)
    assert_joined(node, run, "google")
    (attempt,) = node.attempts
    assert statuses(node.attempts) == [(404, True)]
    assert attribute(attempt, "url.query") == "key=REDACTED"
    assert attribute(attempt, "url.full").endswith(":generateContent?key=REDACTED")
    assert_no_secret(node)


def test_prometheus_answers_the_gateways_attempts_per_upstream_and_status(run, prometheus):  # noqa: F811
    """The Node instrumentations' metrics, through the Collector: each upstream attempt per host
    and status, and the gateway's own request durations (its overhead is server minus client)."""
    job = f'exported_job="{GATEWAY_SERVICE}"'
    attempts = f"http_client_request_duration_seconds_count{{{job}}}"
    expected = {
        (str(run.retrying.port), "429"): 1.0,
        (str(run.retrying.port), "200"): 1.0,
        (str(run.failing.port), "500"): 1.0,
        (str(run.ok.port), "200"): 2.0,  # the fallback's second target, the streamed call
        (str(run.ok.port), "404"): 1.0,  # Google's
    }
    query = f"sum by (server_port, http_response_status_code) ({attempts})"
    # the queries below read the moment this one held, once no scrape then can still fail
    result, at = prometheus.settled(
        query, lambda r: sum(float(s["value"][1]) for s in r) >= sum(expected.values())
    )
    found = {
        (s["metric"]["server_port"], s["metric"]["http_response_status_code"]): float(s["value"][1])
        for s in result
    }
    assert {key: value for key, value in found.items() if key[0] in {p for p, _ in expected}} == expected
    assert {s["metric"].get("server_address") for s in prometheus.query(attempts, at=at)} == {"127.0.0.1"}
    served = f"http_server_request_duration_seconds_count{{{job}}}"
    answered = by(
        prometheus.query(f"sum by (http_response_status_code) ({served})", at=at), "http_response_status_code"
    )
    assert answered == {"200": 3.0, "404": 1.0}, "one server duration per call, with what it answered"
    for histogram in ("http_server_request_duration_seconds_sum", "http_client_request_duration_seconds_sum"):
        (total,) = prometheus.query(f"sum({histogram}{{{job}}})", at=at)
        assert float(total["value"][1]) > 0


def test_the_preload_redacts_every_query_value_and_userinfo():
    """The preload's own redaction, on URLs no test upstream produces (run by node, SDK off)."""
    entry = installed_gateway()
    if not entry.exists():
        pytest.skip("the gateway is not installed: run 'make components'")
    cases = {
        "https://generativelanguage.googleapis.com/v1beta/models/m:generateContent?key=AIzaX&alt=sse": (
            "https://generativelanguage.googleapis.com/v1beta/models/m:generateContent?key=REDACTED&alt=REDACTED"
        ),
        "https://user:pa55@host.example/p?token#frag": "https://REDACTED:REDACTED@host.example/p?REDACTED",
        "https://host.example/p": "https://host.example/p",
        "not a url?key=k": "not a url?key=REDACTED",
    }
    script = (
        f"const m = await import({json.dumps(gateway_preload().as_uri())});"
        f"const cases = {json.dumps(list(cases))};"
        "console.log(JSON.stringify(cases.map((c) => m.redactUrl(c))));"
        "console.log(JSON.stringify([m.safeAttribute('url.query', '?key=k&x'),"
        " m.safeAttribute('http.request.header.authorization', ['Bearer k']),"
        " m.safeAttribute('http.target', '/v1?key=k'), m.safeAttribute('server.port', 8080)]));"
    )
    result = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        cwd=install_directory(entry),
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
            "OTEL_SDK_DISABLED": "true",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    urls, attributes = (json.loads(line) for line in result.stdout.splitlines()[-2:])
    assert urls == list(cases.values())
    assert attributes == ["key=REDACTED&REDACTED", "REDACTED", "/v1?key=REDACTED", 8080]
