"""``otel-portkey trace``: a trace stored in Jaeger, printed as the demo's tree.

For terminals, SSH sessions, CI logs and Jaegers without a UI (the one ``make components`` builds has
none): the trace is read from Jaeger's query API (api_v3, the OTLP-JSON form of the spans, served
on the UI's port, 16686 by default), by trace id or as the latest trace of a service, and printed
as ``otel-portkey demo`` prints its own: each span's duration and id, under each gateway call what
its span records of Portkey (its trace id, the gateway's node id, cache, retries, provider) and,
where the gateway is traced, the gateway's own node and each upstream attempt.

Everything shown comes from what Jaeger stored. Any failure is one sentence naming the URL and the
cause (exit 1), never a traceback; what Jaeger answers is read up to :data:`MAX_ANSWER_BYTES`,
within one deadline per request, and no text of it reaches the terminal unfiltered.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import http.client
import json
import os
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final, TextIO

from .. import environment_variables as ev
from .._contract import call as h
from .._peers.otlp_receiver import ReceivedSpan
from .doctor import printable, redact_url
from .span_tree import (
    SPAN_KIND_SERVER,
    Label,
    Node,
    add_spans,
    print_tree,
    service,
    span_json,
    span_label,
    text_attribute,
)

DEFAULT_JAEGER: Final = "http://localhost:16686"
REQUEST_SECONDS: Final = 10.0  # the longest one request to Jaeger may take, its answer read whole
MIN_REQUEST_SECONDS: Final = 1.0  # what a request may take, however close the --wait deadline is
MAX_ANSWER_MIB: Final = 64
MAX_ANSWER_BYTES: Final = MAX_ANSWER_MIB * 2**20  # the most of one answer of Jaeger's that is read
MAX_VALUE_DEPTH: Final = 32  # an attribute value nested deeper is shown as a marker, not read on
LOOKBACK_HOURS: Final = 24  # how far back ``--service`` looks for the service's latest trace
SEARCH_DEPTH: Final = 20  # traces per search request (Jaeger's query.num_traces / query.search_depth)
PLACEHOLDER: Final = "This is not the Jaeger UI you are looking for"  # a Jaeger built without its UI
# The echo of x-portkey-trace-id the HTTP client instrumentation captured from the gateway's answer,
# when OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE names it (the demo does).
CAPTURED_ECHO: Final = "http.response.header.x_portkey_trace_id"
# What the tree and --json show of a span's attributes.
SHOWN_ATTRIBUTES: Final = (
    h.ATTR_TRACE_ID,
    h.ATTR_SPAN_ID,
    h.ATTR_CACHE_STATUS,
    h.ATTR_RETRY_ATTEMPT_COUNT,
    h.ATTR_PROVIDER,
    CAPTURED_ECHO,
    "http.response.status_code",
    "server.address",
    "server.port",
)


class TraceError(RuntimeError):
    """Why no trace can be shown, in one sentence that names Jaeger's URL."""


class TraceNotFound(TraceError):
    """Jaeger answered, and has no such trace (yet): worth asking again while ``--wait`` lasts."""


class JaegerUnreachable(TraceError):
    """No (whole) answer from Jaeger; ``cause`` says why in a few words. Worth asking again."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


NOT_YET: Final = (TraceNotFound, JaegerUnreachable)  # the failures ``--wait`` asks again after


class _SlowAnswer(TimeoutError):
    """An answer still arriving when its request's deadline passed."""


# ---- arguments ---------------------------------------------------------------------------------


def normalized_trace_id(text: str) -> str | None:
    """``text`` as 32 lowercase hex characters (a ``0x`` prefix and upper case accepted), or None
    when it is no OTel trace id (another length, not hex, or all zeros)."""
    value = text.strip().lower().removeprefix("0x")
    if len(value) != 32 or any(c not in "0123456789abcdef" for c in value) or not value.strip("0"):
        return None
    return value


def trace_id_argument(text: str) -> str:
    """argparse's type for TRACE_ID: a usage error (exit 2) with one sentence when it is no id."""
    import argparse

    value = normalized_trace_id(text)
    if value is None:
        raise argparse.ArgumentTypeError(
            f"{text[:80]!r} is not an OpenTelemetry trace id: 32 hexadecimal characters, not all zero, "
            "like 4bf92f3577b34da6a3ce929d0e0e4736"
        )
    return value


def jaeger_url_argument(text: str) -> str:
    """argparse's type for --jaeger: an http(s) base URL."""
    import argparse

    try:
        parts = urllib.parse.urlsplit(text)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # an unclosed IPv6 bracket, a port that is no number or out of range
        usable = False
    if not usable:
        raise argparse.ArgumentTypeError(
            f"{redact_url(text)!r} is not Jaeger's base URL (like {DEFAULT_JAEGER}, its UI and query API)"
        )
    return text.rstrip("/")


def base_url(url: str) -> str:
    """``url`` without its query and fragment (never sent: the query API's paths replace them) and
    without a trailing slash; its credentials stay (see :func:`shown_url`)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def shown_url(url: str) -> str:
    """Jaeger's base URL as printed: no query, no fragment, a password masked (``***@``)."""
    return redact_url(base_url(url))


def default_jaeger_url(env: Mapping[str, str] | None = None) -> str:
    """``OTEL_PORTKEY_JAEGER_UI_URL`` when set (the UI and the query API share Jaeger's base URL),
    else ``http://localhost:16686``."""
    env = os.environ if env is None else env
    return (env.get(ev.OTEL_PORTKEY_JAEGER_UI_URL) or DEFAULT_JAEGER).rstrip("/")


def trace_command(trace_id: str, jaeger_url: str) -> str:
    """The command that prints ``trace_id`` from the Jaeger at ``jaeger_url`` (a URL
    :func:`jaeger_url_argument` takes). ``--jaeger`` is left out for the default URL, and for one
    carrying credentials (the environment has it); a query is never shown (``trace`` sends none)."""
    command = f"otel-portkey trace {trace_id}"
    base = base_url(jaeger_url)
    if base != DEFAULT_JAEGER and urllib.parse.urlsplit(base).username is None:
        command += f" --jaeger {base}"
    return command


# ---- why a connection failed ------------------------------------------------------------------


def network_cause(error: BaseException, timeout: float | None = None) -> str:
    """What went wrong on the way to a server, in a few words: read from the deepest operating
    system error in ``error``'s chain (``__cause__``, ``__context__``, a URLError's reason)."""
    found: BaseException = error
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (OSError, http.client.HTTPException)) and not isinstance(
            current, urllib.error.URLError
        ):
            found = current
        reason = getattr(current, "reason", None) if isinstance(current, urllib.error.URLError) else None
        current = reason if isinstance(reason, BaseException) else (current.__cause__ or current.__context__)
    return _describe(found, timeout)


def _describe(error: BaseException, timeout: float | None) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, _SlowAnswer):
        return f"its answer did not end within {timeout:g} s" if timeout else "its answer did not end in time"
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout:g} s" if timeout else "no answer in time"
    if isinstance(error, socket.gaierror):
        return "its host name does not resolve"
    if isinstance(error, http.client.RemoteDisconnected):
        return "the connection closed without an answer"
    if isinstance(error, http.client.IncompleteRead):
        return "its answer broke off before its end"
    if isinstance(error, ConnectionResetError):
        return "the connection was reset"
    if isinstance(error, ssl.SSLError):
        return f"TLS failed ({error.reason or error.strerror or 'handshake'})"
    if isinstance(error, http.client.InvalidURL):
        return "the URL is malformed"
    if isinstance(error, http.client.HTTPException):
        return f"it does not answer HTTP ({type(error).__name__})"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    if isinstance(error, ValueError):  # urllib's word for a URL it cannot use (a bad port, no host)
        return f"the URL is malformed ({error})"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror[0].lower() + error.strerror[1:]
    return type(error).__name__


# ---- Jaeger's query API -------------------------------------------------------------------------


class NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is reported, never followed: following it would send credentials elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises the 3xx as an HTTPError


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    content_type: str
    location: str = ""


@dataclass(frozen=True)
class UiCheck:
    """Whether Jaeger serves its UI at its base URL: True, False (the placeholder page of a Jaeger
    built without the UI's assets), or None with the ``problem`` when it could not be told."""

    has_ui: bool | None
    problem: str | None = None


class JaegerQuery:
    """Jaeger's query API (api_v3) at ``url`` (its base URL, the UI's: ``http://localhost:16686``).
    A password in the URL is sent as HTTP Basic credentials and never shown; its query is not sent.

    Each request, its answer read whole, takes at most ``timeout`` seconds (and, with a
    ``deadline`` on :func:`time.monotonic`'s clock, not much past it: :data:`MIN_REQUEST_SECONDS`
    at least); an answer larger than :data:`MAX_ANSWER_BYTES` is not read on."""

    def __init__(self, url: str, timeout: float = REQUEST_SECONDS) -> None:
        parts = urllib.parse.urlsplit(base_url(url))
        self.shown = shown_url(url)
        self.timeout = timeout
        self.deadline: float | None = None
        self._headers = {"Accept": "application/json"}
        if parts.username is not None:
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        netloc = parts.netloc.rsplit("@", 1)[-1]
        self._base = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        self._opener = urllib.request.build_opener(NoRedirects)

    # -- the requests

    def _budget(self) -> float:
        """How long the next request may take: ``timeout``, cut to what is left before ``deadline``."""
        if self.deadline is None:
            return self.timeout
        return min(self.timeout, max(self.deadline - time.monotonic(), MIN_REQUEST_SECONDS))

    def _get(self, path: str, params: Mapping[str, str] | None = None) -> _Answer:
        url = self._base + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
        request = urllib.request.Request(url, headers=self._headers)
        budget = self._budget()
        ends = time.monotonic() + budget
        try:
            with self._opener.open(request, timeout=budget) as response:
                body = self._read(response, path, ends)
                return _Answer(response.status, body, response.headers.get("content-type") or "")
        except urllib.error.HTTPError as error:
            return _Answer(
                error.code,
                self._error_body(error, path, ends),
                error.headers.get("content-type") or "",
                error.headers.get("location") or "",
            )
        except (OSError, http.client.HTTPException, ValueError) as error:
            cause = network_cause(error, budget)
            raise JaegerUnreachable(
                f"Jaeger at {self.shown} is not reachable ({cause}): is it running? Start it, or point "
                f"--jaeger (or {ev.OTEL_PORTKEY_JAEGER_UI_URL}) at its query port (16686 by default)",
                cause,
            ) from error

    def _read(self, response: Any, path: str, ends: float) -> bytes:
        """The whole body of ``response`` (an ``http.client.HTTPResponse``), read one receive at a
        time: :class:`TraceError` past :data:`MAX_ANSWER_BYTES`, :class:`_SlowAnswer` past ``ends``,
        ``IncompleteRead`` when the connection closes before the announced length."""
        chunks: list[bytes] = []
        size = 0
        while chunk := response.read1(65536):
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise TraceError(
                    f"Jaeger's answer is larger than {MAX_ANSWER_MIB} MiB: Jaeger at {self.shown} answered "
                    f"{path} with more than this command reads; open the trace in Jaeger's UI instead"
                )
            chunks.append(chunk)
            if time.monotonic() > ends:
                raise _SlowAnswer()
        body = b"".join(chunks)
        if getattr(response, "length", None):  # bytes announced and never sent
            raise http.client.IncompleteRead(body)
        return body

    def _error_body(self, error: urllib.error.HTTPError, path: str, ends: float) -> bytes:
        """The body of an HTTP error answer, read as :meth:`_read` reads; empty when it broke off
        (the status says enough)."""
        try:
            return self._read(error.fp, path, ends) if error.fp is not None else b""
        except (OSError, http.client.HTTPException):
            return b""

    def _documents(self, body: bytes, path: str) -> list[dict[str, Any]]:
        try:
            return _json_documents(body)
        except RecursionError as error:
            raise TraceError(
                f"Jaeger at {self.shown} answered {path} with JSON nested too deeply to read: not what "
                "Jaeger's query API answers"
            ) from error

    def _results(self, path: str, params: Mapping[str, str] | None = None) -> list[dict[str, Any]] | None:
        """The ``result`` objects of an api_v3 answer (a stream of ``{"result": TracesData}``);
        None when Jaeger found nothing (its 404 ``No traces found``)."""
        answer = self._get(path, params)
        documents = self._documents(answer.body, path)
        errors = [d["error"] for d in documents if isinstance(d.get("error"), dict)]
        if answer.status == 404 and errors:
            return None
        if 300 <= answer.status < 400:
            where = f" to {redact_url(answer.location)}" if answer.location else ""
            raise TraceError(
                f"Jaeger at {self.shown} answered with a redirect{where}, not followed: pass the URL "
                "it points at with --jaeger"
            )
        if errors:
            message = str(errors[0].get("message", ""))[:300]
            raise TraceError(f"Jaeger at {self.shown} answered HTTP {answer.status} to {path}: {message}")
        results = [d["result"] for d in documents if isinstance(d.get("result"), dict)]
        if answer.status >= 500:
            raise TraceError(
                f"Jaeger at {self.shown} answered HTTP {answer.status} to {path}, a server error without "
                "a word of why: see Jaeger's log"
            )
        if answer.status != 200 or not results:
            page = " (a web page)" if "html" in answer.content_type else ""
            raise TraceError(
                f"{self.shown} answered {path} with HTTP {answer.status}{page}, not with Jaeger's query API: "
                "point --jaeger at Jaeger's query port (16686 by default; not its OTLP port 4318)"
            )
        return results

    def trace(self, trace_id: str) -> list[ReceivedSpan] | None:
        """The spans Jaeger stored of ``trace_id``; None when it has none."""
        results = self._results(f"/api/v3/traces/{trace_id}")
        spans = self._spans(results or [])
        return [s for s in spans if s.trace_id == trace_id] or None

    def latest_trace(self, service_name: str, now: float | None = None) -> list[ReceivedSpan] | None:
        """The spans of the trace of ``service_name`` that started last, among those that started in
        the last :data:`LOOKBACK_HOURS`; None when there is none.

        Jaeger's search returns up to :data:`SEARCH_DEPTH` traces in no given order; while it
        returns that many, the search is narrowed to start at the newest start found so far, until
        fewer come back (so the newest is found even in a busy service)."""
        now_ns = int((time.time() if now is None else now) * 1e9)
        low, high = now_ns - LOOKBACK_HOURS * 3600 * 10**9, now_ns + 3600 * 10**9  # clocks ahead
        found: dict[str, list[ReceivedSpan]] = {}
        for _ in range(5):
            params = {
                "query.service_name": service_name,
                "query.start_time_min": _rfc3339(low),
                "query.start_time_max": _rfc3339(high),
                "query.num_traces": str(SEARCH_DEPTH),  # Jaeger 2.x up to 2.13
                "query.search_depth": str(SEARCH_DEPTH),  # its later name (an unknown one is ignored)
            }
            batch = _by_trace(self._spans(self._results("/api/v3/traces", params) or []))
            found.update(batch)
            if len(batch) < SEARCH_DEPTH:
                break
            newest = max(_start(spans) for spans in batch.values())
            if newest <= low:
                break
            low = newest
        if not found:
            return None
        return found[max(found, key=lambda trace_id: (_start(found[trace_id]), trace_id))]

    def services(self) -> list[str]:
        """The services Jaeger knows (empty when it answers otherwise)."""
        answer = self._get("/api/v3/services")
        documents = self._documents(answer.body, "/api/v3/services") if answer.status == 200 else []
        names = documents[0].get("services") if documents else None
        return sorted(str(n) for n in names) if isinstance(names, list) else []

    def ui(self) -> UiCheck:
        """Whether Jaeger serves its UI (one GET of its base URL)."""
        try:
            answer = self._get("/")
        except JaegerUnreachable as error:
            return UiCheck(None, f"did not answer: {error.cause}")
        except TraceError:  # only an answer too large to read
            return UiCheck(None, f"answered with more than {MAX_ANSWER_MIB} MiB")
        if PLACEHOLDER.encode() in answer.body:
            return UiCheck(False)
        if answer.status == 200:
            return UiCheck(True)
        return UiCheck(None, f"answered HTTP {answer.status}")

    def _spans(self, results: list[dict[str, Any]]) -> list[ReceivedSpan]:
        """The spans of ``results``, each span id once (Jaeger's documents may repeat a span)."""
        try:
            return spans_from_otlp_json(*results)
        except (KeyError, ValueError, TypeError, AttributeError, RecursionError) as error:
            raise TraceError(
                f"Jaeger at {self.shown} answered spans this command cannot read ({type(error).__name__}: "
                f"{str(error)[:200]})"
            ) from error


def _json_documents(body: bytes) -> list[dict[str, Any]]:
    """The JSON objects of a body holding one or several in a row (api_v3 streams its results);
    empty when it is not JSON. ``RecursionError`` for JSON nested deeper than Python reads."""
    decoder = json.JSONDecoder()
    text = body.decode("utf-8", errors="replace")
    documents: list[dict[str, Any]] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            return documents
        try:
            document, position = decoder.raw_decode(text, position)
        except ValueError:
            return documents
        if isinstance(document, dict):
            documents.append(document)


def _rfc3339(unix_ns: int) -> str:
    seconds, nanos = divmod(unix_ns, 10**9)
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def _start(spans: list[ReceivedSpan]) -> int:
    return min(span.start_ns for span in spans)


def _by_trace(spans: list[ReceivedSpan]) -> dict[str, list[ReceivedSpan]]:
    traces: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        traces.setdefault(span.trace_id, []).append(span)
    return traces


# ---- OTLP-JSON spans -------------------------------------------------------------------------------


def hex_id(value: object, size: int) -> str:
    """An OTLP-JSON id (hex, as Jaeger writes it, or base64 as protobuf's JSON mapping does) as
    ``size`` bytes of lowercase hex; "" for none."""
    if not value:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"an id is a string, not {type(value).__name__}")
    if len(value) == 2 * size and all(c in "0123456789abcdefABCDEF" for c in value):
        return value.lower()
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error as error:
        raise ValueError(f"{value[:40]!r} is neither a hex nor a base64 id") from error
    if len(raw) != size:
        raise ValueError(f"{value[:40]!r} is not a {size}-byte id")
    return raw.hex()


def any_value(value: Mapping[str, Any], depth: int = 0) -> Any:
    """An OTLP-JSON ``AnyValue`` as a Python value (int64s arrive as strings; bytes as base64);
    an array or key-value list nested deeper than :data:`MAX_VALUE_DEPTH` is shown as a marker."""
    if depth > MAX_VALUE_DEPTH and ("arrayValue" in value or "kvlistValue" in value):
        return f"(nested deeper than {MAX_VALUE_DEPTH} levels)"
    if "stringValue" in value:
        return str(value["stringValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return [any_value(v, depth + 1) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return attributes(value["kvlistValue"].get("values", []), depth + 1)
    if "bytesValue" in value:
        return base64.b64decode(value["bytesValue"])
    return None


def attributes(key_values: list[Mapping[str, Any]], depth: int = 0) -> dict[str, Any]:
    return {str(kv["key"]): any_value(kv.get("value") or {}, depth) for kv in key_values}


_KIND_NAMES: Final = {
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
}


def spans_from_otlp_json(*traces_data: Mapping[str, Any]) -> list[ReceivedSpan]:
    """The spans of OTLP-JSON ``TracesData`` (what api_v3 answers in each ``result``), each span id
    once across them all (a span stored twice comes back twice), as the demo's receiver decodes
    OTLP/protobuf."""
    spans: dict[str, ReceivedSpan] = {}
    for resource_spans in (rs for data in traces_data for rs in data.get("resourceSpans") or []):
        resource = attributes((resource_spans.get("resource") or {}).get("attributes") or [])
        for scope_spans in resource_spans.get("scopeSpans") or []:
            for span in scope_spans.get("spans") or []:
                kind = span.get("kind", 0)
                received = ReceivedSpan(
                    name=str(span.get("name", "")),
                    trace_id=hex_id(span.get("traceId"), 16),
                    span_id=hex_id(span.get("spanId"), 8),
                    parent_span_id=hex_id(span.get("parentSpanId"), 8),
                    kind=_KIND_NAMES.get(kind, 0) if isinstance(kind, str) else int(kind),
                    start_ns=int(span.get("startTimeUnixNano") or 0),
                    end_ns=int(span.get("endTimeUnixNano") or 0),
                    attributes=attributes(span.get("attributes") or []),
                    resource=resource,
                )
                spans.setdefault(received.span_id, received)
    return list(spans.values())


# ---- the tree ----------------------------------------------------------------------------------


def gateway_services(spans: list[ReceivedSpan]) -> set[str]:
    """The services of traced gateways in ``spans``: a gateway's node of a call is a SERVER span
    carrying the ``portkey.span_id`` it received (the app's own HTTP spans are CLIENT spans)."""
    return {service(s) for s in spans if s.kind == SPAN_KIND_SERVER and h.ATTR_SPAN_ID in s.attributes}


def portkey_calls(spans: list[ReceivedSpan], gateways: set[str]) -> list[ReceivedSpan]:
    """The app's spans of gateway calls (they carry ``portkey.span_id``), in the order they started."""
    return sorted(
        (s for s in spans if h.ATTR_SPAN_ID in s.attributes and service(s) not in gateways),
        key=lambda s: s.start_ns,
    )


def trace_tree(spans: list[ReceivedSpan], jaeger: str) -> Node:
    """The tree the demo prints, from the spans alone: under each gateway call, what its span
    records of Portkey's answer, then the gateway's own node where the gateway is traced."""
    trace_id = spans[0].trace_id
    gateways = gateway_services(spans)
    calls = {span.span_id: (n, span) for n, span in enumerate(portkey_calls(spans, gateways), 1)}
    services = sorted({service(s) or "(no service.name)" for s in spans})
    root = Node(
        [
            (f"OTel trace {trace_id}", "bold"),
            ("  ", ""),
            (
                f"from Jaeger at {jaeger}: {len(spans)} span{'s' * (len(spans) != 1)}, "
                f"service{'s' * (len(services) != 1)} {', '.join(services)}",
                "dim",
            ),
        ]
    )

    def label(span: ReceivedSpan, position: int) -> Label:
        parent = calls.get(span.parent_span_id)
        expected = text_attribute(parent[1], h.ATTR_SPAN_ID) if parent else None
        return span_label(span, position, service(span) in gateways, expected, expected_as="sent")

    def before(span: ReceivedSpan, node: Node) -> None:
        if span.span_id in calls:
            number, call = calls[span.span_id]
            node.add((f"gateway call {number}", "cyan"), ("  ", ""), *_recorded(call))

    def after(span: ReceivedSpan, node: Node) -> None:
        if span.span_id in calls and gateways:
            children = [s for s in spans if s.parent_span_id == span.span_id and service(s) in gateways]
            if not children:
                node.add(("the gateway exported no span for this call", "yellow"))

    add_spans(root, spans, label, before, after)
    return root


def _recorded(call: ReceivedSpan) -> Label:
    """What a gateway call's span records of Portkey: the trace id it joined (the gateway's echo,
    else the id sent), the gateway node's id sent, cache, retries and provider (from the answer);
    then whether the trace id is the OTel one, by the echo the HTTP instrumentation captured from
    the gateway's answer when there is one (the gateway's own word), else by the span's record."""
    portkey_trace = call.attributes.get(h.ATTR_TRACE_ID)
    parts = [
        f"trace {portkey_trace if portkey_trace is not None else '(none)'}",
        f"span {call.attributes.get(h.ATTR_SPAN_ID)}",
        f"cache {call.attributes.get(h.ATTR_CACHE_STATUS, '(none)')}",
        f"retries {call.attributes.get(h.ATTR_RETRY_ATTEMPT_COUNT, '(none)')}",
        f"provider {call.attributes.get(h.ATTR_PROVIDER, '(none)')}",
    ]
    label: Label = [("  ".join(parts) + "  ", "")]
    captured = call.attributes.get(CAPTURED_ECHO)
    if isinstance(captured, list):
        echo = ", ".join(map(str, captured))
        if echo == call.trace_id:
            return [*label, ("echoed by the gateway", "green")]
        return [*label, (f"the gateway echoed {echo or '(blank)'}", "red")]
    if portkey_trace == call.trace_id:
        return [*label, ("trace ids equal", "green")]
    return [*label, ("not the OTel trace id", "red")]


def trace_json(spans: list[ReceivedSpan], jaeger: str) -> dict[str, Any]:
    """The trace as ``--json`` prints it: the spans, in the order they started, with the fields
    the tree shows."""
    gateways = gateway_services(spans)
    return {
        "trace_id": spans[0].trace_id,
        "jaeger": jaeger,
        "services": sorted({service(s) for s in spans}),
        "spans": [
            {
                **span_json(span),
                "start_unix_nano": span.start_ns,
                "from_gateway": service(span) in gateways,
                "attributes": {k: span.attributes[k] for k in SHOWN_ATTRIBUTES if k in span.attributes},
            }
            for span in sorted(spans, key=lambda s: s.start_ns)
        ],
    }


# ---- the command ---------------------------------------------------------------------------------


def find(query: JaegerQuery, trace_id: str | None, service_name: str | None) -> list[ReceivedSpan]:
    """The trace asked for; :class:`TraceNotFound` when Jaeger has none."""
    if trace_id is not None:
        spans = query.trace(trace_id)
        if spans is None:
            raise TraceNotFound(
                f"no trace {trace_id} in Jaeger at {query.shown} yet: spans reach Jaeger a few seconds "
                "after the app exits (the SDK batches them, a Collector batches again); try again"
            )
        return spans
    assert service_name is not None
    spans = query.latest_trace(service_name)
    if spans is None:
        known = query.services()
        has = f"it has {', '.join(known)}" if known else "it has no service yet"
        raise TraceNotFound(
            f"no trace of service {service_name!r} in Jaeger at {query.shown} in the last "
            f"{LOOKBACK_HOURS} hours ({has}): the app's OTEL_SERVICE_NAME names the service"
        )
    return spans


WAIT_POLL_SECONDS: Final = 0.5
# How long Jaeger's answer must stay the same before ``--wait`` takes it: longer than a Collector's
# batch (1 s in collector-config.yaml) plus Jaeger's own, so a trace on its way shows up within it.
SETTLE_SECONDS: Final = 2.0


def find_waiting(
    query: JaegerQuery, trace_id: str | None, service_name: str | None, wait: float
) -> list[ReceivedSpan]:
    """:func:`find`, asked again every half second for up to ``wait`` seconds (0: once).

    First until there is an answer: Jaeger not reachable and no such trace (yet) are asked again,
    any other failure is final. Then until the answer has stayed the same (the same trace id and the
    same span ids) for :data:`SETTLE_SECONDS`: with a trace id, a trace still growing (the app's
    batch, then the gateway's); with ``service_name``, the service's latest trace is looked up anew
    each time, so a newer trace reaching Jaeger meanwhile (the run that just ended, while an older
    one was found first) replaces the one found. A failure while settling keeps the trace found.

    Guaranteed: what is printed is what Jaeger held at the last read, stable for
    :data:`SETTLE_SECONDS` unless ``wait`` ran out first. Not guaranteed: a trace (or spans) that
    reach Jaeger later than that is not waited for, and with ``service_name`` the latest trace may be
    another run's (the service's runs are told apart by their start only)."""
    if not wait:
        return find(query, trace_id, service_name)
    deadline = time.monotonic() + wait
    query.deadline = deadline
    spans = _first_answer(query, trace_id, service_name, deadline)
    return _settled(query, trace_id, service_name, spans, deadline)


def _first_answer(
    query: JaegerQuery, trace_id: str | None, service_name: str | None, deadline: float
) -> list[ReceivedSpan]:
    while True:
        try:
            return find(query, trace_id, service_name)
        except NOT_YET:
            if time.monotonic() + WAIT_POLL_SECONDS > deadline:
                raise
            time.sleep(WAIT_POLL_SECONDS)


def _settled(
    query: JaegerQuery,
    trace_id: str | None,
    service_name: str | None,
    spans: list[ReceivedSpan],
    deadline: float,
) -> list[ReceivedSpan]:
    since = time.monotonic()
    while time.monotonic() - since < SETTLE_SECONDS and time.monotonic() + WAIT_POLL_SECONDS <= deadline:
        time.sleep(WAIT_POLL_SECONDS)
        try:
            again = find(query, trace_id, service_name)
        except TraceError:
            return spans
        if _shape(again) != _shape(spans):
            spans, since = again, time.monotonic()
    return spans


def _shape(spans: list[ReceivedSpan]) -> tuple[str, frozenset[str]]:
    return spans[0].trace_id, frozenset(span.span_id for span in spans)


def run(
    trace_id: str | None,
    service_name: str | None,
    jaeger_url: str,
    as_json: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
    wait: float = 0.0,
) -> int:
    """``otel-portkey trace``: 0 printed, 1 with one sentence on ``err`` when there is nothing to print
    (after up to ``wait`` seconds of asking again: :func:`find_waiting`), 130 on Ctrl-C."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        return _run(trace_id, service_name, JaegerQuery(jaeger_url), as_json, out, err, wait)
    except KeyboardInterrupt:
        print("otel-portkey trace: interrupted", file=err)
        return 130


def _run(
    trace_id: str | None,
    service_name: str | None,
    query: JaegerQuery,
    as_json: bool,
    out: TextIO,
    err: TextIO,
    wait: float,
) -> int:
    try:
        spans = find_waiting(query, trace_id, service_name, wait)
    except TraceError as error:
        print(printable(f"otel-portkey trace: {error}"), file=err)
        return 1
    try:
        if as_json:
            print(json.dumps(trace_json(spans, query.shown), indent=2, default=_json_value), file=out)
        else:
            print_tree(trace_tree(spans, query.shown), file=out)
        out.flush()
    except BrokenPipeError:  # the reader went away (``| head``): no traceback, nothing more to write
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
    return 0


def _json_value(value: object) -> object:
    """What ``--json`` prints of a value JSON has no type for: bytes as lowercase hex."""
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"{type(value).__name__} is not printed as JSON")
