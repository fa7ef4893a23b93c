"""The bridge's request and response side, for every OTel HTTP client instrumentation.

Each client's hooks (``client_hooks``) are thin adapters over one implementation,
:class:`PortkeyHooks`; its request side ``_bridge`` is the same for every client. Every failure
inside the bridge is caught and reported once; the user's request always goes on.

This is the hot path of every instrumented request, so it is written for speed (see
``benchmarks/``): a request's header names are searched once, joined into one string; only a
Portkey-bound request reads more. The merged metadata header and its attributes are cached per
(resource, context metadata, caller header, budget), and the ids sent are recorded on the span at
request time so the response hook reads no request header at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

from opentelemetry.propagators.textmap import Setter, default_setter
from opentelemetry.trace import Span, Status, StatusCode

from . import header_layouts
from . import headers as h
from . import metadata as md
from .config import PortkeySettings
from .context import MetadataItems, context_metadata
from .header_layouts import add_absent
from .header_maps import BAGGAGE_NAME, PORTKEY_NAME
from .ids import new_span_id
from .propagation import Decision, request_decision, span_url
from .streaming import end_span_when_stream_closes, is_event_stream
from .trace_ids import portkey_trace_ids

_log = logging.getLogger(__name__)
_reported: set[str] = set()

CallerName = Callable[[Span], "str | None"]  # the name of the span that made a CLIENT span
_CONTENT_TYPE: Final = b"content-type"
_MAX_CACHED_MERGES: Final = 256
# The OSS gateway's Node server refuses (431) a request whose header section passes 16 KB. The
# metadata budget of a request shrinks so that what the bridge adds keeps it under that, with room
# for the request line and the ``traceparent`` the propagator adds after the hook.
GATEWAY_HEADER_LIMIT: Final = 16 * 1024
_RESERVED_BYTES: Final = 1024
_BUDGET_STEP: Final = 256  # budgets are rounded down to a step, so merges stay cacheable


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


class _Merged:
    """A cached metadata merge: the header to set (None: leave as is) and the span attributes."""

    __slots__ = ("attributes", "caller_header_invalid", "header")

    def __init__(self, merged: md.MergedMetadata) -> None:
        self.header = merged.header
        self.caller_header_invalid = merged.caller_header_invalid
        self.attributes = {h.ATTR_METADATA_PREFIX + key: value for key, value in merged.entries.items()}


class _ResourceCache:
    """Metadata derived from one resource, and the merges made with it."""

    __slots__ = ("merges", "metadata", "resource")

    def __init__(self, resource: object) -> None:
        self.resource = resource
        self.metadata = md.from_resource(getattr(resource, "attributes", None) or {})
        self.merges: dict[tuple[MetadataItems, str | None, int], _Merged] = {}


class PortkeyHooks:
    """Adds Portkey headers to gateway-bound requests and Portkey answers to their spans."""

    def __init__(
        self,
        settings: PortkeySettings,
        caller_name: CallerName | None = None,
        after_request: Callable[[], None] | None = None,
        resource: object | None = None,
    ) -> None:
        self._settings = settings
        self._caller_name = caller_name
        self._after_request = after_request  # run after each bridged request's headers are set
        self._resource = resource  # the provider's, for spans that carry none (unsampled ones)
        self._static_metadata = dict(settings.static_metadata)
        # Per tracer provider resource (held, so its id stays unique): the metadata derived from it
        # and the merges made with it, so a merge can never be served for another resource.
        self._resources: dict[int, _ResourceCache] = {}

    # The httpx instrumentation's hook signatures (``RequestInfo`` / ``ResponseInfo`` tuples), for
    # passing to ``instrument_client`` by hand; ``client_hooks`` composes the same calls.
    def request_hook(self, span: Span, request: Any) -> None:
        self.on_request(span, request)

    def response_hook(self, span: Span, request: Any, response: Any) -> None:
        self.on_response(span, request, response)

    def on_request(self, span: Span, request: Any) -> None:
        """:meth:`on_client_request` for the httpx/httpx2 instrumentation's ``RequestInfo``; never raises."""
        try:
            headers = request.headers
            if headers is None:
                return
            method = request.method
            method = method.decode("ascii", "replace") if isinstance(method, bytes) else str(method)
            url = str(request.url)
        except Exception as error:
            report_once("adding Portkey headers", error)
            return
        self.on_client_request(span, headers, url, method)

    def on_response(self, span: Span, request: Any, response: Any) -> None:
        """Record the gateway's answer on the call's span; never raises."""
        try:
            self._record_response(span, response)
        except Exception as error:
            report_once("recording the Portkey response", error)

    def on_client_request(self, span: Span, headers: Any, url: str, method: str) -> None:
        """Set ``x-portkey-*`` headers on a Portkey-bound request of any client, from its request
        hook: ``headers`` is the live mapping its instrumentation injects into next (for httpx, a
        copy of it). Tells the propagator what it found; never raises."""
        try:
            names = header_layouts.header_names(headers)
            context = span.get_span_context()
            bound = PORTKEY_NAME in names or h.url_matches_gateway(url, self._settings.gateway_prefixes)
            request_decision.set(Decision(headers, context.span_id, bound, BAGGAGE_NAME in names))
            if not bound or not context.is_valid:
                return
            present, spelled = header_layouts.portkey_entries(headers) if PORTKEY_NAME in names else ({}, {})
            used = header_layouts.header_bytes(headers)
            self._bridge(span, present, used, method, url, _CarrierHeaders(headers, default_setter, spelled))
        except Exception as error:
            report_once("adding Portkey headers", error)

    def on_portkey_request(self, span: Span, carrier: Any, setter: Setter[Any]) -> None:
        """Set ``x-portkey-*`` headers on a Portkey-bound request that no bridge hook saw (its
        instrumentation was made before the bridge), from the propagator as the instrumentation
        injects: the URL and method come from the CLIENT span's attributes; never raises."""
        try:
            if not span.get_span_context().is_valid:
                return
            present, spelled = header_layouts.portkey_entries(carrier)
            attributes = getattr(span, "attributes", None) or {}
            method = attributes.get("http.request.method") or attributes.get("http.method") or "POST"
            used = header_layouts.header_bytes(carrier)
            writer = _CarrierHeaders(carrier, setter, spelled)
            self._bridge(span, present, used, str(method), span_url(span), writer)
        except Exception as error:
            report_once("adding Portkey headers", error)

    def _bridge(
        self, span: Span, present: dict[str, str], used: int, method: str, url: str, headers: _HeaderWriter
    ) -> None:
        """The request side, one implementation for every client: ids, metadata, attributes.

        ``present`` holds the request's ``x-portkey-*`` headers (lowercase names), ``used`` the bytes
        its headers take; ``headers`` replaces or adds headers on the live request.
        """
        context = span.get_span_context()
        name = h.safe_header_value(self._span_name(span, method, url))
        ids = h.call_ids(context.trace_id, context.span_id, new_span_id(), name)
        if not present:  # the usual case: every id header goes on
            new = h.id_headers(ids)
        else:
            new = h.headers_to_set(present.get, ids, self._settings.trace_id_policy)
        if h.TRACE_ID in new and h.TRACE_ID in present:  # the override policy replaces the caller's
            headers.replace(h.TRACE_ID, new.pop(h.TRACE_ID))
            present[h.TRACE_ID] = ids.trace_id
        caller_metadata = present.get(h.METADATA)
        if caller_metadata is not None:  # it is replaced by the merged header, counted in the budget
            used -= len(h.METADATA) + len(caller_metadata) + 4
        budget = _metadata_budget(used, ids)
        merged = self._merged_metadata(span, present.get(h.METADATA), ids.trace_id, budget)
        if merged.header is not None:
            if h.METADATA in present:
                headers.replace(h.METADATA, merged.header)
            else:
                new[h.METADATA] = merged.header
        headers.add(new)
        present.update(new)
        # A caller's own ids can be any length: bounded like every attribute the bridge sets.
        trace_id = present[h.TRACE_ID][: h.MAX_ATTRIBUTE_CHARS]
        if trace_id != ids.trace_id:
            portkey_trace_ids.remember(ids.trace_id, trace_id)
        if span.is_recording():
            attributes: dict[str, str] = {
                **merged.attributes,
                h.ATTR_TRACE_ID: trace_id,
                h.ATTR_SPAN_ID: present[h.SPAN_ID][: h.MAX_ATTRIBUTE_CHARS],
            }
            if self._settings.trace_url_template is not None:
                attributes[h.ATTR_TRACE_URL] = self._settings.trace_url_template.replace(
                    "{trace_id}", trace_id
                )
            span.set_attributes(attributes)
        if self._after_request is not None:
            self._after_request()

    def _span_name(self, span: Span, method: str, url: str) -> str:
        if self._caller_name is not None:
            name = self._caller_name(span)
            if name:
                return name
        return h.fallback_span_name(method, urlsplit(url).path)

    def _merged_metadata(self, span: Span, caller_header: str | None, trace_id: str, budget: int) -> _Merged:
        resource = getattr(span, "resource", None) or self._resource
        known = self._resources.get(id(resource))
        if known is None or known.resource is not resource:
            if len(self._resources) >= 16:
                self._resources.clear()
            known = self._resources[id(resource)] = _ResourceCache(resource)
        context = context_metadata(trust=self._settings.baggage_trust)
        jaeger = self._settings.jaeger_ui_url
        if jaeger is None:  # cacheable: nothing per call in the entries
            key = (context, caller_header, budget)
            cached = known.merges.get(key)
            if cached is None:
                if len(known.merges) >= _MAX_CACHED_MERGES:
                    known.merges.clear()
                cached = known.merges[key] = self._merge(known.metadata, context, caller_header, None, budget)
            return cached
        return self._merge(known.metadata, context, caller_header, f"{jaeger}/trace/{trace_id}", budget)

    def _merge(
        self,
        resource: dict[str, str],
        context: MetadataItems,
        caller_header: str | None,
        jaeger_link: str | None,
        budget: int,
    ) -> _Merged:
        # Most specific first (context, then static settings, then the resource, then the Jaeger
        # link): when they do not all fit the byte budget, the least specific ones are left out.
        entries = dict(context)
        for fallback in (self._static_metadata, resource):
            for key, value in fallback.items():
                entries.setdefault(key, value)
        if jaeger_link is not None:
            if len(jaeger_link) <= md.MAX_VALUE_CHARS:
                entries.setdefault("jaeger_trace", jaeger_link)
            else:
                _log.debug("otel-portkey: the Jaeger link is longer than 128 characters; not sent")
        result = md.merge(caller_header, entries, budget)
        if result.dropped:
            warn_once(
                "metadata over budget",
                f"otel-portkey: Portkey metadata passed this request's header budget ({budget} bytes); "
                f"its {result.dropped} least specific entries were not sent",
            )
        if result.made_safe and "made safe" not in _reported:
            _reported.add("made safe")
            _log.debug(
                "otel-portkey: metadata broke Portkey's rules and was made safe (stringified or truncated)"
            )
        merged = _Merged(result)
        if merged.caller_header_invalid:
            warn_once(
                "invalid caller metadata",
                "otel-portkey: a request's x-portkey-metadata is not a JSON object; it is sent as is, "
                "without context metadata",
            )
        return merged

    def _record_response(self, span: Span, response: Any) -> None:
        if not _bridged_call(span):
            return
        answer = h.portkey_headers(response.headers.raw, also=(_CONTENT_TYPE,))
        if self._record_answer(span, answer.get) and is_event_stream(answer.get("content-type")):
            end_span_when_stream_closes(span, response.stream)

    def on_client_response(self, span: Span, response: Any, close_methods: tuple[str, ...]) -> None:
        """Record the gateway's answer from any client's response (its ``headers`` mapping), and
        keep the span of a streamed answer open until one of ``close_methods`` runs; never raises."""
        try:
            if not _bridged_call(span):
                return
            header = header_layouts.header_getter(response.headers)
            if not self._record_answer(span, header) or not is_event_stream(header("content-type")):
                return
            body = getattr(response, "raw", None) or response  # requests keeps the stream in ``raw``
            if getattr(body, "closed", False) is not True:  # else already read (requests without stream=True)
                end_span_when_stream_closes(span, response, close_methods, ())
        except Exception as error:
            report_once("recording the Portkey response", error)

    def _record_answer(self, span: Span, header: Callable[[str], str | None]) -> bool:
        """Put the gateway's answer (``x-portkey-*`` response headers, read with ``header``) on the
        span of a call this bridge sent to a gateway; False when the span records nothing."""
        if not span.is_recording():
            return False
        attributes = h.response_attributes(header)
        if attributes:
            span.set_attributes(attributes)
        if attributes.get(h.ATTR_GATEWAY_EXCEPTION):
            span.set_status(Status(StatusCode.ERROR, "Portkey gateway exception"))
        return True


def _bridged_call(span: Span) -> bool:
    """Whether ``span`` is the CLIENT span of a call the bridge sent to a gateway: its request
    hook's decision, still there when the response comes back in the same context, says so; else
    (some other request came in between) the ids it recorded on the span do."""
    decided = request_decision.get()
    if decided is not None and decided.span_id == span.get_span_context().span_id:
        return decided.bound
    return h.ATTR_SPAN_ID in (getattr(span, "attributes", None) or {})


def _metadata_budget(used: int, ids: h.CallIds) -> int:
    """Bytes ``x-portkey-metadata`` may take on this request: at most ``MAX_HEADER_BYTES``, and
    less when the request's own headers (``used`` bytes) leave less room under the gateway's limit."""
    used += 64 + len(ids.span_name) + 100 + _RESERVED_BYTES  # our 4 id headers (3 are hex ids), names
    room = GATEWAY_HEADER_LIMIT - used - len(h.METADATA) - 4
    budget = min(md.MAX_HEADER_BYTES, room)
    return max(0, budget - budget % _BUDGET_STEP)


class _HeaderWriter(Protocol):
    def replace(self, name: str, value: str) -> None: ...
    def add(self, new: dict[str, str]) -> None: ...


class _CarrierHeaders:
    """Writes into any client's header mapping through the propagator's setter, keeping the
    spelling of a header the caller already set (plain ``dict`` carriers are case-sensitive)."""

    __slots__ = ("_carrier", "_names", "_setter")

    def __init__(self, carrier: Any, setter: Setter[Any], names: dict[str, str]) -> None:
        self._carrier, self._setter, self._names = carrier, setter, names

    def replace(self, name: str, value: str) -> None:
        self._setter.set(self._carrier, self._names.get(name, name), value)

    def add(self, new: dict[str, str]) -> None:
        if self._setter is default_setter:  # ``carrier[name] = value`` for each
            add_absent(self._carrier, new)
            return
        for name, value in new.items():
            self._setter.set(self._carrier, name, value)
