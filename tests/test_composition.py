"""The bridge among other instrumentations: every load order, threads and tasks."""

import asyncio
import itertools
import json
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from opentelemetry import context, trace
from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor, HTTPXClientInstrumentor

from otel_portkey import PortkeyInstrumentor, portkey_metadata
from otel_portkey._contract.ids import format_trace_id
from otel_portkey._otel import instrumentor as bridge_module

INSTRUMENTORS = {
    "httpx": HTTPXClientInstrumentor,
    "httpx2": HTTPX2ClientInstrumentor,
    "genai-openai": OpenAIInstrumentor,
    "otel_portkey": PortkeyInstrumentor,
}
tracer = trace.get_tracer("test")


def client(model, cls=openai.OpenAI):
    return cls(base_url=model.base_url, api_key="sk-test", max_retries=0)


@pytest.mark.parametrize("order", list(itertools.permutations(INSTRUMENTORS)), ids="-".join)
def test_every_load_order_gives_the_same_result(model, spans, order):
    bridge_module._auto_instrumentation_starting()  # as opentelemetry-instrument does
    try:
        for name in order:
            kwargs = {"gateway_urls": [f"http://127.0.0.1:{model.port}"]} if name == "otel_portkey" else {}
            INSTRUMENTORS[name]().instrument(**kwargs)
    finally:
        bridge_module._auto_instrumentation_finished()
    try:
        with tracer.start_as_current_span("app") as app:
            client(model).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        sent = model.received[-1].headers
        assert sent["x-portkey-trace-id"] == format_trace_id(app.get_span_context().trace_id)
        assert sent["x-portkey-span-name"] == "chat gpt-4o"
        assert len([s for s in spans.all() if s.name == "POST"]) == 1, "one HTTP span"
        assert len(spans.named("chat gpt-4o")) == 1
    finally:
        OpenAIInstrumentor().uninstrument()


def test_threads_never_mix_ids(bridge, model, spans):
    """LangChain runs tools in thread pools with copied contexts; each call keeps its own trace."""

    def one_request(n):
        with tracer.start_as_current_span(f"request {n}") as span, portkey_metadata(request=str(n)):
            ctx = context.get_current()

            def in_pool():
                token = context.attach(ctx)
                try:
                    client(model).chat.completions.create(
                        model="gpt-4o", messages=[{"role": "user", "content": str(n)}]
                    )
                finally:
                    context.detach(token)

            with ThreadPoolExecutor(1) as inner:
                inner.submit(in_pool).result()
            return format_trace_id(span.get_span_context().trace_id)

    with ThreadPoolExecutor(16) as pool:
        expected = dict(enumerate(pool.map(one_request, range(50))))
    assert len(model.received) == 50
    for received in model.received:
        request = int(json.loads(received.headers["x-portkey-metadata"])["request"])
        assert received.headers["x-portkey-trace-id"] == expected[request]


def test_tasks_never_mix_ids(bridge, model, spans):
    async def one_request(async_client, n):
        with tracer.start_as_current_span(f"request {n}") as span, portkey_metadata(request=str(n)):
            await async_client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": str(n)}]
            )
            return format_trace_id(span.get_span_context().trace_id)

    async def main():
        async with client(model, openai.AsyncOpenAI) as async_client:
            return await asyncio.gather(*(one_request(async_client, n) for n in range(200)))

    expected = dict(enumerate(asyncio.run(main())))
    assert len(model.received) == 200
    for received in model.received:
        request = int(json.loads(received.headers["x-portkey-metadata"])["request"])
        assert received.headers["x-portkey-trace-id"] == expected[request]


def test_an_unsampled_trace_keeps_its_id_on_the_wire(model, spans):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    provider = TracerProvider(sampler=ALWAYS_OFF)
    PortkeyInstrumentor().instrument(
        tracer_provider=provider, gateway_urls=[f"http://127.0.0.1:{model.port}"]
    )
    with provider.get_tracer("t").start_as_current_span("dropped") as root:
        answer = client(model).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    assert answer.choices[0].message.content == "echo: x"
    sent = model.received[-1].headers
    assert not root.is_recording()
    assert sent["x-portkey-trace-id"] == format_trace_id(root.get_span_context().trace_id)
    assert len(sent["x-portkey-parent-span-id"]) == 16
    assert spans.all() == []
