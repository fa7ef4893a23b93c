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
from . import metadata as md
from .config import PortkeySettings
from .context import context_metadata
from .ids import new_span_id
from .streaming import end_span_when_stream_closes, is_event_stream
from .trace_ids import portkey_trace_ids

_log = logging.getLogger(__name__)
_reported: set[str] = set()

SpanNameLookup = Callable[[int], "str | None"]


def warn_once(key: str, message: str) -> None:
    """Log ``message`` at warning the first time ``key`` comes up, at debug after that."""
    if key in _reported:
        _log.debug(message)
        return
    _reported.add(key)
    _log.warning(message)


def report_once(where: str, error: BaseException) -> None:
    """Report a bridge failure once. Only the exception's type is logged: messages of header
    errors can quote header values, and those can be secrets."""
    kind = type(error).__name__
    warn_once(f"{where}:{kind}", f"otel-portkey: {where} failed ({kind}); the request goes on without it")


class PortkeyHooks:
    """Adds Portkey headers to gateway-bound requests and Portkey answers to their spans."""

    def __init__(self, settings: PortkeySettings, span_name_of: SpanNameLookup | None = None) -> None:
        self._settings = settings
        self._span_name_of = span_name_of
        self._static_metadata = dict(settings.static_metadata)
        # Metadata derived from the tracer provider's resource, computed once per resource object.
        self._resource: object = None
        self._resource_metadata: dict[str, str] = {}

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
        portkey_trace_id = headers.get(h.TRACE_ID)
        if portkey_trace_id != ids.trace_id:
            portkey_trace_ids.remember(ids.trace_id, portkey_trace_id)
        self._add_metadata(span, headers, ids.trace_id)
        if self._settings.trace_url_template is not None and span.is_recording():
            span.set_attribute(
                h.ATTR_TRACE_URL, self._settings.trace_url_template.replace("{trace_id}", portkey_trace_id)
            )

    def _add_metadata(self, span: Span, headers: Any, trace_id: str) -> None:
        entries = {**self._resource_metadata_of(span), **self._static_metadata, **context_metadata()}
        if self._settings.jaeger_ui_url is not None:
            link = f"{self._settings.jaeger_ui_url}/trace/{trace_id}"
            if len(link) <= md.MAX_VALUE_CHARS:
                entries.setdefault("jaeger_trace", link)
            else:
                _log.debug("otel-portkey: the Jaeger link is longer than 128 characters; not sent")
        merged = md.merge(headers.get(h.METADATA), entries)
        if merged.caller_header_invalid:
            warn_once(
                "invalid caller metadata",
                "otel-portkey: a request's x-portkey-metadata is not a JSON object; it is sent as is, "
                "without context metadata",
            )
        if merged.header is not None:
            headers[h.METADATA] = merged.header
        if merged.entries and span.is_recording():
            span.set_attributes(
                {h.ATTR_METADATA_PREFIX + key: value for key, value in merged.entries.items()}
            )

    def _resource_metadata_of(self, span: Span) -> dict[str, str]:
        resource = getattr(span, "resource", None)
        if resource is not self._resource:
            attributes = getattr(resource, "attributes", None) or {}
            self._resource_metadata = md.from_resource(attributes)
            self._resource = resource
        return self._resource_metadata

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
