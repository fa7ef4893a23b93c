"""The seam's cost per client: ``PortkeyPropagator.inject`` on each client library's header mapping.

Every OTel HTTP client instrumentation calls ``inject(headers)`` once per request, inside its
CLIENT span, with the live header mapping (httpx ``Headers``, requests' ``CaseInsensitiveDict``,
urllib's ``dict``, urllib3's ``HTTPHeaderDict``, aiohttp's ``CIMultiDict``). Measured here, for
each kind, with the network and the rest of the client taken out, in paired interleaved rounds:

* a request that is not Portkey-bound: the wrapped propagator minus the plain one;
* a Portkey-bound request (requests, urllib, urllib3 and aiohttp get their headers here): the
  bridge's request side minus the contract written by hand as plainly as possible (the five
  headers through the setter and the ids as attributes, no detection, no caller's headers
  respected, no metadata merge, no guard).

The httpx row is the propagator after the httpx request hook has decided (its request side runs
in the hook; ``bench_offline`` measures that whole path).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx
from harness import quiet_gc, sdk_provider, table, us
from multidict import CIMultiDict
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import default_setter
from requests.structures import CaseInsensitiveDict
from urllib3 import HTTPHeaderDict

from otel_portkey import PortkeyInstrumentor
from otel_portkey.propagation import request_decision

GATEWAY = "http://gateway.bench:8787"
HEADERS = {
    "User-Agent": "bench/1.0",
    "Accept-Encoding": "gzip, deflate",
    "Accept": "application/json",
    "Connection": "keep-alive",
    "Content-Type": "application/json",
    "Content-Length": "98",
    "Authorization": "Bearer sk-bench",
}
CARRIERS: dict[str, Callable[[dict[str, str]], Any]] = {
    "httpx (after its hook)": httpx.Headers,
    "requests": CaseInsensitiveDict,
    "urllib": dict,
    "urllib3": HTTPHeaderDict,
    "aiohttp": CIMultiDict,
}


def _contract(span: Any, carrier: Any) -> None:
    context = span.get_span_context()
    trace_id, span_id = format(context.trace_id, "032x"), format(random.getrandbits(64), "016x")
    for name, value in (
        ("x-portkey-trace-id", trace_id),
        ("x-portkey-parent-span-id", format(context.span_id, "016x")),
        ("x-portkey-span-id", span_id),
        ("x-portkey-span-name", "chat gpt-4o"),
        ("x-portkey-metadata", '{"service":"svc"}'),
    ):
        default_setter.set(carrier, name, value)
    span.set_attributes({"portkey.trace_id": trace_id, "portkey.span_id": span_id})


def _per_call(count: int, body: Callable[[], None]) -> float:
    with quiet_gc():
        start = time.thread_time()
        for _ in range(count):
            body()
        return (time.thread_time() - start) / count


def _paired(samples: dict[str, list[float]], minuend: str, subtrahend: str) -> float:
    return statistics.median(a - b for a, b in zip(samples[minuend], samples[subtrahend], strict=True))


def bench(count: int, rounds: int) -> tuple[str, dict[str, float]]:
    sdk_provider()
    plain = propagate.get_global_textmap()
    PortkeyInstrumentor().instrument(gateway_urls=[GATEWAY])
    wrapped = propagate.get_global_textmap()
    tracer = trace.get_tracer("opentelemetry.instrumentation.bench")
    rows, not_bound = [], {}

    def contract_inject(make: Callable[[dict[str, str]], Any], span: Any) -> None:
        carrier = make(HEADERS)
        plain.inject(carrier)
        _contract(span, carrier)

    try:
        for name, make in CARRIERS.items():
            httpx_row = name.startswith("httpx")
            samples: dict[str, list[float]] = {}
            cases = [("http://other.bench/v1/x", ("plain", "wrapped"))]
            if not httpx_row:  # httpx's request side runs in its hook: bench_offline measures it
                cases.append((f"{GATEWAY}/v1/chat/completions", ("plain to gateway", "contract", "bridge")))
            for url, keys in cases:
                span = tracer.start_span("POST", kind=trace.SpanKind.CLIENT, attributes={"url.full": url})
                with trace.use_span(span, end_on_exit=True):
                    if httpx_row:
                        request_decision.set((span.get_span_context().span_id, False))
                    bodies: dict[str, Callable[[], None]] = {
                        "plain": lambda make=make: plain.inject(make(HEADERS)),
                        "plain to gateway": lambda make=make: plain.inject(make(HEADERS)),
                        "wrapped": lambda make=make: wrapped.inject(make(HEADERS)),
                        "bridge": lambda make=make: wrapped.inject(make(HEADERS)),
                        "contract": lambda make=make, span=span: contract_inject(make, span),
                    }
                    for round_number in range(rounds):
                        shift = round_number % len(keys)
                        for key in keys[shift:] + keys[:shift]:
                            samples.setdefault(key, []).append(_per_call(count, bodies[key]))
            added = _paired(samples, "wrapped", "plain")
            not_bound[name] = added
            contract = beyond = "—"
            if not httpx_row:
                contract = us(_paired(samples, "contract", "plain to gateway"))
                beyond = us(_paired(samples, "bridge", "contract"))
            rows.append([name, us(statistics.median(samples["plain"])), us(added), contract, beyond])
    finally:
        PortkeyInstrumentor().uninstrument()
    header = [
        "headers of",
        "plain inject",
        "not Portkey-bound: the seam adds",
        "Portkey-bound: hand-written contract adds",
        "bridge beyond the contract",
    ]
    title = f"The seam per client ({count} injects x {rounds} interleaved rounds, paired CPU medians)"
    return table(title, header, rows), not_bound
