"""The export path: collector-config.yaml with a real Collector and Jaeger, and PortkeySpanExporter."""

import subprocess

import pytest
import yaml

from otel_portkey.testing import ANSWER
from otel_portkey.testing.recording_proxy import RecordingProxy

from components import COLLECTOR_CONFIG, attribute
from conftest import PORTKEY_STANDIN_KEY
from instrumented import otel_env, run_instrumented


@pytest.fixture
def hop(oss_gateway, model):
    with RecordingProxy(oss_gateway.url) as proxy:
        yield proxy


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


def assert_in_jaeger_and_portkey(jaeger, portkey_standin, trace_id):
    spans = jaeger.trace(trace_id)
    names = {s["name"] for s in spans}
    assert {"seed agent run", "invoke_agent", "execute_tool multiply"} <= names
    calls = [s for s in spans if attribute(s, "portkey.span_id")]
    assert len(calls) == 4
    for span in calls:
        assert attribute(span, "portkey.trace_id") == trace_id, "the gateway's echo, as Jaeger stored it"
        assert attribute(span, "portkey.cache.status") == "DISABLED"
        assert attribute(span, "portkey.retry.attempt_count") == 0
    received = portkey_standin.wait_for(
        lambda s: any(x.trace_id == trace_id and x.name == "seed agent run" for x in s)
    )
    ours = [s for s in received if s.trace_id == trace_id]
    assert {s.name for s in ours} == names
    assert all(
        export.headers["x-portkey-api-key"] == PORTKEY_STANDIN_KEY for export in portkey_standin.exports
    )


def test_collector_fans_the_seed_agent_out_to_jaeger_and_portkey(
    hop, model, jaeger, collector, portkey_standin
):
    trace_id, _ = run_seed_agent(hop, model, OTEL_EXPORTER_OTLP_ENDPOINT=collector.otlp_http)
    assert_in_jaeger_and_portkey(jaeger, portkey_standin, trace_id)


def test_otlp_and_portkey_exporters_straight_from_the_app(hop, model, jaeger, portkey_standin):
    trace_id, _ = run_seed_agent(
        hop,
        model,
        OTEL_TRACES_EXPORTER="otlp,portkey",
        OTEL_EXPORTER_OTLP_ENDPOINT=jaeger.otlp_http,
        OTEL_EXPORTER_PORTKEY_ENDPOINT=f"{portkey_standin.endpoint}/v1/otel",
        PORTKEY_API_KEY=PORTKEY_STANDIN_KEY,
    )
    assert_in_jaeger_and_portkey(jaeger, portkey_standin, trace_id)


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
    assert jaeger.trace(trace_id), "the other exporter still delivers"


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
    assert jaeger.trace(trace_id)
    assert PORTKEY_STANDIN_KEY not in result.stderr + result.stdout


def test_the_collector_config_keeps_its_promises():
    config = yaml.safe_load(COLLECTOR_CONFIG.read_text())
    pipelines = config["service"]["pipelines"]
    assert set(pipelines) == {"traces/jaeger", "traces/portkey"}
    for pipeline in pipelines.values():
        assert pipeline["receivers"] == ["otlp"]
        assert pipeline["processors"][0] == "memory_limiter"
        assert "batch" in pipeline["processors"]
    for name, exporter in config["exporters"].items():
        assert exporter["retry_on_failure"]["enabled"] is True, name
        assert exporter["sending_queue"]["enabled"] is True, name
    portkey = config["exporters"]["otlp_http/portkey"]
    assert portkey["headers"] == {"x-portkey-api-key": "${env:PORTKEY_API_KEY}"}, "no key in the file"
    assert portkey["endpoint"] == "${env:PORTKEY_OTLP_ENDPOINT:-https://api.portkey.ai/v1/otel}"
    assert config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":-0.0.0.0:4317}")
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":-0.0.0.0:4318}")
