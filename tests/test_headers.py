"""``_otel/headers.py``: the private header layouts it relies on are recognised for every pinned
version, and every fast answer equals the public API's."""

import httpx
import httpx2
import pytest
from multidict import CIMultiDict
from requests.structures import CaseInsensitiveDict
from urllib3 import HTTPHeaderDict

from otel_portkey._otel import headers as header_layouts
from otel_portkey._otel.headers import (
    add_absent,
    header_bytes,
    header_getter,
    header_names,
    layout,
    portkey_entries,
)

HEADERS = {"Content-Type": "application/json", "X-Portkey-Provider": "openai", "Authorization": "Bearer k"}


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        (httpx.Headers, "httpx-list"),
        (httpx2.Headers, "httpx-list"),
        (CaseInsensitiveDict, "requests-store"),
        (HTTPHeaderDict, "urllib3-container"),
        (CIMultiDict, ""),
        (dict, ""),
    ],
)
def test_the_pinned_versions_layouts_are_recognised(cls, expected, monkeypatch):
    # Fails loudly when a pinned version changes its layout: the bridge would quietly fall back to
    # the slow public API, and this is where that shows.
    monkeypatch.setattr(header_layouts, "_layouts", {})
    assert layout(cls()) == expected


@pytest.mark.parametrize(
    "cls", [httpx.Headers, httpx2.Headers, CaseInsensitiveDict, HTTPHeaderDict, CIMultiDict, dict]
)
def test_fast_reads_equal_the_public_api(cls, monkeypatch):
    headers = cls(HEADERS)
    fast = (header_names(headers), header_bytes(headers), portkey_entries(headers))
    getter = header_getter(headers)
    monkeypatch.setattr(header_layouts, "_layouts", {cls: ""})
    public = (header_layouts.public_header_names(headers), header_layouts.public_header_bytes(headers))
    assert fast == (*public, header_layouts.public_portkey_entries(headers))
    spelled = "x-portkey-provider" if cls in (httpx.Headers, httpx2.Headers) else "X-Portkey-Provider"
    assert fast[2] == ({"x-portkey-provider": "openai"}, {"x-portkey-provider": spelled})
    for name in ("x-portkey-provider", "content-type", "x-portkey-absent"):
        assert (
            getter(name)
            == header_getter(headers)(name)
            == {k.lower(): v for k, v in HEADERS.items()}.get(name)
        )
    assert fast[1] == sum(len(k) + len(v) + 4 for k, v in HEADERS.items())
    assert header_layouts.PORTKEY_NAME in fast[0]
    assert header_layouts.BAGGAGE_NAME not in fast[0]


def test_repeated_urllib3_values_are_counted_as_the_lines_they_are_sent_as():
    headers = HTTPHeaderDict({"accept": "a"})
    headers.add("accept", "b")
    assert header_bytes(headers) == 2 * (len("accept") + 1 + 4)
    headers.add("X-Portkey-Metadata", "{}")
    headers.add("x-portkey-metadata", '{"a":"1"}')
    assert portkey_entries(headers)[0] == {"x-portkey-metadata": '{}, {"a":"1"}'}
    assert header_getter(headers)("accept") == "a, b"


@pytest.mark.parametrize("module", [httpx, httpx2])
def test_fast_appends_equal_what_the_public_api_does(module, monkeypatch):
    new = {"x-portkey-trace-id": "a" * 32, "x-portkey-metadata": '{"k":"v"}'}
    fast = module.Headers({"Content-Type": "application/json"})
    add_absent(fast, new)
    slow = module.Headers({"Content-Type": "application/json"})
    monkeypatch.setattr(header_layouts, "_layouts", {module.Headers: ""})
    add_absent(slow, new)
    assert fast.raw == slow.raw
    assert fast["X-Portkey-Trace-Id"] == "a" * 32
    assert list(fast.keys()) == list(slow.keys())


def test_an_unknown_headers_class_gets_the_public_api():
    class Plain(dict):  # type: ignore[type-arg]
        pass

    headers = Plain()
    add_absent(headers, {"x-portkey-span-id": "b" * 16})
    assert headers == {"x-portkey-span-id": "b" * 16}
    assert layout(headers) == ""
    assert header_names(Plain({b"X-Portkey-A": "1", "B": "2"})) == "\nx-portkey-a\nb\n"


@pytest.mark.parametrize("module", [httpx, httpx2])
def test_repeated_httpx_headers_are_joined_as_httpx_joins_them(module):
    headers = module.Headers([("X-Portkey-Metadata", "{}"), ("x-portkey-metadata", '{"a":"1"}'), ("A", "1")])
    values, _ = portkey_entries(headers)
    assert (
        values
        == {"x-portkey-metadata": headers["x-portkey-metadata"]}
        == header_layouts.public_portkey_entries(headers)[0]
    )
    assert header_bytes(headers) == sum(len(k) + len(v) + 4 for k, v in headers.raw)


def test_httpx_portkey_headers_are_found_in_one_pass_case_insensitively():
    raw = [
        (b"Content-Type", b"application/json"),
        (b"X-Portkey-Provider", b"openai"),
        (b"x-portkeyish", b"no"),
    ]
    raw += [(b"x-portkey-trace-id", b"a"), (b"X-PORTKEY-TRACE-ID", b"b")]
    for module in (httpx, httpx2):
        headers = module.Headers(raw)
        assert portkey_entries(headers)[0] == {"x-portkey-provider": "openai", "x-portkey-trace-id": "a, b"}
        assert header_getter(headers)("content-type") == "application/json"
        assert header_getter(headers)("x-portkey-trace-id") == "a, b"
