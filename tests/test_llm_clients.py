"""Every LLM client library through the real OSS gateway, bridged the same way.

openai (sync, async), portkey-ai, anthropic, langchain-anthropic and LiteLLM (sync, async; its
async calls go through aiohttp), plain and streamed, with the bridge and every OTel HTTP client
instrumentation installed. A recording hop shows what the gateway received and what it answered.
"""

import pytest
from opentelemetry import baggage, context, trace

from otel_portkey import PortkeyInstrumentor
from otel_portkey.testing import parse_traceparent, read_as_hosted, read_as_oss

from llm_clients import LLM_CLIENTS

pytestmark = pytest.mark.integration

tracer = trace.get_tracer("test")


@pytest.fixture
def hop(hop, request):
    """conftest's hop, with the bridge and then every client instrumentation installed."""
    PortkeyInstrumentor().instrument(gateway_urls=[hop.url])
    request.getfixturevalue("every_client_instrumented")
    return hop


def routing(name, model):
    provider = "anthropic" if "anthropic" in name else "openai"
    return {"x-portkey-provider": provider, "x-portkey-custom-host": model.base_url}


def assert_bridged(hop, spans):
    (span,) = spans.http()
    (received,) = hop.requests
    trace_id = format(span.context.trace_id, "032x")
    assert received.headers["x-portkey-trace-id"] == trace_id
    assert received.headers["x-portkey-parent-span-id"] == format(span.context.span_id, "016x")
    assert received.headers["x-portkey-span-id"] == span.attributes["portkey.span_id"]
    assert "baggage" not in received.headers
    # Hosted Portkey (which also reads traceparent and baggage) and the OSS gateway read it alike.
    oss = read_as_oss(received.headers)
    assert read_as_hosted(received.headers, received.method, received.path) == oss
    assert oss.rule_breaks() == []
    assert (
        parse_traceparent(received.headers["traceparent"])[1] == received.headers["x-portkey-parent-span-id"]
    )
    assert received.response_headers["x-portkey-trace-id"] == trace_id, "the gateway's own echo"
    assert span.attributes["portkey.trace_id"] == trace_id
    assert span.attributes["portkey.provider"] == received.response_headers["x-portkey-provider"]
    assert span.attributes["portkey.retry.attempt_count"] == int(
        received.response_headers["x-portkey-retry-attempt-count"]
    )
    return span


@pytest.mark.parametrize("name", list(LLM_CLIENTS))
def test_a_call(hop, model, spans, name):
    """Inside a request that brought forged baggage: some SDKs (anthropic) inject it themselves."""
    runner, _, _ = LLM_CLIENTS[name]
    token = context.attach(baggage.set_baggage("_user", "mallory"))
    try:
        with tracer.start_as_current_span("app"):
            text, _ = runner(f"{hop.url}/v1", routing(name, model), spans.http)
    finally:
        context.detach(token)
    assert text == "echo: hi"
    assert_bridged(hop, spans)


@pytest.mark.parametrize("name", [name for name, (_, _, streamed) in LLM_CLIENTS.items() if streamed])
def test_a_streamed_call(hop, model, spans, name):
    _, _, streamed = LLM_CLIENTS[name]
    model.stream_slowly(0.02)
    with tracer.start_as_current_span("app"):
        text, open_while_streaming = streamed(f"{hop.url}/v1", routing(name, model), spans.http)
    assert text == "echo: hi"
    assert open_while_streaming == [], "the HTTP span stays open while tokens arrive"
    span = assert_bridged(hop, spans)
    assert (span.end_time - span.start_time) / 1e9 >= 0.02 * 2, "the span covers the streamed body"
