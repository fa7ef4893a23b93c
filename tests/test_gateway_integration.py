"""Through the real OSS Portkey gateway: real openai 3.x, portkey-ai and httpx clients.

A recording hop sits in front of the gateway (the gateway forwards no ``x-portkey-*`` header
upstream), so each test sees exactly what the gateway received and what it answered.
"""

import asyncio
import json

import httpx
import openai
import pytest
from portkey_ai import Portkey

from otel_portkey import PortkeyInstrumentor
from otel_portkey._contract.ids import format_span_id, format_trace_id
from otel_portkey.testing import RecordingProxy, route_headers

pytestmark = pytest.mark.integration

RETRY_ON_429 = json.dumps({"retry": {"attempts": 2, "on_status_codes": [429]}})


@pytest.fixture
def hop(oss_gateway, model):
    with RecordingProxy(oss_gateway.url) as proxy:
        PortkeyInstrumentor().instrument(gateway_urls=[proxy.url])
        yield proxy
        PortkeyInstrumentor().uninstrument()


def openai_client(hop, model, cls=openai.OpenAI, extra=None):
    return cls(
        base_url=f"{hop.url}/v1",
        api_key="sk-test",
        default_headers={**route_headers(model.base_url), **(extra or {})},
    )


def assert_correlated(hop, spans, count):
    """Each request the gateway received names its HTTP span; the gateway's answer, as the hop
    recorded it, echoes that span's trace id, and the span carries what the gateway answered."""
    by_id = {format_span_id(s.context.span_id): s for s in spans.http()}
    assert len(by_id) == count == len(hop.requests)
    for received in hop.requests:
        span = by_id.pop(received.headers["x-portkey-parent-span-id"])
        trace_id = format_trace_id(span.context.trace_id)
        answered = received.response_headers
        assert received.headers["x-portkey-trace-id"] == trace_id
        assert answered["x-portkey-trace-id"] == trace_id, "the gateway echoed the OTel trace id"
        assert span.attributes["portkey.trace_id"] == trace_id
        assert received.headers["x-portkey-span-id"] == span.attributes["portkey.span_id"]
        assert answered["x-portkey-provider"] == span.attributes["portkey.provider"] == "openai"
        assert answered["x-portkey-cache-status"] == span.attributes["portkey.cache.status"] == "DISABLED"
        assert answered["x-portkey-retry-attempt-count"] == "0"
        assert span.attributes["portkey.retry.attempt_count"] == 0
        assert answered["x-portkey-last-used-option-index"] == "config"
        assert span.attributes["portkey.last_used_option_index"] == "config"
    assert by_id == {}


def test_openai_sync_client(hop, model, spans):
    client = openai_client(hop, model)
    completion = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hello"}]
    )
    assert completion.choices[0].message.content == "echo: hello"
    assert_correlated(hop, spans, 1)


def test_openai_async_client(hop, model, spans):
    async def run():
        async with openai_client(hop, model, openai.AsyncOpenAI) as client:
            return await asyncio.gather(
                *(
                    client.chat.completions.create(
                        model="gpt-4o", messages=[{"role": "user", "content": f"q{i}"}]
                    )
                    for i in range(3)
                )
            )

    answers = sorted(c.choices[0].message.content for c in asyncio.run(run()))
    assert answers == ["echo: q0", "echo: q1", "echo: q2"]
    assert_correlated(hop, spans, 3)


def test_portkey_sdk_client(hop, model, spans):
    client = Portkey(
        base_url=f"{hop.url}/v1",
        provider="openai",
        custom_host=model.base_url,
        Authorization="Bearer sk-test",
    )
    completion = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "from portkey"}]
    )
    assert completion.choices[0].message.content == "echo: from portkey"
    assert_correlated(hop, spans, 1)


def test_raw_httpx(hop, model, spans):
    response = httpx.post(
        f"{hop.url}/v1/chat/completions",
        headers={**route_headers(model.base_url), "authorization": "Bearer sk-test"},
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "raw"}]},
    )
    assert response.status_code == 200
    assert_correlated(hop, spans, 1)


def test_retries_configured_in_portkey_config_show_on_the_span(hop, model, spans):
    model.fail_next(1, status=429)
    client = openai_client(hop, model, extra={"x-portkey-config": RETRY_ON_429})
    client.with_options(max_retries=0).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}]
    )
    assert hop.requests[0].response_headers["x-portkey-retry-attempt-count"] == "1"
    (span,) = spans.http()
    assert span.attributes["portkey.retry.attempt_count"] == 1
    assert len(model.received) == 2


def test_exhausted_retries_show_minus_one(hop, model, spans):
    model.fail_next(3, status=429)
    client = openai_client(hop, model, extra={"x-portkey-config": RETRY_ON_429})
    with pytest.raises(openai.RateLimitError):
        client.with_options(max_retries=0).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    assert hop.requests[0].response_headers["x-portkey-retry-attempt-count"] == "-1"
    (span,) = spans.http()
    assert span.attributes["portkey.retry.attempt_count"] == -1
    assert span.status.status_code.name == "ERROR"


def test_streamed_completion_through_the_gateway(hop, model, spans):
    """Streams work through the gateway once its ``@hono/node-server`` is pinned (_peers/oss_gateway.py)."""
    model.stream_slowly(0.02)
    client = openai_client(hop, model)
    stream = client.chat.completions.create(
        model="gpt-4o", stream=True, messages=[{"role": "user", "content": "stream these words"}]
    )
    first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant"
    assert spans.http() == [], "the HTTP span stays open while tokens arrive"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "echo: stream these words"
    (span,) = spans.http()
    (received,) = hop.requests
    trace_id = format_trace_id(span.context.trace_id)
    assert received.headers["x-portkey-trace-id"] == trace_id
    assert received.response_headers["x-portkey-trace-id"] == trace_id, "the gateway echoed it"
    assert received.response_headers["content-type"].startswith("text/event-stream")
    assert span.attributes["portkey.trace_id"] == trace_id
    assert (span.end_time - span.start_time) / 1e9 >= 0.02 * 3, "the span covers the streamed body"


def fallback_config(first_host, second_host):
    """Two OpenAI-compatible targets, the second used only when the first fails."""
    return json.dumps(
        {
            "strategy": {"mode": "fallback"},
            "targets": [
                {"provider": "openai", "custom_host": first_host, "api_key": "sk-first"},
                {"provider": "openai", "custom_host": second_host, "api_key": "sk-second"},
            ],
        }
    )


def test_the_fallback_target_used_is_the_option_index_on_the_span(hop, model, spans):
    """The first target answers 500, so the gateway falls back to the second: index 1, not the trivial 0."""
    model.fail_next(1, status=500)
    client = openai.OpenAI(
        base_url=f"{hop.url}/v1",
        api_key="sk-unused",
        default_headers={"x-portkey-config": fallback_config(model.base_url, model.base_url)},
    )
    completion = client.with_options(max_retries=0).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "fall back"}]
    )
    assert completion.choices[0].message.content == "echo: fall back"
    assert [r.headers["authorization"] for r in model.received] == ["Bearer sk-first", "Bearer sk-second"]
    (received,) = hop.requests
    assert received.status == 200
    assert received.response_headers["x-portkey-last-used-option-index"] == "config.targets[1]"
    (span,) = spans.http()
    assert span.attributes["portkey.last_used_option_index"] == "config.targets[1]"
    assert span.status.status_code.name != "ERROR"
    assert "portkey.gateway.exception" not in span.attributes


def test_a_gateway_exception_marks_the_span_as_an_error(hop, spans):
    """The OSS gateway answers its own errors (here: an endpoint the provider lacks) with
    ``x-portkey-gateway-exception: true``; an upstream's error is not one (see the retry tests)."""
    client = openai.OpenAI(
        base_url=f"{hop.url}/v1", api_key="sk-test", default_headers={"x-portkey-provider": "anthropic"}
    )
    with pytest.raises(openai.InternalServerError, match="embed is not supported by anthropic"):
        client.with_options(max_retries=0).embeddings.create(model="any", input="x")
    (received,) = hop.requests
    assert received.status == 500
    assert received.response_headers["x-portkey-gateway-exception"] == "true"
    (span,) = spans.http()
    assert span.attributes["portkey.gateway.exception"] is True
    assert span.status.status_code.name == "ERROR"
    assert span.status.description == "Portkey gateway exception"


def test_an_upstream_error_is_not_a_gateway_exception(hop, model, spans):
    model.fail_next(1, status=500)
    client = openai_client(hop, model)
    with pytest.raises(openai.InternalServerError):
        client.with_options(max_retries=0).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    (received,) = hop.requests
    assert received.status == 500
    assert "x-portkey-gateway-exception" not in received.response_headers
    (span,) = spans.http()
    assert "portkey.gateway.exception" not in span.attributes
    assert span.status.description != "Portkey gateway exception"
