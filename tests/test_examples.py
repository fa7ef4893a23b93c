"""Every example, unchanged, under ``opentelemetry-instrument`` through the real OSS gateway.

A recording hop in front of the gateway shows what the gateway received; an in-test OTLP
receiver collects what the app exported.
"""

import json

import pytest

from otel_portkey.testing import ANSWER, OtlpReceiver

from instrumented import otel_env, run_instrumented

pytestmark = pytest.mark.integration


def run(script, hop, model, root, **extra_env):
    with OtlpReceiver() as receiver:
        env = otel_env(
            receiver.endpoint,
            PORTKEY_GATEWAY_URL=f"{hop.url}/v1",
            PORTKEY_CUSTOM_HOST=model.base_url,
            **extra_env,
        )
        result = run_instrumented(script, env)
        assert result.returncode == 0, result.stderr[-3000:]
        spans = receiver.wait_for(lambda s: any(x.name == root for x in s))
    return result, spans


def assert_one_correlated_trace(spans, hop, calls, caller_name):
    """One trace; each gateway call names its exported HTTP span, named after the calling span."""
    by_id = {s.span_id: s for s in spans}
    (trace_id,) = {s.trace_id for s in spans}
    http_spans = [s for s in spans if "portkey.span_id" in s.attributes]
    assert len(http_spans) == len(hop.requests) == calls
    assert len([s for s in spans if s.kind == 3 and s.name == "POST"]) == calls, "no duplicate HTTP spans"
    for received in hop.requests:
        sent = received.headers
        assert sent["x-portkey-trace-id"] == trace_id
        assert received.response_headers["x-portkey-trace-id"] == trace_id, "the gateway echoed it"
        http_span = by_id[sent["x-portkey-parent-span-id"]]
        assert http_span.attributes["portkey.trace_id"] == trace_id
        assert http_span.attributes["portkey.span_id"] == sent["x-portkey-span-id"]
        caller = by_id[http_span.parent_span_id]
        assert caller.name == caller_name
        assert sent["x-portkey-span-name"] == caller.name
    return trace_id, by_id


@pytest.mark.parametrize("script", ["examples/langchain_agent.py", "examples/langchain_classic_agent.py"])
def test_seed_agent_is_one_correlated_trace(hop, model, script):
    result, spans = run(script, hop, model, "seed agent run")
    assert f"{ANSWER:,}" in result.stdout
    assert_one_correlated_trace(spans, hop, 4, "chat gpt-4o")
    names = [s.name for s in spans]
    assert names.count("execute_tool exponentiate") == 2
    assert names.count("execute_tool multiply") == 1
    for received in hop.requests:
        metadata = json.loads(received.headers["x-portkey-metadata"])
        assert metadata["_user"] == "seed-user"
        assert metadata["service"] == "seed-agent"


def test_openai_direct_sync_async_and_stream(hop, model):
    model.stream_slowly(0.01)
    result, spans = run("examples/openai_direct.py", hop, model, "openai direct")
    assert "sync: echo: Say hello" in result.stdout
    assert "stream: echo: Stream a short answer" in result.stdout
    assert result.stdout.count("async: echo: ") == 2
    assert_one_correlated_trace(spans, hop, 4, "chat gpt-4o")  # the GenAI openai span


def test_portkey_sdk(hop, model):
    result, spans = run("examples/portkey_sdk.py", hop, model, "portkey sdk")
    assert "echo: Say hello" in result.stdout
    assert_one_correlated_trace(spans, hop, 1, "chat gpt-4o")  # the GenAI portkey span
    metadata = json.loads(hop.requests[0].headers["x-portkey-metadata"])
    assert metadata["session"] == "portkey-sdk-example"


def test_disabling_only_the_bridge(hop, model):
    result, spans = run(
        "examples/langchain_agent.py",
        hop,
        model,
        "seed agent run",
        OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="otel_portkey",
    )
    assert f"{ANSWER:,}" in result.stdout
    assert not [r for r in hop.requests if "x-portkey-trace-id" in r.headers], "the bridge is off"
    assert not [s for s in spans if "portkey.span_id" in s.attributes]
    assert {"invoke_agent", "chat gpt-4o"} <= {s.name for s in spans}, "the other instrumentations still run"
    assert len([s for s in spans if s.name == "POST"]) == 4


def test_an_unsampled_trace_still_carries_its_id_to_portkey(hop, model):
    with OtlpReceiver() as receiver:
        env = otel_env(
            receiver.endpoint,
            PORTKEY_GATEWAY_URL=f"{hop.url}/v1",
            PORTKEY_CUSTOM_HOST=model.base_url,
            OTEL_TRACES_SAMPLER="always_off",
        )
        result = run_instrumented("examples/langchain_agent.py", env)
        assert result.returncode == 0, result.stderr[-3000:]
        assert receiver.wait_for(lambda s: bool(s), timeout=1) == []
    assert f"{ANSWER:,}" in result.stdout
    trace_ids = {r.headers["x-portkey-trace-id"] for r in hop.requests}
    assert len(trace_ids) == 1, "Portkey still groups the run's calls under one trace id"
    assert len(trace_ids.pop()) == 32
