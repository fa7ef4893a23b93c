"""Where ``otel-portkey demo``'s exports go: :class:`ExportRelay`, the one OTLP/HTTP base URL the
agent and the traced gateway export to, relays each export to the demo's receivers and, with
``--otlp-endpoint``, on to that endpoint through :class:`Delivery`, which counts what did not arrive.

A gzip body is inflated up to :data:`MAX_EXPORT_BYTES`; a larger one is answered 413, one that is
not gzip 400, neither with a traceback.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
import zlib
from typing import Any, Final

from .._peers.loopback import LoopbackHandler, LoopbackServer, LoopbackService
from .._peers.otlp_receiver import answer, decode_spans, relay
from .doctor import redact_url
from .metrics_summary import METRICS_PATH
from .trace import NoRedirects, network_cause

MAX_EXPORT_MIB: Final = 64
MAX_EXPORT_BYTES: Final = MAX_EXPORT_MIB * 2**20  # the most one export inflates to


class ExportTooLarge(ValueError):
    """A gzip body that inflates past :data:`MAX_EXPORT_BYTES`."""


def gunzip(body: bytes, limit: int = MAX_EXPORT_BYTES) -> bytes:
    """``body`` (one gzip member or several in a row) inflated: :class:`ExportTooLarge` past
    ``limit`` bytes, ``zlib.error`` for what is not gzip, ``EOFError`` for gzip cut short."""
    out = bytearray()
    rest = body
    while rest:
        inflater = zlib.decompressobj(wbits=31)  # 31: a gzip header and trailer
        out += inflater.decompress(rest, limit + 1 - len(out))
        if len(out) > limit or inflater.unconsumed_tail:
            raise ExportTooLarge(f"the export inflates past {limit} bytes")
        if not inflater.eof:
            raise EOFError("the gzip body ends early")
        rest = inflater.unused_data
    return bytes(out)


TRACES_PATH: Final = "/v1/traces"
DELIVERY_TIMEOUT: Final = 5.0  # seconds an export waits for --otlp-endpoint's answer


class Delivery:
    """What the demo sent on to ``--otlp-endpoint``, and what did not arrive there.

    Each export of the agent's or the traced gateway's goes on as it arrives, waiting at most
    :data:`DELIVERY_TIMEOUT` for the endpoint's answer. Once the endpoint did not answer at all
    (nothing listens, no route), the signal's later exports are counted as not delivered without
    being tried: the demo waits for a dead endpoint once per signal, not once per export. An
    endpoint that answers ``/v1/metrics`` with 404 takes no metrics (Jaeger): that is no failure.
    """

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.shown = redact_url(self.endpoint)
        self.spans = 0
        self.spans_undelivered = 0
        self.spans_cause: str | None = None
        self.metric_exports = 0
        self.metric_exports_undelivered = 0
        self.metrics_cause: str | None = None
        self.metrics_not_taken = False
        self._dead: dict[str, str] = {}  # path -> why the endpoint did not answer there
        self._pending = 0  # exports on their way (guarded by _settled, as the counts are)
        self._settled = threading.Condition()
        self._opener = urllib.request.build_opener(NoRedirects)

    def send(self, path: str, payload: bytes) -> None:
        """Send one export (OTLP/protobuf, uncompressed) on to ``<endpoint><path>`` and count it."""
        with self._settled:
            self._pending += 1
        try:
            self._send(path, payload)
        finally:
            with self._settled:
                self._pending -= 1
                self._settled.notify_all()

    def wait(self, timeout: float = DELIVERY_TIMEOUT + 1) -> None:
        """Until no export is on its way to the endpoint (each waits :data:`DELIVERY_TIMEOUT` at most)."""
        with self._settled:
            self._settled.wait_for(lambda: self._pending == 0, timeout)

    def _send(self, path: str, payload: bytes) -> None:
        try:
            spans = len(decode_spans(payload)) if path == TRACES_PATH else 0
            problem, status = self._post(path, payload)
        except Exception as error:  # the relay answers the exporter whatever happens here
            spans, problem, status = 0, type(error).__name__, None
        with self._settled:
            if path == TRACES_PATH:
                self.spans += spans
                if problem is not None:
                    self.spans_undelivered += spans
                    self.spans_cause = self.spans_cause or problem
            elif status == 404:
                self.metrics_not_taken = True
            else:
                self.metric_exports += 1
                if problem is not None:
                    self.metric_exports_undelivered += 1
                    self.metrics_cause = self.metrics_cause or problem

    def _post(self, path: str, payload: bytes) -> tuple[str | None, int | None]:
        """(None, status) when the endpoint took the export; else (why not, its HTTP status if any)."""
        dead = self._dead.get(path)
        if dead is not None:
            return dead, None
        request = urllib.request.Request(
            self.endpoint + path,
            data=payload,
            headers={"content-type": "application/x-protobuf"},
            method="POST",
        )
        try:
            with self._opener.open(request, timeout=DELIVERY_TIMEOUT) as response:
                if "html" in (response.headers.get("content-type") or ""):
                    return "it answered with a web page, not OTLP", response.status
                return None, response.status
        except urllib.error.HTTPError as error:
            return f"HTTP {error.code}", error.code
        except Exception as error:  # no answer at all: refused, no route, timed out, malformed URL
            cause = network_cause(error, DELIVERY_TIMEOUT)
            self._dead[path] = cause
            return cause, None

    @property
    def failed(self) -> bool:
        return bool(self.spans_undelivered or self.metric_exports_undelivered)

    def sentence(self) -> str:
        """What was not delivered, where, and why, in one sentence."""
        lost: list[tuple[str, str | None]] = []  # (what, why), each singular or plural as counted
        if self.spans_undelivered:
            some = "" if self.spans_undelivered == self.spans else f"{self.spans_undelivered} of "
            lost.append((f"{some}the {_count(self.spans, 'span')}", self.spans_cause))
        if self.metric_exports_undelivered:
            some = (
                "the metrics"
                if self.metric_exports_undelivered == self.metric_exports
                else f"{self.metric_exports_undelivered} of {_count(self.metric_exports, 'metric export')}"
            )
            lost.append((some, self.metrics_cause))
        one = len(lost) == 1 and (
            lost[0][0] == "the metrics" or (self.spans_undelivered or self.metric_exports_undelivered) == 1
        )
        where = f"{'was' if one else 'were'} not delivered to {self.shown}"
        if len({cause for _, cause in lost}) == 1:
            what = f"{' and '.join(part for part, _ in lost)} {where} ({lost[0][1]})"
        else:
            what = f"{' and '.join(f'{part} ({cause})' for part, cause in lost)} {where}"
        return (
            f"{what}: --otlp-endpoint takes the OTLP/HTTP base URL of a running Collector or Jaeger, "
            "like http://localhost:4318"
        )

    def line(self) -> str:
        """What was delivered, for the demo's output."""
        line = f"Sent to {self.shown}: {_count(self.spans, 'span')}"
        if self.metric_exports:
            line += " and the metrics"
        if self.metrics_not_taken:
            line += " (it takes no metrics: /v1/metrics answered 404, as Jaeger does)"
        return line

    def as_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.shown,
            "delivered": not self.failed,
            "spans": self.spans,
            "spans_undelivered": self.spans_undelivered,
            "spans_cause": self.spans_cause,
            "metric_exports": self.metric_exports,
            "metric_exports_undelivered": self.metric_exports_undelivered,
            "metrics_cause": self.metrics_cause,
            "metrics_not_taken": self.metrics_not_taken,
        }


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


class ExportRelay(LoopbackService):
    """The one OTLP/HTTP base URL the agent and the traced gateway export to: each export, spans
    (``/v1/traces``) or metrics (``/v1/metrics``), is relayed to the demo's receivers and, with a
    ``delivery``, sent on to ``--otlp-endpoint`` before the exporter gets its answer."""

    thread_name = "demo-exports"

    def __init__(self, traces_url: str, metrics_url: str, delivery: Delivery | None = None) -> None:
        routes = {TRACES_PATH: traces_url, METRICS_PATH: metrics_url}

        class Handler(LoopbackHandler):
            def do_POST(self) -> None:
                body = self.request_body()  # whole or chunked (OpenTelemetry for Node sends chunks)
                if body is None:
                    return
                target = routes.get(self.path)
                if target is None:
                    self.reply(404)
                    return
                if (self.headers.get("content-encoding") or "").lower() == "gzip":
                    try:
                        body = gunzip(body)
                    except ExportTooLarge:
                        self.reply(413)
                        return
                    except (zlib.error, EOFError):
                        self.reply(400)
                        return
                taken = relay(target, body)
                if taken and delivery is not None:
                    delivery.send(self.path, body)
                answer(self, 200 if taken else 503, b"")

        self._server = LoopbackServer(Handler)
