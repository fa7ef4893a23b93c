"""The recording hop (``otel-portkey gateway``'s front door): default routing only for a request
with none of its own, and request bodies relayed whole, sent with a length or chunked. The hop
forwards to an in-test upstream that records what reached it."""

from __future__ import annotations

import http.client
import io
import json
from collections.abc import Iterator
from email.message import Message

import pytest

from otel_portkey._peers.loopback import BadRequestBody, LoopbackHandler, LoopbackServer, read_request_body
from otel_portkey._peers.recording_proxy import RecordingProxy

DEFAULT_ROUTING = {"x-portkey-provider": "openai", "x-portkey-custom-host": "http://127.0.0.1:9/v1"}
FALLBACK = {"strategy": {"mode": "fallback"}, "targets": [{"provider": "openai", "api_key": "sk-1"}]}


class Upstream:
    """A stand-in gateway: answers 200 with a JSON body and keeps each request's headers and body."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        upstream = self

        class Handler(LoopbackHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                upstream.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.reply(200, b'{"ok": true}', "application/json")

        self.server = LoopbackServer(Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    server.server.start("test-upstream")
    yield server
    server.server.stop()


@pytest.fixture
def hop(upstream: Upstream) -> Iterator[RecordingProxy]:
    with RecordingProxy(upstream.url, default_routing=DEFAULT_ROUTING) as proxy:
        yield proxy


def post(hop: RecordingProxy, headers: dict[str, str], body: bytes | Iterator[bytes] = b"{}") -> int:
    connection = http.client.HTTPConnection("127.0.0.1", hop.port, timeout=10)
    try:
        chunked = not isinstance(body, bytes)
        connection.request("POST", "/v1/chat/completions", body=body, headers=headers, encode_chunked=chunked)
        response = connection.getresponse()
        assert json.loads(response.read()) == {"ok": True}
        return response.status
    finally:
        connection.close()


def test_a_request_with_no_routing_of_its_own_gets_the_default_routing(hop, upstream):
    assert post(hop, {"content-type": "application/json", "authorization": "Bearer k"}) == 200
    ((headers, _),) = upstream.received
    assert {k: headers[k] for k in DEFAULT_ROUTING} == DEFAULT_ROUTING
    assert hop.requests[0].headers.keys().isdisjoint(DEFAULT_ROUTING), "recorded as received"


def test_the_default_routing_never_replaces_a_header_the_request_has(hop, upstream):
    post(hop, {"x-portkey-custom-host": "http://127.0.0.1:1/v1"})
    ((headers, _),) = upstream.received
    assert headers["x-portkey-custom-host"] == "http://127.0.0.1:1/v1"
    assert headers["x-portkey-provider"] == "openai"


@pytest.mark.parametrize(
    "own",
    [
        {
            "x-portkey-config": json.dumps(
                {"strategy": {"mode": "fallback"}, "targets": [{"provider": "openai"}]}
            )
        },
        {"X-Portkey-Config": json.dumps({"retry": {"attempts": 2}})},
        {"x-portkey-provider": "anthropic"},
        {"x-portkey-virtual-key": "vk-123"},
    ],
    ids=["fallback-config", "retry-config-any-case", "provider", "virtual-key"],
)
def test_a_request_with_routing_of_its_own_passes_unchanged(hop, upstream, own):
    sent = {"content-type": "application/json", "x-portkey-trace-id": "ab" * 16, **own}
    post(hop, sent)
    ((headers, _),) = upstream.received
    relayed = {k: v for k, v in headers.items() if k not in ("host", "accept-encoding", "content-length")}
    assert relayed == {k.lower(): v for k, v in sent.items()}, "nothing added, nothing changed"


def test_a_chunked_request_body_is_relayed_whole(hop, upstream):
    parts = [b'{"model": "gpt-4o", ', b'"messages": [{"role": "user", "content": "', b"x" * 70000, b'"}]}']
    assert post(hop, {"content-type": "application/json"}, iter(parts)) == 200
    ((headers, body),) = upstream.received
    assert body == b"".join(parts)
    assert headers["content-length"] == str(len(body))
    assert "transfer-encoding" not in headers
    # the connection stays usable: the next request on it is read from where the body ended
    assert post(hop, {}, b'{"next": 1}') == 200
    assert upstream.received[1][1] == b'{"next": 1}'


def test_two_chunked_requests_on_one_connection(hop, upstream):
    connection = http.client.HTTPConnection("127.0.0.1", hop.port, timeout=10)
    try:
        for number in range(2):
            body = iter([b'{"n": ', str(number).encode(), b"}"])
            connection.request("POST", "/v1/x", body=body, encode_chunked=True)
            assert connection.getresponse().read() == b'{"ok": true}'
    finally:
        connection.close()
    assert [body for _, body in upstream.received] == [b'{"n": 0}', b'{"n": 1}']


def chunked(headers: dict[str, str]) -> Message:
    message = Message()
    for name, value in headers.items():
        message[name] = value
    return message


def test_read_request_body_reads_chunk_extensions_and_trailers():
    raw = io.BytesIO(b"4;ext=1\r\nabcd\r\n2\r\nef\r\n0\r\nx-trailer: t\r\n\r\nNEXT")
    assert read_request_body(raw, chunked({"Transfer-Encoding": "chunked"})) == b"abcdef"
    assert raw.read() == b"NEXT", "stops after the body's last line"


def test_read_request_body_reads_a_length_or_nothing():
    assert read_request_body(io.BytesIO(b"abcNEXT"), chunked({"Content-Length": "3"})) == b"abc"
    assert read_request_body(io.BytesIO(b"NEXT"), chunked({})) == b""


@pytest.mark.parametrize("raw", [b"zz\r\nab\r\n0\r\n\r\n", b"10\r\nshort", b""])
def test_a_broken_chunked_body_is_refused(raw):
    with pytest.raises(BadRequestBody):
        read_request_body(io.BytesIO(raw), chunked({"Transfer-Encoding": "chunked"}))


def test_the_hop_answers_400_to_a_broken_chunked_body(hop, upstream):
    connection = http.client.HTTPConnection("127.0.0.1", hop.port, timeout=10)
    try:
        connection.putrequest("POST", "/v1/chat/completions")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders(b"not-hex\r\n")
        response = connection.getresponse()
        assert response.status == 400
        assert "bad chunk size line" in json.loads(response.read())["error"]
    finally:
        connection.close()
    assert upstream.received == []
