"""The threaded HTTP server every loopback peer here runs on, and their common start/stop surface."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BufferedIOBase
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Self


class BadRequestBody(ValueError):
    """A request body that is not valid HTTP/1.1 framing."""


def read_request_body(rfile: BufferedIOBase, headers: Message) -> bytes:
    """A request's whole body: ``Content-Length`` bytes, or the chunks of a ``Transfer-Encoding:
    chunked`` body joined (chunk extensions and trailers read and dropped)."""
    if "chunked" in (headers.get("transfer-encoding") or "").lower():
        parts: list[bytes] = []
        while True:
            line = rfile.readline(65537)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as error:
                raise BadRequestBody(f"bad chunk size line {line[:40]!r}") from error
            if size == 0:
                while rfile.readline(65537) not in (b"\r\n", b"\n", b""):  # trailers, then the blank line
                    pass
                return b"".join(parts)
            chunk = rfile.read(size)
            if len(chunk) != size:
                raise BadRequestBody("the body ended inside a chunk")
            parts.append(chunk)
            rfile.readline(3)  # the CRLF after the chunk
    return rfile.read(int(headers.get("content-length") or 0))


class LoopbackHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, no Nagle delay, and no access log on stderr."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls between header and body writes

    def log_message(self, format: str, *args: object) -> None:
        pass

    def reply(
        self,
        status: int,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Answer with ``status`` and a whole ``body`` (its length sent), then ``headers``."""
        self.send_response(status)
        if content_type is not None:
            self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def request_body(self) -> bytes | None:
        """The request's whole body, sent with a length or chunked (OpenTelemetry for Node's
        exporters send chunks); None, answered 400 and the connection closed, when its framing is
        broken."""
        try:
            return read_request_body(self.rfile, self.headers)
        except BadRequestBody:
            self.close_connection = True
            self.reply(400)
            return None


class LoopbackServer(ThreadingHTTPServer):
    """A threaded HTTP server on 127.0.0.1 with room for a thousand waiting connections."""

    request_queue_size = 1024
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that goes away mid-answer is normal here: no traceback on stderr for it."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]

    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self, name: str) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class LoopbackService:
    """A peer served by one :class:`LoopbackServer`: ``with Peer() as peer: peer.url``, or
    ``start()`` / ``stop()``. Subclasses make ``self._server`` and name their thread."""

    _server: LoopbackServer
    thread_name = "loopback-service"

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self._server.port}"

    def start(self) -> Self:
        self._server.start(self.thread_name)
        return self

    def stop(self) -> None:
        self._server.stop()

    def close(self) -> None:
        """Give the port back without ever having served (``stop`` is for a started one)."""
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
