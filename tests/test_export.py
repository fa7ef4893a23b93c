"""The export path: collector-config.yaml with a real Collector and Jaeger, and PortkeySpanExporter."""

import json
import subprocess
import time

import pytest

from otel_portkey.testing import ANSWER

from components import COLLECTOR_CONFIG, attribute, span_id
from conftest import PORTKEY_STANDIN_KEY
from instrumented import otel_env, run_instrumented

pytestmark = pytest.mark.integration


def test_the_collector_validates_the_shipped_config(go_binaries):
    result = subprocess.run(
        [go_binaries["OTELCOL"], "validate", f"--config={COLLECTOR_CONFIG}"],
        env={"PORTKEY_API_KEY": "x", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "deprecat" not in (result.stdout + result.stderr).lower()


def run_seed_agent(hop, model, **env):
    result = run_instrumented(
        "examples/langchain_agent.py",
        otel_env(
            "http://127.0.0.1:9",
            PORTKEY_GATEWAY_URL=f"{hop.url}/v1",
            PORTKEY_CUSTOM_HOST=model.base_url,
            **env,
        ),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{ANSWER:,}" in result.stdout
    trace_ids = {r.headers["x-portkey-trace-id"] for r in hop.requests}
    assert len(trace_ids) == 1
    return trace_ids.pop(), result


# The seed agent's trace: its own span, invoke_agent, 4 chat spans each with its POST, 3 tool calls.
SEED_TRACE_SPANS = 13


def scalar_attributes(span):
    """An OTLP-JSON span's attributes with scalar values, as Python values."""
    keys = [item["key"] for item in span.get("attributes", [])]
    return {key: value for key in keys if (value := attribute(span, key)) is not None}


def assert_in_jaeger_and_portkey(jaeger, portkey_standin, hop, trace_id):
    """Jaeger stored the whole trace with the structure the gateway saw; Portkey got the same spans."""
    spans = jaeger.trace(trace_id, spans=SEED_TRACE_SPANS)
    assert len(spans) == SEED_TRACE_SPANS, sorted(s["name"] for s in spans)
    by_id = {span_id(s): s for s in spans}
    names = sorted(s["name"] for s in spans)
    assert names.count("execute_tool multiply") + names.count("execute_tool exponentiate") == 3, names
    assert {"seed agent run", "invoke_agent"} <= set(names)

    calls = {span_id(s): s for s in spans if attribute(s, "portkey.span_id")}
    assert len(calls) == len(hop.requests) == 4
    chat_parents = set()
    for received in hop.requests:
        # The parent the gateway was told is the HTTP span Jaeger stored, and that span's own
        # parent is the chat span of the LLM call that made it.
        call = calls[received.headers["x-portkey-parent-span-id"]]
        chat = by_id[span_id(call, "parentSpanId")]
        assert chat["name"] == "chat gpt-4o"
        assert received.headers["x-portkey-span-name"] == chat["name"]
        chat_parents.add(span_id(chat))
        assert received.headers["x-portkey-trace-id"] == trace_id
        assert received.response_headers["x-portkey-trace-id"] == trace_id, "the gateway's own echo"
        assert received.headers["x-portkey-span-id"] == attribute(call, "portkey.span_id")
        assert attribute(call, "portkey.trace_id") == trace_id
        assert attribute(call, "portkey.provider") == received.response_headers["x-portkey-provider"]
        assert attribute(call, "portkey.cache.status") == received.response_headers["x-portkey-cache-status"]
        assert attribute(call, "portkey.retry.attempt_count") == int(
            received.response_headers["x-portkey-retry-attempt-count"]
        )
        sent_metadata = json.loads(received.headers["x-portkey-metadata"])
        assert {"_user": "seed-user", "example": "langchain_agent"}.items() <= sent_metadata.items()
        stored_metadata = {
            key.removeprefix("portkey.metadata."): value
            for key, value in scalar_attributes(call).items()
            if key.startswith("portkey.metadata.")
        }
        assert stored_metadata == sent_metadata
    assert len(chat_parents) == 4, "one chat span per call"

    received = portkey_standin.wait_for(
        lambda got: sum(x.trace_id == trace_id for x in got) >= SEED_TRACE_SPANS
    )
    ours = {s.span_id: s for s in received if s.trace_id == trace_id}
    assert len(ours) == len(spans)
    for stored in spans:
        copy = ours[span_id(stored)]
        assert (copy.name, copy.parent_span_id) == (stored["name"], span_id(stored, "parentSpanId"))
        expected = scalar_attributes(stored)
        assert {key: copy.attributes.get(key) for key in expected} == expected, stored["name"]
    assert all(
        export.headers["x-portkey-api-key"] == PORTKEY_STANDIN_KEY for export in portkey_standin.exports
    )


def test_collector_fans_the_seed_agent_out_to_jaeger_and_portkey(
    hop, model, jaeger, collector, portkey_standin
):
    trace_id, _ = run_seed_agent(hop, model, OTEL_EXPORTER_OTLP_ENDPOINT=collector.otlp_http)
    assert_in_jaeger_and_portkey(jaeger, portkey_standin, hop, trace_id)


def test_otlp_and_portkey_exporters_straight_from_the_app(hop, model, jaeger, portkey_standin):
    trace_id, _ = run_seed_agent(
        hop,
        model,
        OTEL_TRACES_EXPORTER="otlp,portkey",
        OTEL_EXPORTER_OTLP_ENDPOINT=jaeger.otlp_http,
        OTEL_EXPORTER_PORTKEY_ENDPOINT=f"{portkey_standin.endpoint}/v1/otel",
        PORTKEY_API_KEY=PORTKEY_STANDIN_KEY,
    )
    assert_in_jaeger_and_portkey(jaeger, portkey_standin, hop, trace_id)


def test_without_an_api_key_the_app_runs_and_says_so_once(hop, model, jaeger, portkey_standin):
    before = len(portkey_standin.exports) + len(portkey_standin.rejected)
    trace_id, result = run_seed_agent(
        hop,
        model,
        OTEL_TRACES_EXPORTER="otlp,portkey",
        OTEL_EXPORTER_OTLP_ENDPOINT=jaeger.otlp_http,
        OTEL_EXPORTER_PORTKEY_ENDPOINT=f"{portkey_standin.endpoint}/v1/otel",
    )
    assert result.stderr.count("set PORTKEY_API_KEY") == 1
    assert len(portkey_standin.exports) + len(portkey_standin.rejected) == before, (
        "nothing sent without a key"
    )
    assert len(jaeger.trace(trace_id, spans=SEED_TRACE_SPANS)) == SEED_TRACE_SPANS, (
        "the other exporter delivers"
    )


def test_a_portkey_endpoint_that_is_down_does_not_break_the_app(hop, model, jaeger):
    trace_id, result = run_seed_agent(
        hop,
        model,
        OTEL_TRACES_EXPORTER="otlp,portkey",
        OTEL_EXPORTER_OTLP_ENDPOINT=jaeger.otlp_http,
        OTEL_EXPORTER_PORTKEY_ENDPOINT="http://127.0.0.1:9/v1/otel",
        OTEL_EXPORTER_OTLP_TIMEOUT="2",
        PORTKEY_API_KEY=PORTKEY_STANDIN_KEY,
    )
    assert len(jaeger.trace(trace_id, spans=SEED_TRACE_SPANS)) == SEED_TRACE_SPANS
    assert PORTKEY_STANDIN_KEY not in result.stderr + result.stdout


def test_the_collector_retries_portkey_and_keeps_it_apart_from_a_jaeger_that_is_down(go_binaries):
    """collector-config.yaml's promises, by behaviour: spans that Portkey refuses for a while are
    retried from the queue until it accepts them, with the key taken from the environment, and a
    Jaeger that cannot be reached holds nothing back."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from otel_portkey.testing import OtlpReceiver

    from components import Collector

    key = "pk-collector-test-key"
    with OtlpReceiver(required_headers={"x-portkey-api-key": key}, path="/v1/otel/v1/traces") as portkey:
        portkey.fail_next(2, status=503)
        collector = Collector(go_binaries["OTELCOL"], "127.0.0.1:9", f"{portkey.endpoint}/v1/otel", key)
        try:
            provider = TracerProvider()
            provider.add_span_processor(
                SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{collector.otlp_http}/v1/traces"))
            )
            with provider.get_tracer("t").start_as_current_span("through an outage") as span:
                span.set_attribute("portkey.metadata._user", "u1")
            trace_id = format(span.get_span_context().trace_id, "032x")
            received = portkey.wait_for(lambda got: any(s.trace_id == trace_id for s in got), timeout=30)
            deadline = time.monotonic() + 15
            while "127.0.0.1:9" not in (log := collector.log()) and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            collector.stop()
    assert portkey.refused == 2, "Portkey's first answers were failures"
    (delivered,) = [s for s in received if s.trace_id == trace_id]
    assert delivered.name == "through an outage"
    assert delivered.attributes["portkey.metadata._user"] == "u1"
    assert portkey.rejected == [], "every export carried the key from PORTKEY_API_KEY"
    assert all(export.headers.get("content-encoding") == "gzip" for export in portkey.exports)
    assert "127.0.0.1:9" in log, "the Jaeger exporter was failing meanwhile"
