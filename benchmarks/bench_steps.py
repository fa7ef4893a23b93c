"""Where the bridge's time goes on one Portkey-bound httpx2 call: each step of the request and the
response side timed alone, on real httpx2 headers and SDK spans, beside the steps of the
hand-written contract (the least any bridge must do). CPU per step, medians of rounds::

    python benchmarks/bench_steps.py
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx2
from bench_offline import _contract_hooks
from harness import table
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import RequestInfo, ResponseInfo
from opentelemetry.propagate import get_global_textmap
from opentelemetry.sdk.trace import TracerProvider

from otel_portkey._contract.call import CallPolicy, RequestFacts, answer_attributes, plan_request
from otel_portkey._otel.bridge import Bridge, new_span_id
from otel_portkey._otel.client_hooks import PortkeyPropagator
from otel_portkey._otel.headers import (
    add_absent,
    header_bytes,
    header_getter,
    header_names,
    portkey_entries,
)
from otel_portkey._otel.processor import PortkeySpanProcessor, caller_of, context_metadata
from otel_portkey.config import PortkeySettings

GATEWAY = "http://gateway.bench:8787"
URL = f"{GATEWAY}/v1/chat/completions"
CALLER = {"x-portkey-provider": "openai", "authorization": "Bearer sk", "content-type": "application/json"}
ANSWER = httpx2.Headers(
    [
        (b"content-type", b"application/json"),
        (b"x-portkey-cache-status", b"MISS"),
        (b"x-portkey-retry-attempt-count", b"0"),
        (b"x-portkey-provider", b"openai"),
        (b"x-portkey-last-used-option-index", b"config"),
        (b"x-portkey-trace-id", b"a" * 32),
    ]
)


def cpu_us(step: Callable[[Any], Any], make: Callable[[], Any], count: int, rounds: int) -> float:
    """Median CPU microseconds of ``step(item)`` over fresh items from ``make``."""
    medians = []
    for _ in range(rounds):
        items = [make() for _ in range(count)]
        started = time.thread_time()
        for item in items:
            step(item)
        medians.append((time.thread_time() - started) / count * 1e6)
    return statistics.median(medians)


def bench(count: int = 5000, rounds: int = 9) -> tuple[str, dict[str, float]]:
    provider = TracerProvider()
    processor = PortkeySpanProcessor()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("opentelemetry.instrumentation.httpx")
    parent = tracer.start_span("chat gpt-4o")
    in_parent = trace.set_span_in_context(parent)
    settings = PortkeySettings.from_env({}, gateway_urls=[GATEWAY])
    bridge = Bridge(settings, provider.resource)
    policy = CallPolicy()
    inner = get_global_textmap()
    wrapper = PortkeyPropagator(inner, bridge)

    def span() -> Any:
        return tracer.start_span(
            "POST", context=trace.set_span_in_context(parent), kind=trace.SpanKind.CLIENT
        )

    def headers() -> httpx2.Headers:
        return httpx2.Headers(CALLER)

    def pair() -> tuple[Any, httpx2.Headers]:
        return span(), headers()

    def facts(item: tuple[Any, httpx2.Headers]) -> RequestFacts:
        s, h = item
        c = s.get_span_context()
        present, _ = portkey_entries(h)
        return RequestFacts(
            c.trace_id, c.span_id, new_span_id(), present, header_bytes(h), "POST", URL, "chat gpt-4o", (), ()
        )

    plan = plan_request(facts(pair()), policy)
    ours = {
        "request hook, whole (Bridge.on_request)": (
            lambda i: bridge.on_request(i[0], i[1], URL, "POST"),
            pair,
        ),
        "  header names, one search": (lambda h: header_names(h), headers),
        "  the x-portkey-* entries": (lambda h: portkey_entries(h), headers),
        "  header bytes": (lambda h: header_bytes(h), headers),
        "  a fresh span id": (lambda _: new_span_id(), lambda: None),
        "  caller name (processor)": (lambda s: caller_of(s), span),
        "  context metadata": (lambda _: context_metadata(), lambda: None),
        "  plan_request (pure)": (lambda f: plan_request(f, policy), lambda: facts(pair())),
        "  writing the headers": (lambda h: add_absent(h, plan.add), headers),
        "  span.set_attributes(plan)": (lambda s: s.set_attributes(plan.attributes), span),
        "request hook then inject, in the CLIENT span": (
            lambda i: _hook_then_inject(bridge, wrapper, *i),
            pair,
        ),
        "  the inner propagator alone": (lambda h: inner.inject(h), headers),
        "response hook, whole (Bridge.call_of + on_response)": (
            lambda s: bridge.on_response(s, bridge.call_of(s), ANSWER, None, 200),  # type: ignore[arg-type]
            lambda: _bound_span(bridge, span()),
        ),
        "  reading the answer": (lambda h: answer_attributes(header_getter(h)), lambda: ANSWER),
        "processor on_start, per span": (lambda s: processor.on_start(s, in_parent), span),
        "  (an SDK span start, processor included, for scale)": (lambda _: span(), lambda: None),
    }
    # The hand-written contract exactly as bench_offline measures it (the floor of its ratio).
    contract_hooks = _contract_hooks()
    request_info = RequestInfo(b"POST", httpx2.URL(URL), None, None, {})
    answer_info = ResponseInfo(200, ANSWER, None, {})
    contract = {
        "contract request hook (5 x Headers[...] = , 2 attributes)": (
            lambda i: contract_hooks["request_hook"](i[0], request_info._replace(headers=i[1])),
            pair,
        ),
        "contract response hook (the answer's headers read, attributes)": (
            lambda s: contract_hooks["response_hook"](s, request_info, answer_info),
            span,
        ),
    }
    figures: dict[str, float] = {}
    rows = []
    for name, (step, make) in {**ours, **contract}.items():
        figures[name] = cpu_us(step, make, count, rounds)
        rows.append([name, f"{figures[name]:.2f} µs"])
    title = f"Where the time goes, httpx2 ({count} items x {rounds} rounds, CPU medians)"
    return table(title, ["step", "CPU"], rows), figures


def _hook_then_inject(bridge: Bridge, wrapper: PortkeyPropagator, span: Any, headers: Any) -> None:
    """What an instrumentation does in its CLIENT span: the request hook, then ``inject``."""
    with trace.use_span(span, end_on_exit=False):
        bridge.on_request(span, headers, URL, "POST")
        wrapper.inject(headers)


def _bound_span(bridge: Bridge, span: Any) -> Any:
    bridge.on_request(span, httpx2.Headers(CALLER), URL, "POST")
    return span


if __name__ == "__main__":
    print(bench()[0])
