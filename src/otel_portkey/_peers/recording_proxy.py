"""A recording hop in front of a gateway: it keeps each request's headers and the gateway's
response headers, and forwards both unchanged.

The OSS gateway does not pass ``x-portkey-*`` headers on to the provider, so tests and the demo
put this hop between the client and the gateway to see exactly what the gateway received, and
what it answered (``x-portkey-trace-id`` echo, option index, gateway exception, ...) as the
gateway sent it, not as the bridge recorded it on a span. Responses, streamed or not, are
relayed unchanged; so are request bodies, sent whole or chunked (``Transfer-Encoding: chunked``).
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Final
from urllib.parse import urlsplit

from .loopback import BadRequestBody, LoopbackHandler, LoopbackServer, LoopbackService, read_request_body

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
}


# A request carrying any of these routes itself (a provider, a config with its targets, a virtual
# key): the hop's default routing is not added to it.
ROUTING_HEADERS: Final = frozenset({"x-portkey-config", "x-portkey-provider", "x-portkey-virtual-key"})


def has_own_routing(headers: Mapping[str, str]) -> bool:
    """True when a request's headers (any case) name its own route through a Portkey gateway."""
    return any(name.lower() in ROUTING_HEADERS for name in headers)


@dataclass(frozen=True)
class ForwardedRequest:
    """A request as the hop received it and the gateway's answer (header names lowercased)."""

    method: str
    path: str
    headers: dict[str, str]
    status: int
    response_headers: dict[str, str]


def relay_response(
    handler: BaseHTTPRequestHandler,
    response: http.client.HTTPResponse,
    extra_headers: dict[str, str] | None = None,
) -> None:
    """Send an upstream response on through ``handler``, chunk by chunk (streams stay streams)."""
    handler.send_response(response.status)
    for key, value in response.getheaders():
        if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
            handler.send_header(key, value)
    for key, value in (extra_headers or {}).items():
        handler.send_header(key, value)
    handler.send_header("transfer-encoding", "chunked")
    handler.end_headers()
    while chunk := response.read1(65536):
        handler.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        handler.wfile.flush()
    handler.wfile.write(b"0\r\n\r\n")


class RecordingProxy(LoopbackService):
    """``with RecordingProxy(gateway.url) as hop: client(base_url=hop.url + "/v1")``.

    ``port``: where to listen on 127.0.0.1 (default: a free port). ``default_routing``: headers the
    hop adds to a request with no routing of its own (none of :data:`ROUTING_HEADERS`; e.g.
    ``route_headers(...)`` lets apps that send no routing headers reach a model server through the
    OSS gateway); a request that carries its own routing (a retry or fallback config, a provider,
    a virtual key) passes unchanged. ``requests`` records each request as the hop received it
    (with ``record=False``, nothing is kept: a hop that runs for hours).
    """

    thread_name = "recording-proxy"

    def __init__(
        self,
        target_url: str,
        port: int = 0,
        default_routing: Mapping[str, str] | None = None,
        record: bool = True,
    ) -> None:
        target = urlsplit(target_url)
        defaults = dict(default_routing or {})
        self.requests: list[ForwardedRequest] = []
        lock = threading.Lock()
        proxy = self

        class Handler(LoopbackHandler):
            def _relay(self) -> None:
                try:
                    body = read_request_body(self.rfile, self.headers)
                except BadRequestBody as error:
                    self.close_connection = True
                    self.reply(400, json.dumps({"error": str(error)}).encode(), "application/json")
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                upstream = http.client.HTTPConnection(
                    target.hostname or "127.0.0.1", target.port, timeout=120
                )
                try:
                    forward = {  # the body goes whole: http.client sends its length
                        k: v
                        for k, v in self.headers.items()
                        if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"
                    }
                    if not has_own_routing(headers):
                        forward.update({k: v for k, v in defaults.items() if k.lower() not in headers})
                    try:
                        upstream.request(self.command, self.path, body=body or None, headers=forward)
                        response = upstream.getresponse()
                    except OSError as error:  # the gateway is down: answer as a proxy does
                        message = (
                            f'{{"error":"the gateway did not answer ({type(error).__name__})"}}'.encode()
                        )
                        self.reply(502, message, "application/json")
                        return
                    answered: dict[str, str] = {}
                    for key, value in response.getheaders():  # repeated headers joined, as httpx does
                        name = key.lower()
                        answered[name] = f"{answered[name]}, {value}" if name in answered else value
                    if record:
                        with lock:
                            proxy.requests.append(
                                ForwardedRequest(self.command, self.path, headers, response.status, answered)
                            )
                    relay_response(self, response)
                finally:
                    upstream.close()

            do_GET = do_POST = do_PUT = do_DELETE = _relay

        self._server = LoopbackServer(Handler, port)
