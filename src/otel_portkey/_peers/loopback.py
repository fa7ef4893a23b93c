"""The threaded HTTP server every loopback peer here runs on, and their common start/stop surface."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Self


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
