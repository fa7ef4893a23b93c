"""One chat call with each HTTP client library an OTel instrumentation covers, for parametrised tests.

Each entry: the instrumentor class to instrument and a function ``call(url, headers, json)`` that
makes one POST with the real library and returns the status code.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import urllib.request
from collections.abc import Callable
from typing import Any

import aiohttp
import httpx
import httpx2
import requests
import urllib3
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor, HTTPXClientInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.instrumentation.urllib import URLLibInstrumentor
from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor

Call = Callable[[str, dict[str, str], Any], int]


def _requests(url: str, headers: dict[str, str], json: Any) -> int:
    return requests.post(url, headers=headers, json=json, timeout=30).status_code


def _urllib_post(url: str, headers: dict[str, str], json: Any) -> urllib.request.Request:
    request = urllib.request.Request(url, data=jsonlib.dumps(json).encode(), method="POST")
    for name, value in {**headers, "content-type": "application/json"}.items():
        request.add_header(name, value)
    return request


def _urllib(url: str, headers: dict[str, str], json: Any) -> int:
    with urllib.request.urlopen(_urllib_post(url, headers, json), timeout=30) as response:
        return int(response.status)


def _urllib3(url: str, headers: dict[str, str], json: Any) -> int:
    with urllib3.PoolManager() as pool:
        return int(pool.request("POST", url, headers=headers, json=json, timeout=30).status)


def _aiohttp(url: str, headers: dict[str, str], json: Any) -> int:
    async def run() -> int:
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, headers=headers, json=json) as response,
        ):
            await response.read()
            return response.status

    return asyncio.run(run())


def _httpx(url: str, headers: dict[str, str], json: Any) -> int:
    return httpx.post(url, headers=headers, json=json).status_code


def _httpx2_async(url: str, headers: dict[str, str], json: Any) -> int:
    async def run() -> int:
        async with httpx2.AsyncClient() as client:
            return (await client.post(url, headers=headers, json=json)).status_code

    return asyncio.run(run())


CLIENTS: dict[str, tuple[type[Any], Call]] = {
    "requests": (RequestsInstrumentor, _requests),
    "urllib": (URLLibInstrumentor, _urllib),
    "urllib3": (URLLib3Instrumentor, _urllib3),
    "aiohttp": (AioHttpClientInstrumentor, _aiohttp),
    "httpx": (HTTPXClientInstrumentor, _httpx),
    "httpx2 async": (HTTPX2ClientInstrumentor, _httpx2_async),
}


# Streamed calls: ``stream(url, headers, json, during)`` reads the response headers, calls
# ``during()`` before the body is read, then reads the body to its end and closes the response the
# library's usual way; returns (what ``during()`` returned, the body).
def _stream_requests(
    url: str, headers: dict[str, str], json: Any, during: Callable[[], Any]
) -> tuple[Any, bytes]:
    with requests.post(url, headers=headers, json=json, stream=True, timeout=30) as response:
        seen = during()
        return seen, b"".join(response.iter_content(None))


def _stream_urllib(
    url: str, headers: dict[str, str], json: Any, during: Callable[[], Any]
) -> tuple[Any, bytes]:
    with urllib.request.urlopen(_urllib_post(url, headers, json), timeout=30) as response:
        seen = during()
        return seen, response.read()


def _stream_urllib3(
    url: str, headers: dict[str, str], json: Any, during: Callable[[], Any]
) -> tuple[Any, bytes]:
    with urllib3.PoolManager() as pool:
        response = pool.request("POST", url, headers=headers, json=json, preload_content=False, timeout=30)
        seen = during()
        body = response.read()
        response.release_conn()
        return seen, body


def _stream_aiohttp(
    url: str, headers: dict[str, str], json: Any, during: Callable[[], Any]
) -> tuple[Any, bytes]:
    async def run() -> tuple[Any, bytes]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, headers=headers, json=json) as response,
        ):
            seen = during()
            return seen, await response.read()

    return asyncio.run(run())


STREAMS: dict[str, Callable[[str, dict[str, str], Any, Callable[[], Any]], tuple[Any, bytes]]] = {
    "requests": _stream_requests,
    "urllib": _stream_urllib,
    "urllib3": _stream_urllib3,
    "aiohttp": _stream_aiohttp,
}


def _stream_httpx(module: Any) -> Callable[[str, dict[str, str], Any, Callable[[], Any]], tuple[Any, bytes]]:
    def stream(url: str, headers: dict[str, str], json: Any, during: Callable[[], Any]) -> tuple[Any, bytes]:
        with module.Client() as client, client.stream("POST", url, headers=headers, json=json) as response:
            seen = during()
            return seen, response.read()

    return stream


STREAMS["httpx"] = _stream_httpx(httpx)
STREAMS["httpx2"] = _stream_httpx(httpx2)


def _stream_httpx2_async(
    url: str, headers: dict[str, str], json: Any, during: Callable[[], Any]
) -> tuple[Any, bytes]:
    async def run() -> tuple[Any, bytes]:
        async with (
            httpx2.AsyncClient() as client,
            client.stream("POST", url, headers=headers, json=json) as response,
        ):
            seen = during()
            return seen, await response.aread()

    return asyncio.run(run())


STREAMS["httpx2 async"] = _stream_httpx2_async
