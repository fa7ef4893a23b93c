"""A streamed chat completion keeps its HTTP span open until the stream ends or is closed."""

import asyncio
import time

import httpx
import httpx2
import pytest

from otel_portkey._contract.call import is_event_stream
from otel_portkey._otel.bridge import GatewayCall


def end_span_when_stream_closes(span, stream):
    """What the bridge does with a streamed answer: its call, in for the span's end, waits for the
    stream's ``close`` or ``aclose``."""
    call = GatewayCall.begin(span, None, hooked=True)
    assert call is not None
    return call.stream(stream, ("close",), ("aclose",))


STREAM = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "one two three"}]}


def url(model):
    return f"http://127.0.0.1:{model.port}/v1/chat/completions"


@pytest.mark.parametrize("module", [httpx, httpx2])
def test_span_ends_when_the_stream_is_fully_read(bridge, model, spans, module):
    with module.Client() as client, client.stream("POST", url(model), json=STREAM) as response:
        assert response.headers["content-type"] == "text/event-stream"
        assert spans.http() == [], "the HTTP span is still open while the body streams"
        body_started = time.time_ns()
        body = response.read()
        assert b"[DONE]" in body
        (span,) = spans.http()
    assert span.attributes["portkey.span_id"] == model.received[-1].headers["x-portkey-span-id"]
    assert span.end_time >= body_started, "the span ended once the body was read, not before"


@pytest.mark.parametrize("module", [httpx, httpx2])
def test_span_ends_when_the_stream_is_closed_early(bridge, model, spans, module):
    model.stream_slowly(0.05)
    with module.Client() as client, client.stream("POST", url(model), json=STREAM) as response:
        chunks = response.iter_raw()
        next(chunks)
        assert spans.http() == []
    assert len(spans.http()) == 1


@pytest.mark.parametrize("module", [httpx, httpx2])
def test_async_stream_keeps_the_span_open_until_its_end(bridge, model, spans, module):
    async def run():
        async with module.AsyncClient() as client, client.stream("POST", url(model), json=STREAM) as response:
            assert spans.http() == []
            chunks = [chunk async for chunk in response.aiter_raw()]
            assert chunks
        return spans.http()

    (span,) = asyncio.run(run())
    assert span.attributes["portkey.trace_id"] == model.received[-1].headers["x-portkey-trace-id"]


def test_a_plain_json_answer_ends_the_span_at_once(bridge, model, spans):
    with (
        httpx.Client() as client,
        client.stream("POST", url(model), json={**STREAM, "stream": False}) as response,
    ):
        assert len(spans.http()) == 1
        response.read()


def test_an_abandoned_stream_still_ends_its_span_when_collected(spans):
    from opentelemetry import trace

    class Stream:
        def close(self):
            pass

    span = trace.get_tracer("t").start_span("abandoned")
    stream = Stream()
    assert end_span_when_stream_closes(span, stream)
    span.end()
    assert span.end_time is None
    del stream
    import gc

    gc.collect()
    assert span.end_time is not None


def test_event_stream_detection():
    assert is_event_stream("text/event-stream; charset=utf-8")
    assert is_event_stream("Text/Event-Stream")
    assert not is_event_stream("application/json")
    assert not is_event_stream(None)


def test_a_stream_that_can_only_be_half_patched_never_ends_the_span_twice(spans, caplog):
    from opentelemetry import trace

    class HalfPatchable:
        """``close`` can be replaced, ``aclose`` cannot (a method under ``__slots__``)."""

        __slots__ = ("__weakref__", "close")

        def __init__(self):
            self.close = lambda: None

        async def aclose(self):
            pass

    span = trace.get_tracer("t").start_span("half")
    stream = HalfPatchable()
    assert not end_span_when_stream_closes(span, stream)
    span.end()  # the instrumentation ends the span as usual
    ended_at = span.end_time
    with caplog.at_level("WARNING"):
        stream.close()
    assert span.end_time == ended_at
    assert "ended span" not in caplog.text  # the SDK's "Calling end() on an ended span"
