"""A recording hop in front of a gateway: it keeps each request's headers and the gateway's
response headers, and forwards both unchanged.

The OSS gateway does not pass ``x-portkey-*`` headers on to the provider, so tests and the demo
put this hop between the client and the gateway to see exactly what the gateway received, and
what it answered (``x-portkey-trace-id`` echo, option index, gateway exception, ...) as the
gateway sent it, not as the bridge recorded it on a span. Responses, streamed or not, are
relayed unchanged.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from .loopback import LoopbackHandler, LoopbackServer, LoopbackService

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
}


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

    ``port``: where to listen on 127.0.0.1 (default: a free port). ``add_headers``: headers the hop
    adds to a forwarded request that has none of that name (``route_headers(...)`` lets apps that
    send no routing headers reach a model server through the OSS gateway); ``requests`` records
    each request as the hop received it, before they are added (with ``record=False``, nothing is
    kept: a hop that runs for hours).
    """

    thread_name = "recording-proxy"

    def __init__(
        self,
        target_url: str,
        port: int = 0,
        add_headers: Mapping[str, str] | None = None,
        record: bool = True,
    ) -> None:
        target = urlsplit(target_url)
        defaults = dict(add_headers or {})
        self.requests: list[ForwardedRequest] = []
        lock = threading.Lock()
        proxy = self

        class Handler(LoopbackHandler):
            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                upstream = http.client.HTTPConnection(
                    target.hostname or "127.0.0.1", target.port, timeout=120
                )
                try:
                    forward = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
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
