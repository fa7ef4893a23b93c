"""Load through the real gateway: no call ever carries another request's ids; memory stays bounded."""

import asyncio
import gc
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import httpx
import httpx2
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import RequestInfo, ResponseInfo
from opentelemetry.sdk.trace import TracerProvider

from direct_hooks import DirectHooks
from otel_portkey import PortkeyInstrumentor, PortkeySpanProcessor, portkey_metadata
from otel_portkey._contract.ids import format_trace_id
from otel_portkey._otel.kept_trace_ids import MAX_TRACES, portkey_trace_ids
from otel_portkey.config import PortkeySettings
from otel_portkey.testing import route_headers

tracer = trace.get_tracer("load")


def assert_no_cross_talk(spans, requests, echoes):
    """Each request's app span, its HTTP span and the gateway's echo (``echoes``: request label ->
    the ``x-portkey-trace-id`` the gateway answered) all share one trace id."""
    apps = {s.attributes["portkey.metadata.request"]: s for s in spans.all() if s.name == "request"}
    calls = spans.http()
    assert len(apps) == len(calls) == len(echoes) == requests
    for call in calls:
        app = apps[call.attributes["portkey.metadata.request"]]
        trace_id = format_trace_id(app.context.trace_id)
        assert call.context.trace_id == app.context.trace_id
        assert call.parent.span_id == app.context.span_id
        assert echoes[call.attributes["portkey.metadata.request"]] == trace_id, (
            "the gateway echoed this request's own trace id"
        )
        assert call.attributes["portkey.trace_id"] == trace_id


@pytest.mark.integration
def test_1000_concurrent_async_calls(oss_gateway, model, spans):
    PortkeyInstrumentor().instrument(gateway_urls=[oss_gateway.url])
    headers = {**route_headers(model.base_url), "authorization": "Bearer sk-test"}
    echoes = {}

    async def one(client, n, gate):
        async with gate:
            with portkey_metadata(request=str(n)), tracer.start_as_current_span("request"):
                response = await client.post(
                    "/chat/completions",
                    headers=headers,
                    json={"messages": [{"role": "user", "content": str(n)}]},
                )
                assert response.json()["choices"][0]["message"]["content"] == f"echo: {n}"
                echoes[str(n)] = response.headers.get("x-portkey-trace-id")

    async def main():
        gate = asyncio.Semaphore(1000)
        limits = httpx2.Limits(max_connections=200)
        async with httpx2.AsyncClient(base_url=oss_gateway.base_url, limits=limits, timeout=120) as client:
            await asyncio.gather(*(one(client, n, gate) for n in range(1000)))

    asyncio.run(main())
    assert_no_cross_talk(spans, 1000, echoes)


@pytest.mark.integration
def test_50_threads_of_calls(oss_gateway, model, spans):
    PortkeyInstrumentor().instrument(gateway_urls=[oss_gateway.url])
    headers = {**route_headers(model.base_url), "authorization": "Bearer sk-test"}
    echoes = {}

    def worker(thread):
        with httpx.Client(base_url=oss_gateway.base_url, timeout=120) as client:
            for n in range(10):
                with portkey_metadata(request=f"{thread}-{n}"), tracer.start_as_current_span("request"):
                    response = client.post("/chat/completions", headers=headers, json={"messages": []})
                    assert response.status_code == 200
                    echoes[f"{thread}-{n}"] = response.headers.get("x-portkey-trace-id")

    with ThreadPoolExecutor(50) as pool:
        list(pool.map(worker, range(50)))
    assert_no_cross_talk(spans, 500, echoes)


@pytest.mark.slow
def test_100000_sequential_calls_keep_memory_and_registries_bounded():
    """The full hook path on real httpx objects and SDK spans (no network, so it takes seconds)."""
    provider = TracerProvider()
    processor = PortkeySpanProcessor()
    provider.add_span_processor(processor)
    local = provider.get_tracer("load")
    gateway = "http://127.0.0.1:8787"
    bridge = DirectHooks(PortkeySettings.from_env({}, gateway_urls=[gateway]))

    def call(n):
        request = httpx.Request("POST", f"{gateway}/v1/chat/completions")
        if n % 2:
            request.headers["x-portkey-trace-id"] = f"caller-{n}"
        with (
            local.start_as_current_span("chat"),
            local.start_as_current_span("POST", kind=trace.SpanKind.CLIENT) as span,
        ):
            info = RequestInfo(b"POST", request.url, request.headers, request.stream, request.extensions)
            bridge.request_hook(span, info)
            response = httpx.Response(200, headers={"x-portkey-cache-status": "MISS"})
            bridge.response_hook(
                span, info, ResponseInfo(200, response.headers, response.stream, response.extensions)
            )

    for n in range(2000):
        call(n)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for n in range(100_000):
        call(n)
    gc.collect()
    growth = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert processor.tracked_calls == 0
    assert len(portkey_trace_ids) <= MAX_TRACES
    assert growth < 1_000_000, f"{growth} bytes kept after 100,000 calls"
