"""What the bridge adds around one request of each client, at the seam, with nothing else running.

Every OTel HTTP client instrumentation, inside its CLIENT span, calls the request hook, then
``inject(headers)``, and later the response hook. Here that sequence runs on each client's own
request, header and response objects, without the client, its instrumentation or the span's
start and end (``bench_clients`` measures whole calls; ``bench_processor`` the span processor), so
differences of a fraction of a microsecond show. Paired interleaved rounds compare:

* not Portkey-bound (another URL, no ``x-portkey-*`` header): the bridge's two hooks and the
  wrapped propagator, minus the plain propagator;
* Portkey-bound: the bridge, minus the hand-written contract's two hooks (``bench_clients``) with
  the plain propagator.
"""

from __future__ import annotations

import email.message
import io
import statistics
import types
import urllib.request
from collections.abc import Callable
from typing import Any

import aiohttp
import httpx
import requests
import urllib3
from bench_clients import ANSWER, ANSWER_HEADERS, BOUND_URL, CLIENTS, GATEWAY, GATEWAY_HEADERS, OTHER_URL
from bench_offline import _contract_hooks as httpx_contract_hooks
from harness import Samples, bare, interleave_samples, paired_cpu, sdk_provider, table, timed, us
from multidict import CIMultiDict, CIMultiDictProxy
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.httpx import RequestInfo, ResponseInfo
from opentelemetry.instrumentation.urllib3 import RequestInfo as Urllib3RequestInfo
from requests.structures import CaseInsensitiveDict
from urllib3 import HTTPHeaderDict
from yarl import URL as YarlURL

from otel_portkey import PortkeyInstrumentor
from otel_portkey._otel import client_hooks

# The headers an SDK sends besides the gateway's own.
SDK_HEADERS = {
    "User-Agent": "bench/1.0",
    "Accept-Encoding": "gzip, deflate",
    "Accept": "application/json",
    "Connection": "keep-alive",
    "Content-Length": "98",
}

# One request: (hook arguments after the span, the carrier the instrumentation injects into).
Request = tuple[tuple[Any, ...], Any]


def _requests(url: str, headers: dict[str, str]) -> tuple[Request, tuple[Any, ...]]:
    request = requests.Request("POST", url).prepare()
    request.headers = CaseInsensitiveDict(headers)
    response = requests.Response()
    response.headers = CaseInsensitiveDict(ANSWER_HEADERS)
    response.raw = io.BytesIO(ANSWER)
    return ((request,), request.headers), (request, response)


def _urllib(url: str, headers: dict[str, str]) -> tuple[Request, tuple[Any, ...]]:
    request = urllib.request.Request(url, data=b"{}", method="POST")
    request.headers = dict(headers)
    message = email.message.Message()
    for name, value in ANSWER_HEADERS.items():
        message[name] = value
    response = urllib.response.addinfourl(io.BytesIO(ANSWER), message, url, 200)
    return ((request,), request.headers), (request, response)


def _urllib3(url: str, headers: dict[str, str]) -> tuple[Request, tuple[Any, ...]]:
    pool = urllib3.HTTPConnectionPool(url.split("/")[2].split(":")[0])
    carrier = HTTPHeaderDict(headers)
    info = Urllib3RequestInfo(method="POST", url=url, headers=carrier, body=b"{}")
    response = urllib3.HTTPResponse(body=io.BytesIO(ANSWER), headers=ANSWER_HEADERS, status=200)
    return ((pool, info), carrier), (pool, response)


def _aiohttp(url: str, headers: dict[str, str]) -> tuple[Request, tuple[Any, ...]]:
    carrier = CIMultiDict(headers)
    start = aiohttp.TraceRequestStartParams("POST", YarlURL(url), carrier)
    answer = types.SimpleNamespace(status=200, headers=CIMultiDictProxy(CIMultiDict(ANSWER_HEADERS)))
    end = aiohttp.TraceRequestEndParams("POST", YarlURL(url), carrier, answer)  # type: ignore[arg-type]
    return ((start,), carrier), (end,)


def _httpx(url: str, headers: dict[str, str]) -> tuple[Request, tuple[Any, ...]]:
    info = RequestInfo(b"POST", httpx.URL(url), httpx.Headers(headers), None, {})
    answer = ResponseInfo(200, httpx.Headers(ANSWER_HEADERS), None, {})
    return ((info,), None), (info, answer)  # None: httpx injects into a copy of the headers


MAKERS: dict[str, tuple[Callable[[str, dict[str, str]], tuple[Request, tuple[Any, ...]]], str]] = {
    "httpx": (_httpx, "httpx"),
    "requests": (_requests, "requests"),
    "urllib": (_urllib, "urllib"),
    "urllib3": (_urllib3, "urllib3"),
    "aiohttp": (_aiohttp, "aiohttp-client"),
}


def _bodies(name: str, url: str, plain: Any, wrapped: Any, span: Any) -> dict[str, Callable[[], None]]:
    make, hooks_name = MAKERS[name]
    headers = {**SDK_HEADERS, **(GATEWAY_HEADERS if url == BOUND_URL else {})}
    (request_args, carrier), response_args = make(url, headers)
    client = next(c for c in client_hooks.CLIENTS if c.name == hooks_name)
    bridge_hooks = client.hooks()
    bridge_request, bridge_response = bridge_hooks["request_hook"], bridge_hooks["response_hook"]
    contract = _contract_hooks(name)

    def fresh() -> Any:  # a new copy of the request's headers for each request
        return httpx.Headers(headers) if carrier is None else type(carrier)(headers)

    def plain_body() -> None:  # the same request made, no hooks
        c = fresh()
        _args_with(name, request_args, c)
        plain.inject(c)

    def contract_body() -> None:
        c = fresh()
        args = _args_with(name, request_args, c)
        contract["request_hook"](span, *args)
        plain.inject(c)
        contract["response_hook"](span, *response_args)

    def bridge_body() -> None:
        c = fresh()
        args = _args_with(name, request_args, c)
        bridge_request(span, *args)
        wrapped.inject(c)
        bridge_response(span, *response_args)

    return {"plain": plain_body, "contract": contract_body, "bridge": bridge_body}


def _args_with(name: str, request_args: tuple[Any, ...], carrier: Any) -> tuple[Any, ...]:
    """The request hook's arguments with ``carrier`` as the request's headers."""
    if name in ("requests", "urllib"):
        request_args[0].headers = carrier
        return request_args
    if name == "urllib3":
        info = request_args[1]
        return (
            request_args[0],
            Urllib3RequestInfo(method=info.method, url=info.url, headers=carrier, body=info.body),
        )
    if name == "aiohttp":
        start = request_args[0]
        return (aiohttp.TraceRequestStartParams(start.method, start.url, carrier),)
    info = request_args[0]  # httpx: the hook sees the request's headers, inject a copy of them
    return (info._replace(headers=carrier.copy()),)


def _contract_hooks(name: str) -> dict[str, Any]:
    return httpx_contract_hooks() if name == "httpx" else CLIENTS[name][2]


def bench(count: int, rounds: int) -> tuple[str, dict[str, float], dict[str, float]]:
    """The report, and per client: the seam's cost when not bound, the bridge beyond the contract."""
    sdk_provider()
    plain = propagate.get_global_textmap()
    PortkeyInstrumentor().instrument(gateway_urls=[GATEWAY])
    wrapped = propagate.get_global_textmap()
    tracer = trace.get_tracer("opentelemetry.instrumentation.bench")
    parent = tracer.start_span("chat gpt-4o")
    rows, not_bound, beyond = [], {}, {}
    try:
        for name in MAKERS:
            samples: Samples = {}
            for url, keys in ((OTHER_URL, ("plain", "bridge")), (BOUND_URL, ("plain", "contract", "bridge"))):
                span = tracer.start_span(
                    "POST",
                    context=trace.set_span_in_context(parent),
                    kind=trace.SpanKind.CLIENT,
                    attributes={"url.full": url, "http.request.method": "POST"},
                )
                with trace.use_span(span, end_on_exit=True):
                    bodies = _bodies(name, url, plain, wrapped, span)
                    measured = interleave_samples(
                        dict.fromkeys(keys, bare),
                        lambda key, bodies=bodies: timed(count, bodies[key]),
                        rounds,
                    )
                samples.update({f"{url} {key}": values for key, values in measured.items()})
            not_bound[name] = paired_cpu(samples, f"{OTHER_URL} bridge", f"{OTHER_URL} plain")
            contract = paired_cpu(samples, f"{BOUND_URL} contract", f"{BOUND_URL} plain")
            bridge = paired_cpu(samples, f"{BOUND_URL} bridge", f"{BOUND_URL} plain")
            beyond[name] = bridge - contract
            rows.append(
                [
                    name,
                    us(statistics.median(cpu for cpu, _ in samples[f"{OTHER_URL} plain"])),
                    us(not_bound[name]),
                    us(contract),
                    us(bridge),
                    us(beyond[name]),
                ]
            )
    finally:
        parent.end()
        PortkeyInstrumentor().uninstrument()
    header = [
        "client",
        "plain inject",
        "not Portkey-bound: the bridge adds",
        "Portkey-bound: hand-written contract adds",
        "bridge adds",
        "bridge beyond the contract",
    ]
    title = f"The seam per client ({count} requests x {rounds} interleaved rounds, paired CPU medians)"
    return table(title, header, rows), not_bound, beyond
