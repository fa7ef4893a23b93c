"""Request and response hooks for the OTel httpx/httpx2 instrumentation.

Sync and async hooks are thin adapters over one implementation, :class:`PortkeyHooks`. Every
failure inside the bridge is caught and reported once; the user's request always goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from opentelemetry.trace import Span, Status, StatusCode

from . import headers as h
from .config import PortkeySettings
from .ids import new_span_id
from .streaming import end_span_when_stream_closes, is_event_stream

_log = logging.getLogger(__name__)
_reported: set[tuple[str, str]] = set()

SpanNameLookup = Callable[[int], "str | None"]


def report_once(where: str, error: BaseException) -> None:
    """Log a bridge failure at warning the first time it happens, at debug after that.

    Only the exception's type is logged: messages of header errors can quote header values.
    """
    key = (where, type(error).__name__)
    if key in _reported:
        _log.debug("otel-portkey: %s failed again (%s)", where, key[1])
        return
    _reported.add(key)
    _log.warning("otel-portkey: %s failed (%s); the request goes on without it", where, key[1])


class PortkeyHooks:
    """Adds Portkey headers to gateway-bound requests and Portkey answers to their spans."""

    def __init__(self, settings: PortkeySettings, span_name_of: SpanNameLookup | None = None) -> None:
        self._settings = settings
        self._span_name_of = span_name_of

    # The four hooks the httpx instrumentation calls (``RequestInfo`` / ``ResponseInfo`` tuples).
    def request_hook(self, span: Span, request: Any) -> None:
        self.on_request(span, request)

    def response_hook(self, span: Span, request: Any, response: Any) -> None:
        self.on_response(span, request, response)

    async def async_request_hook(self, span: Span, request: Any) -> None:
        self.on_request(span, request)

    async def async_response_hook(self, span: Span, request: Any, response: Any) -> None:
        self.on_response(span, request, response)

    def on_request(self, span: Span, request: Any) -> None:
        """Set ``x-portkey-*`` trace headers on a Portkey-bound request; never raises."""
        try:
            self._add_headers(span, request)
        except Exception as error:
            report_once("adding Portkey headers", error)

    def on_response(self, span: Span, request: Any, response: Any) -> None:
        """Record the gateway's answer on the call's span; never raises."""
        try:
            self._record_response(span, request, response)
        except Exception as error:
            report_once("recording the Portkey response", error)

    def _add_headers(self, span: Span, request: Any) -> None:
        headers = request.headers
        if headers is None:
            return
        url = request.url
        if not (
            h.url_matches_gateway(str(url), self._settings.gateway_prefixes)
            or h.has_portkey_header(headers.keys())
        ):
            return
        context = span.get_span_context()
        if not context.is_valid:
            return
        name = h.safe_header_value(self._span_name(span, request))
        ids = h.call_ids(context.trace_id, context.span_id, new_span_id(), name)
        for header, value in h.headers_to_set(headers.get, ids, self._settings.trace_id_policy).items():
            headers[header] = value

    def _span_name(self, span: Span, request: Any) -> str:
        parent = getattr(span, "parent", None)
        if parent is not None and self._span_name_of is not None:
            name = self._span_name_of(parent.span_id)
            if name:
                return name
        method = request.method
        method = method.decode("ascii", "replace") if isinstance(method, bytes) else str(method)
        return h.fallback_span_name(method, request.url.path)

    def _record_response(self, span: Span, request: Any, response: Any) -> None:
        sent_headers = request.headers
        if sent_headers is None or not span.is_recording() or not h.has_portkey_header(sent_headers.keys()):
            return
        sent = {
            name: value for name in (h.TRACE_ID, h.SPAN_ID) if (value := sent_headers.get(name)) is not None
        }
        response_headers = response.headers
        attributes = h.response_attributes(response_headers.get, sent)
        span.set_attributes(attributes)
        if attributes.get(h.ATTR_GATEWAY_EXCEPTION):
            span.set_status(Status(StatusCode.ERROR, "Portkey gateway exception"))
        if is_event_stream(response_headers.get("content-type")):
            end_span_when_stream_closes(span, response.stream)
