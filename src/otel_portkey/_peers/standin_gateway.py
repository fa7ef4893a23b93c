"""A built-in Portkey-compatible stand-in, for the demo on a machine without Node.js.

It is not the gateway: it forwards OpenAI-style requests to the ``x-portkey-custom-host`` they
name and answers with the response headers the OSS gateway sends (trace id echo, retry count 0,
cache ``DISABLED``, provider, option index). Whatever uses it must say so.
"""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

from .loopback import LoopbackHandler, LoopbackServer, LoopbackService
from .recording_proxy import HOP_BY_HOP, relay_response

LABEL = "built-in Portkey stand-in (Node.js not found: not the real gateway)"


class _Handler(LoopbackHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        custom_host = self.headers.get("x-portkey-custom-host")
        if not self.headers.get("x-portkey-provider") or not custom_host:
            self._refuse(
                400, b'{"status":"failure","message":"x-portkey-provider and x-portkey-custom-host needed"}'
            )
            return
        target = urlsplit(custom_host)
        path = target.path.rstrip("/") + self.path.removeprefix("/v1")
        forward = {
            k: v
            for k, v in self.headers.items()
            if k.lower() not in HOP_BY_HOP and not k.lower().startswith("x-portkey-")
        }
        upstream = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=120)
        try:
            upstream.request("POST", path, body=body, headers=forward)
            response = upstream.getresponse()
            extra = {
                "x-portkey-trace-id": self.headers.get("x-portkey-trace-id", ""),
                "x-portkey-retry-attempt-count": "0",
                "x-portkey-cache-status": "DISABLED",
                "x-portkey-provider": self.headers.get("x-portkey-provider", ""),
                "x-portkey-last-used-option-index": "config",
            }
            relay_response(self, response, extra)
        finally:
            upstream.close()

    def _refuse(self, status: int, body: bytes) -> None:
        self.reply(status, body, "application/json")


class PortkeyStandIn(LoopbackService):
    """``with PortkeyStandIn() as gateway: gateway.base_url`` — same surface as :class:`OssGateway`."""

    thread_name = "portkey-stand-in"

    label = LABEL

    def __init__(self, port: int = 0) -> None:
        self._server = LoopbackServer(_Handler, port)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"
