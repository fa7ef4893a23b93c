"""Every Portkey gateway reads a bridged request the same way, within Portkey's rules.

Hosted Portkey reads ``traceparent`` and ``baggage`` besides ``x-portkey-*``; the OSS gateway reads
only ``x-portkey-*``. For each case the request goes through the real OSS gateway behind a recording
hop, and the headers the gateway received are read both ways (``read_as_oss``, ``read_as_hosted``):
the readings must be equal, name the OTel trace, the HTTP span as parent and the bridge's span id, and
carry every metadata entry once with every value within Portkey's rules.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import httpx2
import openai
import pytest
from opentelemetry import baggage, context, trace
from portkey_ai import Portkey, createHeaders

from otel_portkey import PortkeyInstrumentor, portkey_metadata
from otel_portkey.testing import parse_traceparent, read_as_hosted, read_as_oss, route_headers

from clients_all import CLIENTS as ALL_CLIENTS
from conftest import SERVICE_NAME

pytestmark = pytest.mark.integration

tracer = trace.get_tracer("test")
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
# Upstream baggage of every awkward kind: long, control characters, unicode, percent-encoded.
UPSTREAM = {
    "tenant.id": "acme",
    "blob": "b" * 300,
    "portkey.metadata.ctrl": "a\r\nb\x00c",
    "portkey.metadata.unicode": "naïve ☃ €",
    "portkey.metadata.pct": "a%20b,c=d;e",
    "enduser.id": "upstream-user",
}


def headers(model, **create_headers):
    return {
        **route_headers(model.base_url),
        "authorization": "Bearer sk-test",
        **createHeaders(**create_headers),
    }


@contextlib.contextmanager
def upstream_baggage(entries):
    ctx = None
    for key, value in entries.items():
        ctx = baggage.set_baggage(key, value, context=ctx)
    token = context.attach(ctx)
    try:
        yield
    finally:
        context.detach(token)


def agreed_reading(received, trace_id=None, http_span=None):
    """Both readings of what the gateway received, checked equal and within the rules; returns one."""
    sent = received.headers
    oss = read_as_oss(sent)
    hosted = read_as_hosted(sent, received.method, received.path.split("?")[0])
    assert hosted == oss, (hosted, oss)
    w3c = parse_traceparent(sent.get("traceparent"))
    assert w3c is not None
    assert w3c[1] == sent["x-portkey-parent-span-id"], "traceparent and x-portkey name the same parent"
    assert oss.trace_id == (trace_id or w3c[0])
    if http_span is not None:
        assert oss.parent_span_id == format(http_span.context.span_id, "016x")
        assert oss.span_id == http_span.attributes["portkey.span_id"]
    assert oss.rule_breaks() == []
    assert not [key for key in oss.metadata if key.startswith("portkey.metadata.")], "each entry once"
    assert len(str(sent.get("x-portkey-metadata", ""))) <= 4096
    return oss


def call_with_httpx(hop, model, **create_headers):
    response = httpx.post(
        f"{hop.url}/v1/chat/completions", headers=headers(model, **create_headers), json=CHAT
    )
    assert response.status_code == 200


def test_no_metadata_anywhere(hop, model, spans):
    PortkeyInstrumentor().instrument(gateway_urls=[hop.url])
    with tracer.start_as_current_span("app"):
        call_with_httpx(hop, model)
    (span,) = spans.http()
    reading = agreed_reading(hop.requests[0], format(span.context.trace_id, "032x"), span)
    assert reading.metadata == {"service": SERVICE_NAME}


@pytest.mark.parametrize("trusted", [False, True], ids=["default", "trusted baggage"])
def test_the_documented_example(hop, model, spans, trusted):
    """Context metadata, caller metadata and upstream baggage together (the hosted-Portkey issue's
    example): each entry once, the upstream entries only when trusted, and then made safe."""
    PortkeyInstrumentor().instrument(gateway_urls=[hop.url], trusted_baggage_keys="*" if trusted else None)
    with (
        upstream_baggage(UPSTREAM),
        tracer.start_as_current_span("app"),
        portkey_metadata(_user="alice", session="s-7"),
    ):
        call_with_httpx(hop, model, metadata={"plan": "pro"})
    (span,) = spans.http()
    reading = agreed_reading(hop.requests[0], format(span.context.trace_id, "032x"), span)
    local = {"_user": "alice", "session": "s-7", "plan": "pro", "service": SERVICE_NAME}
    assert local.items() <= reading.metadata.items()
    upstream = set(reading.metadata) - set(local)
    if not trusted:
        assert upstream == set()
        return
    assert upstream == {"tenant.id", "blob", "ctrl", "unicode", "pct"}
    assert reading.metadata["blob"] == "b" * 127 + "…"
    assert reading.metadata["ctrl"] == "abc"
    assert reading.metadata["unicode"] == "naïve ☃ €"
    assert reading.metadata["pct"] == "a%20b,c=d;e"
    assert reading.metadata["_user"] == "alice", "the process's own _user wins over enduser.id"


def test_many_entries(hop, model, spans):
    PortkeyInstrumentor().instrument(gateway_urls=[hop.url])
    with tracer.start_as_current_span("app"), portkey_metadata({f"key{i}": f"value{i}" for i in range(100)}):
        call_with_httpx(hop, model)
    (span,) = spans.http()
    reading = agreed_reading(hop.requests[0], format(span.context.trace_id, "032x"), span)
    assert {f"key{i}" for i in range(64)} <= set(reading.metadata)


@pytest.mark.parametrize("policy", ["respect", "override"])
def test_both_trace_id_policies(hop, model, spans, policy):
    PortkeyInstrumentor().instrument(gateway_urls=[hop.url], trace_id_policy=policy)
    with tracer.start_as_current_span("app"):
        call_with_httpx(hop, model, trace_id="callers-own-trace")
    (span,) = spans.http()
    otel = format(span.context.trace_id, "032x")
    agreed_reading(hop.requests[0], otel if policy == "override" else "callers-own-trace", span)


def test_an_unsampled_trace(hop, model, spans):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    provider = TracerProvider(sampler=ALWAYS_OFF)
    PortkeyInstrumentor().instrument(tracer_provider=provider, gateway_urls=[hop.url])
    with provider.get_tracer("t").start_as_current_span("dropped") as root, portkey_metadata(_user="u1"):
        call_with_httpx(hop, model)
    assert spans.all() == []
    reading = agreed_reading(hop.requests[0], format(root.get_span_context().trace_id, "032x"))
    assert reading.metadata["_user"] == "u1"


def _openai_sync(hop, model):
    openai.OpenAI(
        base_url=f"{hop.url}/v1", api_key="sk-test", default_headers=headers(model)
    ).chat.completions.create(**CHAT)


def _openai_async(hop, model):
    async def run():
        async with openai.AsyncOpenAI(
            base_url=f"{hop.url}/v1", api_key="sk-test", default_headers=headers(model)
        ) as c:
            await c.chat.completions.create(**CHAT)

    asyncio.run(run())


def _portkey_sdk(hop, model):
    Portkey(
        base_url=f"{hop.url}/v1",
        provider="openai",
        custom_host=model.base_url,
        Authorization="Bearer sk-test",
    ).chat.completions.create(**CHAT)


def _httpx2(hop, model):
    assert httpx2.post(f"{hop.url}/v1/chat/completions", headers=headers(model), json=CHAT).status_code == 200


def _instrumented(name):
    """A call with one of clients_all's libraries, its OTel instrumentation on for the call."""
    instrumentor_class, call = ALL_CLIENTS[name]

    def run(hop, model):
        instrumentor_class().instrument()
        try:
            assert call(f"{hop.url}/v1/chat/completions", headers(model), CHAT) == 200
        finally:
            instrumentor_class().uninstrument()

    return run


CLIENTS = {
    "requests": _instrumented("requests"),
    "urllib": _instrumented("urllib"),
    "urllib3": _instrumented("urllib3"),
    "aiohttp": _instrumented("aiohttp"),
    "openai sync (httpx2)": _openai_sync,
    "openai async (httpx2)": _openai_async,
    "portkey-ai (httpx)": _portkey_sdk,
    "httpx": lambda hop, model: call_with_httpx(hop, model),
    "httpx2": _httpx2,
}


@pytest.mark.parametrize("client", list(CLIENTS))
def test_every_client(hop, model, spans, client):
    PortkeyInstrumentor().instrument(gateway_urls=[hop.url], trusted_baggage_keys="tenant.id")
    with (
        upstream_baggage(UPSTREAM),
        tracer.start_as_current_span("app"),
        portkey_metadata(_user="alice"),
    ):
        CLIENTS[client](hop, model)
    (span,) = spans.http()
    (received,) = hop.requests
    reading = agreed_reading(received, format(span.context.trace_id, "032x"), span)
    assert reading.metadata["_user"] == "alice"
    assert reading.metadata["tenant.id"] == "acme"
    assert "blob" not in reading.metadata
    # The response side: what the gateway itself answered is what the span says.
    answered = received.response_headers
    assert answered["x-portkey-trace-id"] == reading.trace_id
    assert span.attributes["portkey.trace_id"] == answered["x-portkey-trace-id"]
    assert span.attributes["portkey.provider"] == answered["x-portkey-provider"] == "openai"
    assert span.attributes["portkey.cache.status"] == answered["x-portkey-cache-status"]
    assert span.attributes["portkey.retry.attempt_count"] == int(answered["x-portkey-retry-attempt-count"])
