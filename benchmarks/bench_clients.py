"""Per call of requests, urllib, urllib3 and aiohttp, with the network taken out, beside the
hand-written contract.

The client library, its OTel instrumentation and the bridge run for real; only the transport
answers from memory (a requests adapter, a urllib handler, a urllib3 pool's ``_make_request``;
for aiohttp, whose connector cannot be stubbed cleanly, the instrumentation's own trace-config
callbacks are driven with real request parameters). Four configurations run interleaved, in
rotating order, inside a parent span as an app's would be:

* the instrumentation alone;
* the hand-written contract: the instrumentation with hooks that set the five ``x-portkey-*``
  headers with the mapping's ``__setitem__`` and store the ids and the gateway's answer with
  ``Span.set_attributes`` (no detection, no caller's headers respected, no metadata merge, no
  guard, no span processor), as ``bench_offline`` does for httpx;
* the bridge, to a gateway's URL;
* the bridge, to another URL (what a request that is not Portkey-bound pays).
"""

from __future__ import annotations

import asyncio
import email.message
import io
import random
import statistics
import time
import urllib.request
import urllib.response
from collections.abc import Callable
from typing import Any

import aiohttp
import requests
import urllib3
from harness import (
    Config,
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
from multidict import CIMultiDict, CIMultiDictProxy
from opentelemetry import trace
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor, create_trace_config
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.instrumentation.urllib import URLLibInstrumentor
from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor
from yarl import URL as YarlURL

from otel_portkey._otel import client_hooks

GATEWAY = "http://gateway.bench:8787"
BOUND_URL = f"{GATEWAY}/v1/chat/completions"
OTHER_URL = "http://other.bench/v1/chat/completions"
BODY = b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}'
ANSWER = b'{"id":"c","object":"chat.completion","choices":[]}'
ANSWER_HEADERS = {
    "Content-Type": "application/json",
    "Date": "Sat, 28 Nov 2026 03:00:00 GMT",
    "x-portkey-cache-status": "MISS",
    "x-portkey-retry-attempt-count": "0",
    "x-portkey-provider": "openai",
    "x-portkey-last-used-option-index": "config",
    "x-portkey-trace-id": "4bf92f3577b34da6a3ce929d0e0e4736",
}
REQUEST_HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
GATEWAY_HEADERS = {**REQUEST_HEADERS, "x-portkey-provider": "openai"}  # as the portkey-ai SDK sends


def _headers(url: str) -> dict[str, str]:
    return GATEWAY_HEADERS if url == BOUND_URL else REQUEST_HEADERS


class _MemoryAdapter(requests.adapters.BaseAdapter):
    def send(self, request: Any, **kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = 200
        response.headers = requests.structures.CaseInsensitiveDict(ANSWER_HEADERS)
        response._content = ANSWER
        response.raw = io.BytesIO(ANSWER)
        response.url = request.url
        response.request = request
        return response

    def close(self) -> None:
        pass


class _MemoryHandler(urllib.request.BaseHandler):
    handler_order = 100  # before the default HTTPHandler

    def http_open(self, request: Any) -> Any:
        message = email.message.Message()
        for name, value in ANSWER_HEADERS.items():
            message[name] = value
        response = urllib.response.addinfourl(io.BytesIO(ANSWER), message, request.full_url, 200)
        response.msg = "OK"  # type: ignore[attr-defined]
        return response


class _MemoryPool(urllib3.HTTPConnectionPool):
    def _make_request(self, conn: Any, method: str, url: str, **kwargs: Any) -> Any:  # type: ignore[override]
        return urllib3.HTTPResponse(
            body=io.BytesIO(ANSWER), headers=ANSWER_HEADERS, status=200, preload_content=False
        )


def _contract(headers_of: Callable[..., Any], answer_of: Callable[..., Any]) -> dict[str, Any]:
    """The hand-written contract as hooks of one instrumentation (see the module docstring)."""

    def request_hook(span: Any, *args: Any) -> None:
        context = span.get_span_context()
        trace_id, span_id = format(context.trace_id, "032x"), format(random.getrandbits(64), "016x")
        headers = headers_of(*args)
        headers["x-portkey-trace-id"] = trace_id
        headers["x-portkey-parent-span-id"] = format(context.span_id, "016x")
        headers["x-portkey-span-id"] = span_id
        headers["x-portkey-span-name"] = "chat gpt-4o"
        headers["x-portkey-metadata"] = '{"service":"svc"}'
        span.set_attributes({"portkey.trace_id": trace_id, "portkey.span_id": span_id})

    def response_hook(span: Any, *args: Any) -> None:
        get = answer_of(*args).headers.get
        span.set_attributes(
            {
                "portkey.trace_id": get("x-portkey-trace-id", ""),
                "portkey.cache.status": get("x-portkey-cache-status", ""),
                "portkey.retry.attempt_count": int(get("x-portkey-retry-attempt-count", "0")),
                "portkey.provider": get("x-portkey-provider", ""),
                "portkey.last_used_option_index": get("x-portkey-last-used-option-index", ""),
            }
        )

    return {"request_hook": request_hook, "response_hook": response_hook}


def _requests_call(url: str) -> Callable[[], None]:
    session = requests.Session()
    session.mount("http://", _MemoryAdapter())
    headers = _headers(url)
    return lambda: session.post(url, data=BODY, headers=headers).content and None


def _urllib_call(url: str) -> Callable[[], None]:
    opener = urllib.request.build_opener(_MemoryHandler())

    def call() -> None:
        request = urllib.request.Request(url, data=BODY, headers=_headers(url), method="POST")
        opener.open(request).read()

    return call


def _urllib3_call(url: str) -> Callable[[], None]:
    pool = _MemoryPool(
        "gateway.bench" if url == BOUND_URL else "other.bench", 8787 if url == BOUND_URL else 80
    )
    path = url.split("/", 3)[3]
    headers = _headers(url)
    return lambda: pool.urlopen("POST", f"/{path}", body=BODY, headers=headers).read() and None


class _AnswerOfAiohttp:
    status = 200
    headers = CIMultiDictProxy(CIMultiDict(ANSWER_HEADERS))


def _aiohttp_calls(url: str, config: aiohttp.TraceConfig, count: int) -> float:
    """CPU per call of the instrumentation's trace-config callbacks for one request each."""

    async def main() -> float:
        start_callbacks, end_callbacks = list(config.on_request_start), list(config.on_request_end)
        target = YarlURL(url)

        async def one() -> None:
            ctx = config.trace_config_ctx()
            headers = CIMultiDict(_headers(url))
            start = aiohttp.TraceRequestStartParams("POST", target, headers)
            for callback in start_callbacks:
                await callback(None, ctx, start)  # type: ignore[arg-type]
            end = aiohttp.TraceRequestEndParams("POST", target, headers, _AnswerOfAiohttp())  # type: ignore[arg-type]
            for callback in end_callbacks:
                await callback(None, ctx, end)  # type: ignore[arg-type]

        tracer = trace.get_tracer("bench")
        with tracer.start_as_current_span("chat gpt-4o"):
            await one()
        with quiet_gc():
            cpu = time.thread_time()
            for _ in range(count):
                with tracer.start_as_current_span("chat gpt-4o"):
                    await one()
            return (time.thread_time() - cpu) / count

    return asyncio.run(main())


CLIENTS: dict[str, tuple[Any, Callable[[str], Callable[[], None]] | None, dict[str, Any]]] = {
    "requests": (
        RequestsInstrumentor,
        _requests_call,
        _contract(lambda request: request.headers, lambda request, response: response),
    ),
    "urllib": (
        URLLibInstrumentor,
        _urllib_call,
        _contract(lambda request: request.headers, lambda request, response: response),
    ),
    "urllib3": (
        URLLib3Instrumentor,
        _urllib3_call,
        _contract(lambda pool, info: info.headers, lambda pool, response: response),
    ),
    "aiohttp": (
        AioHttpClientInstrumentor,
        None,
        _contract(lambda params: params.headers, lambda params: params.response),
    ),
}


def _configs(name: str) -> dict[str, Config]:
    instrumentor, _, contract = CLIENTS[name]
    return {
        "instrumented": instrumented(instrumentor),
        "hand-written hooks": instrumented(instrumentor, **contract),
        "bridged": bridged(instrumentor, GATEWAY),
        "instrumented, other URL": instrumented(instrumentor),
        "bridged, other URL": bridged(instrumentor, GATEWAY),
    }


def _run(name: str, count: int) -> Callable[[str], tuple[float, float]]:
    _, make_call, contract = CLIENTS[name]
    tracer = trace.get_tracer("bench")

    def run(config: str) -> tuple[float, float]:
        url = OTHER_URL if config.endswith("other URL") else BOUND_URL
        if make_call is None:  # aiohttp: its instrumentation's callbacks, with the hooks in force
            hooks: dict[str, Any] = {}
            if config.startswith("hand-written"):
                hooks = contract
            elif config.startswith("bridged"):
                hooks = next(c for c in client_hooks.CLIENTS if c.name == "aiohttp-client").hooks()
            cpu = _aiohttp_calls(url, create_trace_config(**hooks), count)
            return cpu, cpu
        call = make_call(url)

        def one() -> None:
            with tracer.start_as_current_span("chat gpt-4o"):
                call()

        one()
        return timed(count, one)

    return run


def bench(count: int, rounds: int) -> tuple[str, dict[str, float], dict[str, float]]:
    """The report, each client's bridge cost beyond the contract, and its cost when not bound."""
    sdk_provider()
    rows, beyond_contract, not_bound = [], {}, {}
    for name in CLIENTS:
        samples = interleave_samples(_configs(name), _run(name, count), rounds)
        contract = paired_cpu(samples, "hand-written hooks", "instrumented")
        added = paired_cpu(samples, "bridged", "instrumented")
        beyond_contract[name] = paired_cpu(samples, "bridged", "hand-written hooks")
        not_bound[name] = paired_cpu(samples, "bridged, other URL", "instrumented, other URL")
        rows.append(
            [
                name,
                us(statistics.median(c for c, _ in samples["instrumented"])),
                us(contract),
                us(added),
                us(beyond_contract[name]),
                us(not_bound[name]),
            ]
        )
    header = [
        "client",
        "instrumented call CPU",
        "hand-written contract adds",
        "bridge adds (to a gateway)",
        "bridge beyond the contract",
        "bridge adds (not Portkey-bound)",
    ]
    title = (
        f"Per call of each client, network taken out ({count} calls x {rounds} interleaved rounds, "
        "paired CPU medians)"
    )
    return table(title, header, rows), beyond_contract, not_bound
