"""Per call with the network taken out: the whole client stack, the OTel instrumentation and the
bridge run for real, but the transport's connection pool answers from memory.

Loopback round trips cost hundreds of microseconds and vary by as much, which hides a cost of a
few tens; here every microsecond measured is the client's, so the ratios are precise. The
"contract floor" row is what the contract alone costs through the libraries' public API: setting
the five ``x-portkey-*`` headers with ``Headers.__setitem__`` and the span attributes the
contract names with ``Span.set_attributes`` — measured in the same run.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

import httpcore
import httpcore2
import httpx
import httpx2
from harness import interleave_samples, paired_cpu, quiet_gc, sdk_provider, table, timed, us
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor, HTTPXClientInstrumentor

from otel_portkey import PortkeyInstrumentor, portkey_metadata

GATEWAY = "http://gateway.bench:8787"
URL = f"{GATEWAY}/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
ANSWER = b'{"id":"c","object":"chat.completion","choices":[]}'
ANSWER_HEADERS = [
    (b"content-type", b"application/json"),
    (b"x-portkey-cache-status", b"MISS"),
    (b"x-portkey-retry-attempt-count", b"0"),
    (b"x-portkey-provider", b"openai"),
    (b"x-portkey-last-used-option-index", b"config"),
]
FLAVOURS = {
    "httpx": (httpx, httpcore, HTTPXClientInstrumentor),
    "httpx2": (httpx2, httpcore2, HTTPX2ClientInstrumentor),
}


class _MemoryPool:
    """Stands in for httpcore's connection pool: answers every request at once, echoing the trace id."""

    def __init__(self, core: Any) -> None:
        self._core = core

    def _answer(self, request: Any) -> Any:
        echo = dict(request.headers).get(b"x-portkey-trace-id", b"")
        return self._core.Response(
            200, headers=[*ANSWER_HEADERS, (b"x-portkey-trace-id", echo)], content=ANSWER
        )

    def handle_request(self, request: Any) -> Any:
        return self._answer(request)

    async def handle_async_request(self, request: Any) -> Any:
        return self._answer(request)

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def __enter__(self) -> _MemoryPool:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    async def __aenter__(self) -> _MemoryPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass


def _client(flavour: str, mode: str) -> Any:
    module, core, _ = FLAVOURS[flavour]
    transport = module.HTTPTransport() if mode == "sync" else module.AsyncHTTPTransport()
    transport._pool = _MemoryPool(core)
    return module.Client(transport=transport) if mode == "sync" else module.AsyncClient(transport=transport)


def _configs(flavour: str) -> dict[str, Callable[[], Callable[[], None]]]:
    instrumentor = FLAVOURS[flavour][2]

    def bare() -> Callable[[], None]:
        return lambda: None

    def instrumented() -> Callable[[], None]:
        instrumentor().instrument()
        return lambda: instrumentor().uninstrument()

    def bridged() -> Callable[[], None]:
        instrumentor().instrument()
        PortkeyInstrumentor().instrument(gateway_urls=[GATEWAY])

        def teardown() -> None:
            PortkeyInstrumentor().uninstrument()
            instrumentor().uninstrument()

        return teardown

    return {"bare": bare, "instrumented": instrumented, "bridged": bridged, "bridged, metadata": bridged}


def _run(flavour: str, mode: str, count: int) -> Callable[[str], tuple[float, float]]:
    """Calls in the configuration ``name``; "..., metadata" runs them inside ``portkey_metadata``."""
    tracer = trace.get_tracer("bench")
    headers = {"x-portkey-provider": "openai", "authorization": "Bearer sk-bench"}

    def sync() -> tuple[float, float]:
        with _client(flavour, "sync") as client:

            def one() -> None:
                with tracer.start_as_current_span("chat gpt-4o"):
                    client.post(URL, json=BODY, headers=headers).read()

            one()
            return timed(count, one)

    def async_() -> tuple[float, float]:
        async def main() -> tuple[float, float]:
            async with _client(flavour, "async") as client:
                await (await client.post(URL, json=BODY, headers=headers)).aread()
                with quiet_gc():
                    cpu, wall = time.thread_time(), time.perf_counter()
                    for _ in range(count):
                        with tracer.start_as_current_span("chat gpt-4o"):
                            await (await client.post(URL, json=BODY, headers=headers)).aread()
                    return (time.thread_time() - cpu) / count, (time.perf_counter() - wall) / count

        return asyncio.run(main())

    measure = sync if mode == "sync" else async_

    def run(name: str) -> tuple[float, float]:
        if name.endswith("metadata"):
            with portkey_metadata(_user="u-1", session="s-1"):
                return measure()
        return measure()

    return run


def _contract_floor(flavour: str, count: int) -> float:
    """CPU of the contract's writes alone, through the public API."""
    module = FLAVOURS[flavour][0]
    tracer = trace.get_tracer("bench")
    request_attributes = {
        "portkey.trace_id": "a" * 32,
        "portkey.span_id": "b" * 16,
        "portkey.metadata.service": "svc",
    }
    response_attributes = {
        "portkey.trace_id": "a" * 32,
        "portkey.cache.status": "MISS",
        "portkey.retry.attempt_count": 0,
        "portkey.provider": "openai",
        "portkey.last_used_option_index": "config",
    }
    spans = [tracer.start_span("POST") for _ in range(count)]
    requests = [
        module.Headers({"content-type": "application/json", "authorization": "Bearer x"})
        for _ in range(count)
    ]
    cpu = time.thread_time()
    for span, headers in zip(spans, requests, strict=True):
        headers["x-portkey-trace-id"] = "a" * 32
        headers["x-portkey-parent-span-id"] = "c" * 16
        headers["x-portkey-span-id"] = "b" * 16
        headers["x-portkey-span-name"] = "chat gpt-4o"
        headers["x-portkey-metadata"] = '{"service":"svc"}'
        span.set_attributes(request_attributes)
        span.set_attributes(response_attributes)
    floor = (time.thread_time() - cpu) / count
    for span in spans:
        span.end()
    return floor


def bench(count: int, rounds: int) -> tuple[str, list[float]]:
    sdk_provider()
    rows, ratios = [], []
    for flavour in FLAVOURS:
        floor = _contract_floor(flavour, count * rounds)
        for mode in ("sync", "async"):
            samples = interleave_samples(_configs(flavour), _run(flavour, mode, count), rounds)
            bare = statistics.median(c for c, _ in samples["bare"])
            instrumentation = paired_cpu(samples, "instrumented", "bare")
            added = paired_cpu(samples, "bridged", "instrumented")
            added_md = paired_cpu(samples, "bridged, metadata", "instrumented")
            ratios += [added / instrumentation, added_md / instrumentation]
            rows.append(
                [
                    f"{flavour} {mode}",
                    us(bare),
                    us(instrumentation),
                    us(added),
                    f"{added / instrumentation:.0%}",
                    us(added_md),
                    us(floor),
                    f"{(added - floor) / instrumentation:.0%}",
                ]
            )
    header = [
        "client",
        "bare client CPU/call",
        "httpx instrumentation adds",
        "bridge adds",
        "bridge / instr.",
        "bridge adds, with metadata",
        "contract floor",
        "bridge beyond the floor / instr.",
    ]
    title = f"Per call, network taken out ({count} calls x {rounds} interleaved rounds, paired CPU medians)"
    return table(title, header, rows), ratios
