"""The seed's agent, unchanged, under ``opentelemetry-instrument`` through the real OSS gateway."""

import json

import pytest

from otel_portkey.testing import ANSWER
from otel_portkey.testing.otlp_receiver import OtlpReceiver
from otel_portkey.testing.recording_proxy import RecordingProxy

from instrumented import otel_env, run_instrumented


@pytest.fixture
def hop(oss_gateway, model):
    with RecordingProxy(oss_gateway.url) as proxy:
        yield proxy


def test_seed_agent_is_one_correlated_trace(hop, model):
    with OtlpReceiver() as receiver:
        env = otel_env(
            receiver.endpoint,
            PORTKEY_GATEWAY_URL=f"{hop.url}/v1",
            PORTKEY_CUSTOM_HOST=model.base_url,
        )
        result = run_instrumented("examples/langchain_agent.py", env)
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"{ANSWER:,}" in result.stdout
        spans = receiver.wait_for(lambda s: any(x.name == "seed agent run" for x in s))

    by_id = {s.span_id: s for s in spans}
    assert len({s.trace_id for s in spans}) == 1, "one agent run is one trace"
    (trace_id,) = {s.trace_id for s in spans}
    http_spans = [s for s in spans if "portkey.span_id" in s.attributes]
    assert len(http_spans) == len(hop.requests) == 4
    assert {s.name for s in spans} >= {"invoke_agent", "execute_tool multiply", "execute_tool exponentiate"}

    for received in hop.requests:
        sent = received.headers
        assert sent["x-portkey-trace-id"] == trace_id
        http_span = by_id[sent["x-portkey-parent-span-id"]]
        assert http_span.attributes["portkey.trace_id"] == trace_id, "the gateway echoed the OTel trace id"
        assert http_span.attributes["portkey.span_id"] == sent["x-portkey-span-id"]
        caller = by_id[http_span.parent_span_id]
        assert caller.name == "chat gpt-4o"
        assert sent["x-portkey-span-name"] == caller.name
        # the caller's createHeaders(metadata=...) merged with the resource's service name
        assert json.loads(sent["x-portkey-metadata"]) == {
            "_user": "seed-user",
            "example": "langchain_agent",
            "service": "seed-agent",
        }
        assert http_span.attributes["portkey.metadata._user"] == "seed-user"
