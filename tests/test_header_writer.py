import httpx
import httpx2
import pytest

from otel_portkey import header_writer
from otel_portkey.header_writer import add_absent


@pytest.mark.parametrize("module", [httpx, httpx2])
def test_fast_appends_equal_what_the_public_api_does(module, monkeypatch):
    new = {"x-portkey-trace-id": "a" * 32, "x-portkey-metadata": '{"k":"v"}'}
    fast = module.Headers({"Content-Type": "application/json"})
    add_absent(fast, new)
    assert header_writer._layout_ok[module.Headers] is True
    slow = module.Headers({"Content-Type": "application/json"})
    monkeypatch.setattr(header_writer, "_layout_ok", {module.Headers: False})
    add_absent(slow, new)
    assert fast.raw == slow.raw
    assert fast["X-Portkey-Trace-Id"] == "a" * 32
    assert list(fast.keys()) == list(slow.keys())


def test_an_unknown_headers_class_gets_the_public_api():
    class Plain(dict):
        pass

    headers = Plain()
    add_absent(headers, {"x-portkey-span-id": "b" * 16})
    assert headers == {"x-portkey-span-id": "b" * 16}
    assert header_writer._layout_ok[Plain] is False
