"""Per call with the network taken out: the whole client stack, the OTel instrumentation and the
bridge run for real, but the transport's connection pool answers from memory.

Loopback round trips cost hundreds of microseconds and vary by as much, which hides a cost of a
few tens; here every microsecond measured is the client's, so the ratios are precise. The
"hand-written contract hooks" configuration is the least any bridge must do, written naively
with the instrumentation's hooks (see :func:`_contract_hooks`); it runs interleaved with the
others, so "bridge beyond them" is what otel-portkey costs over the contract itself.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import httpcore
import httpcore2
import httpx
import httpx2
from harness import (
    Config,
    auto_bridged,
    bare,
    bridged,
    instrumented,
    interleave_samples,
    paired_cpu,
    quiet_gc,
    sdk_provider,
    table,
    timed,
    us,
)
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor, HTTPXClientInstrumentor

from otel_portkey import portkey_metadata

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


def _configs(flavour: str) -> dict[str, Config]:
    instrumentor = FLAVOURS[flavour][2]
    return {
        "bare": bare,
        "instrumented": instrumented(instrumentor),
        # The same inside ``portkey_metadata``: the baggage header the OTel propagator then injects
        # is the app's cost, not the bridge's, so "bridge adds, with metadata" is paired with this.
        "instrumented, metadata": instrumented(instrumentor),
        "hand-written hooks": instrumented(instrumentor, **_contract_hooks()),
        "bridged": bridged(instrumentor, GATEWAY),
        "bridged, metadata": bridged(instrumentor, GATEWAY),
        # Attached as opentelemetry-instrument attaches it when the client instrumentation loads
        # first: the bridge's hooks come through the wrapped instrument(), the bridge after it.
        "bridged, opentelemetry-instrument order": auto_bridged(instrumentor, GATEWAY),
    }


def _run(
    flavour: str, mode: str, count: int, caller: dict[str, str] | None = None
) -> Callable[[str], tuple[float, float]]:
    """Calls in the configuration ``name``, each inside a ``chat gpt-4o`` span (with ``caller``'s
    attributes, as a GenAI instrumentation's); "..., metadata" runs them inside ``portkey_metadata``."""
    tracer = trace.get_tracer("bench")
    headers = {"x-portkey-provider": "openai", "authorization": "Bearer sk-bench"}

    def sync() -> tuple[float, float]:
        with _client(flavour, "sync") as client:

            def one() -> None:
                with tracer.start_as_current_span("chat gpt-4o", attributes=caller):
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
                        with tracer.start_as_current_span("chat gpt-4o", attributes=caller):
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


def _contract_hooks() -> dict[str, Any]:
    """What a user would hand-write to meet the contract with the instrumentation's hooks: the five
    ``x-portkey-*`` headers with ``Headers.__setitem__``, the ids and the gateway's answer as span
    attributes. No gateway detection, no caller's headers respected, no metadata merge, no guard:
    the least any bridge must do, downstream costs of the extra headers included."""

    def request_hook(span: Any, request: Any) -> None:
        context = span.get_span_context()
        trace_id, span_id = format(context.trace_id, "032x"), format(random.getrandbits(64), "016x")
        headers = request.headers
        headers["x-portkey-trace-id"] = trace_id
        parent = span.parent  # None for the warm-up call, made outside any span
        headers["x-portkey-parent-span-id"] = format(parent.span_id if parent else 0, "016x")
        headers["x-portkey-span-id"] = span_id
        headers["x-portkey-span-name"] = "chat gpt-4o"
        headers["x-portkey-metadata"] = '{"service":"svc"}'
        span.set_attributes({"portkey.trace_id": trace_id, "portkey.span_id": span_id})

    def response_hook(span: Any, request: Any, response: Any) -> None:
        get = response.headers.get
        span.set_attributes(
            {
                "portkey.trace_id": get("x-portkey-trace-id", ""),
                "portkey.cache.status": get("x-portkey-cache-status", ""),
                "portkey.retry.attempt_count": int(get("x-portkey-retry-attempt-count", "0")),
                "portkey.provider": get("x-portkey-provider", ""),
                "portkey.last_used_option_index": get("x-portkey-last-used-option-index", ""),
            }
        )

    async def async_request_hook(span: Any, request: Any) -> None:
        request_hook(span, request)

    async def async_response_hook(span: Any, request: Any, response: Any) -> None:
        response_hook(span, request, response)

    return {
        "request_hook": request_hook,
        "response_hook": response_hook,
        "async_request_hook": async_request_hook,
        "async_response_hook": async_response_hook,
    }


def bench(count: int, rounds: int) -> tuple[str, list[float], list[float], dict[str, float]]:
    """The table; bridge / instrumentation ratios; bridge beyond the contract / instrumentation; and
    per client, what the bridge adds in opentelemetry-instrument's order over what the hand-written
    contract adds (1.0: no more than the least any bridge must do)."""
    sdk_provider()
    rows, ratios, beyond_ratios, over_contract = [], [], [], {}
    for flavour in FLAVOURS:
        for mode in ("sync", "async"):
            samples = interleave_samples(_configs(flavour), _run(flavour, mode, count), rounds)
            bare = statistics.median(c for c, _ in samples["bare"])
            instrumentation = paired_cpu(samples, "instrumented", "bare")
            added = paired_cpu(samples, "bridged", "instrumented")
            added_md = paired_cpu(samples, "bridged, metadata", "instrumented, metadata")
            hand = paired_cpu(samples, "hand-written hooks", "instrumented")
            beyond = paired_cpu(samples, "bridged", "hand-written hooks")
            auto = paired_cpu(samples, "bridged, opentelemetry-instrument order", "instrumented")
            over_contract[f"{flavour} {mode}"] = auto / hand
            ratios += [added / instrumentation, added_md / instrumentation]
            beyond_ratios.append(beyond / instrumentation)
            rows.append(
                [
                    f"{flavour} {mode}",
                    us(bare),
                    us(instrumentation),
                    us(added),
                    f"{added / instrumentation:.0%}",
                    us(added_md),
                    us(hand),
                    f"{beyond / instrumentation:.0%}",
                    us(auto),
                    f"{auto / hand:.2f}x",
                ]
            )
    header = [
        "client",
        "bare client CPU/call",
        "httpx instrumentation adds",
        "bridge adds",
        "bridge / instr.",
        "bridge adds, with metadata",
        "hand-written contract hooks add",
        "bridge beyond them / instr.",
        "bridge adds, opentelemetry-instrument order",
        "÷ contract adds",
    ]
    title = f"Per call, network taken out ({count} calls x {rounds} interleaved rounds, paired CPU medians)"
    return table(title, header, rows), ratios, beyond_ratios, over_contract
