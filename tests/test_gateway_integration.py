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
from otel_portkey.ids import format_span_id, format_trace_id
from otel_portkey.testing import route_headers
from otel_portkey.testing.recording_proxy import RecordingProxy

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
    """Each request the gateway received names its HTTP span; that span carries the echo."""
    by_id = {format_span_id(s.context.span_id): s for s in spans.http()}
    assert len(by_id) == count == len(hop.requests)
    for received in hop.requests:
        span = by_id.pop(received.headers["x-portkey-parent-span-id"])
        trace_id = format_trace_id(span.context.trace_id)
        assert received.headers["x-portkey-trace-id"] == trace_id
        assert span.attributes["portkey.trace_id"] == trace_id, "the gateway echoed the OTel trace id"
        assert received.headers["x-portkey-span-id"] == span.attributes["portkey.span_id"]
        assert span.attributes["portkey.provider"] == "openai"
        assert span.attributes["portkey.cache.status"] == "DISABLED"
        assert span.attributes["portkey.retry.attempt_count"] == 0
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
    (span,) = spans.http()
    assert span.attributes["portkey.retry.attempt_count"] == -1
    assert span.status.status_code.name == "ERROR"


def test_streamed_completion_through_the_gateway(hop, model, spans):
    """Streams work through the gateway once its ``@hono/node-server`` is pinned (see testing.gateway)."""
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
    assert span.attributes["portkey.trace_id"] == hop.requests[0].headers["x-portkey-trace-id"]
    assert (span.end_time - span.start_time) / 1e9 >= 0.02 * 3, "the span covers the streamed body"
