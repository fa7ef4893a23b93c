"""The request and the response side of a call to a Portkey gateway, one implementation for every
HTTP client: where what a hook sees becomes the contract's plan, and the plan is carried out.

Order for one request (each client's hooks in ``client_hooks`` are thin adapters onto this):

1. :meth:`Bridge.on_request`, from the client's request hook, in its CLIENT span, with the live
   header mapping: is the request Portkey-bound (one search over its header names, one prefix check
   of its URL)? It leaves the answer in :data:`request_decision` for the propagator, which injects
   next. A bound request's facts go to :func:`~otel_portkey._contract.call.plan_request`; the plan's
   headers are written (``headers``), its attributes set on the span, its notes told once.
2. :meth:`Bridge.on_inject`: the same, from the propagator, for a request no bridge hook saw (its
   instrumentation was made before the bridge); URL and method come from the span's attributes.
3. :meth:`Bridge.on_response`, from the client's response hook: the gateway's answer as
   attributes; a streamed answer keeps the span open until the stream ends.
4. When the span ends, the call's metrics point (``metrics``: started by ``on_request``, given the
   answer by ``on_response``), for sampled and unsampled calls alike.

Nothing here raises into the application: every failure is reported once and the request goes on.
This is the hot path of every instrumented request, so a request that is not Portkey-bound costs
one join and two substring searches, and a bound one reads only the ``x-portkey-*`` headers.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Final, NamedTuple

from opentelemetry.propagators.textmap import Setter, default_setter
from opentelemetry.trace import Span, Status, StatusCode

from .._contract.call import (
    ATTR_GATEWAY_EXCEPTION,
    ATTR_SPAN_ID,
    CONFIG,
    CONTENT_TYPE,
    CallPolicy,
    MetadataItems,
    Note,
    RequestFacts,
    answer_attributes,
    is_event_stream,
    plan_request,
    url_matches_gateway,
)
from .._contract.ids import new_span_id
from .._contract.metadata import from_resource
from ..config import PortkeySettings
from .diagnostics import debug_once, report_once, warn_once
from .headers import (
    BAGGAGE_NAME,
    PORTKEY_NAME,
    add_absent,
    header_bytes,
    header_getter,
    header_names,
    portkey_entries,
)
from .kept_trace_ids import portkey_trace_ids
from .metadata_context import context_metadata
from .metrics import GatewayMetrics, call_of
from .processor import caller_of
from .streaming import end_span_when_stream_closes

_MAX_RESOURCES: Final = 16


class Decision(NamedTuple):
    """What the bridge's request hook found, in the CLIENT span, just before the client's
    instrumentation injects: the propagator then need not look again. It stays in the context until
    the next request there, and with it a reference to that request's header mapping (compared by
    identity, never read)."""

    carrier: object  # the header mapping the hook saw (the one injected into next, except for httpx)
    span_id: int
    bound: bool  # the request is for a Portkey gateway (by its URL or an ``x-portkey-*`` header)
    baggage: bool  # the request already has a ``baggage`` header (an SDK that injects itself)


request_decision: ContextVar[Decision | None] = ContextVar("otel_portkey_request", default=None)


def span_url(span: Any) -> str:
    """The URL an HTTP client span records (``url.full``, or the older ``http.url``); "" when it has
    none (an unsampled span has no attributes)."""
    attributes = getattr(span, "attributes", None)
    if not attributes:
        return ""
    url = attributes.get("url.full") or attributes.get("http.url")
    return url if isinstance(url, str) else ""


def tell(note: Note) -> None:
    (warn_once if note.warning else debug_once)(note.key, note.message)


class Bridge:
    """Puts the trace's ids and metadata on Portkey-bound requests and the gateway's answer on
    their spans, as ``settings`` say."""

    def __init__(
        self,
        settings: PortkeySettings,
        resource: object | None = None,
        gateway_metrics: GatewayMetrics | None = None,
    ) -> None:
        self._metrics = gateway_metrics  # None: metrics off
        self._gateways = settings.gateway_prefixes
        self._trust = settings.baggage_trust
        self._policy = CallPolicy(
            settings.trace_id_policy,
            settings.static_metadata,
            settings.jaeger_ui_url,
            settings.trace_url_template,
        )
        self._resource = resource  # the provider's, for spans that carry none (unsampled ones)
        # Per resource (held, so its id stays unique): the metadata derived from it.
        self._resources: dict[int, tuple[object, MetadataItems]] = {}

    def url_is_gateway(self, url: str) -> bool:
        return url_matches_gateway(url, self._gateways)

    # ---- the request ----------------------------------------------------------------------------

    def on_request(self, span: Span, headers: Any, url: str, method: str) -> bool:
        """From any client's request hook: ``headers`` is the live mapping its instrumentation
        injects into next (for httpx, a copy of it). Returns whether the request is Portkey-bound;
        never raises."""
        try:
            names = header_names(headers)
            context = span.get_span_context()
            has_portkey = PORTKEY_NAME in names
            bound = has_portkey or url_matches_gateway(url, self._gateways)
            request_decision.set(Decision(headers, context.span_id, bound, BAGGAGE_NAME in names))
            if bound and context.is_valid:
                self._carry_out(span, headers, default_setter, url, method, has_portkey, hooked=True)
            return bound
        except Exception as error:
            report_once("adding Portkey headers", error)
            return False

    def on_inject(self, span: Span, carrier: Any, setter: Setter[Any]) -> None:
        """From the propagator, for a Portkey-bound request that no bridge hook saw; never raises."""
        try:
            if not span.get_span_context().is_valid:
                return
            attributes = getattr(span, "attributes", None) or {}
            method = attributes.get("http.request.method") or attributes.get("http.method") or "POST"
            # no response hook of the bridge's will see the answer
            self._carry_out(span, carrier, setter, span_url(span), str(method), True, hooked=False)
        except Exception as error:
            report_once("adding Portkey headers", error)

    def _carry_out(
        self,
        span: Span,
        headers: Any,
        setter: Setter[Any],
        url: str,
        method: str,
        has_portkey: bool,
        hooked: bool,
    ) -> None:
        """Plans the request, carries the plan out, and starts the call's metrics point (``hooked``:
        the bridge's response hook will hand it the answer)."""
        caller = caller_of(span)
        present, spelled = portkey_entries(headers) if has_portkey else ({}, {})
        context = span.get_span_context()
        facts = RequestFacts(
            context.trace_id,
            context.span_id,
            new_span_id(),
            present,
            header_bytes(headers),
            method,
            url,
            caller.name if caller is not None else None,
            context_metadata(trust=self._trust),
            self._resource_metadata(span),
        )
        plan = plan_request(facts, self._policy)
        for note in plan.notes:
            tell(note)
        for name, value in plan.replace.items():  # in the caller's own spelling (a dict is case-sensitive)
            setter.set(headers, spelled.get(name, name), value)
        if setter is default_setter:  # ``headers[name] = value``, or a faster equivalent
            add_absent(headers, plan.add)
        else:
            for name, value in plan.add.items():
                setter.set(headers, name, value)
        if plan.portkey_trace_id != plan.trace_id:
            portkey_trace_ids.remember(plan.trace_id, plan.portkey_trace_id)
        if span.is_recording():
            span.set_attributes(plan.attributes)
        if self._metrics is not None:
            self._metrics.start(span, url, caller, present.get(CONFIG), hooked)

    def _resource_metadata(self, span: Span) -> MetadataItems:
        resource = getattr(span, "resource", None) or self._resource
        known = self._resources.get(id(resource))
        if known is None or known[0] is not resource:
            if len(self._resources) >= _MAX_RESOURCES:
                self._resources.clear()
            attributes = getattr(resource, "attributes", None) or {}
            known = self._resources[id(resource)] = (resource, tuple(from_resource(attributes).items()))
        return known[1]

    # ---- the answer -----------------------------------------------------------------------------

    def on_response(
        self,
        span: Span,
        response: Any,
        answer_of: Callable[[Any], tuple[Any, Any]],
        sync_closers: tuple[str, ...] = ("close",),
        async_closers: tuple[str, ...] = (),
    ) -> None:
        """From any client's response hook: the gateway's answer on the span of a call this bridge
        sent to a gateway, and on its metrics point. ``answer_of(response)`` gives the response's
        headers and its stream (None when the body is already read); it is called for such calls
        only, so no other response is read at all. A streamed answer (``text/event-stream``) keeps
        the span open (and the call's point waiting) until one of the stream's closers runs. Never
        raises."""
        try:
            call = call_of(span)  # the metrics' stand-in for its end: the bridge's call for sure
            if call is None and not _bridged_call(span):
                return
            recording = span.is_recording()
            if not recording and call is None:
                return
            headers, stream = answer_of(response)
            header = header_getter(headers)
            attributes = answer_attributes(header)
            if recording:
                if attributes:
                    span.set_attributes(attributes)
                if attributes.get(ATTR_GATEWAY_EXCEPTION):
                    span.set_status(Status(StatusCode.ERROR, "Portkey gateway exception"))
            if call is not None:
                call.answered_with(attributes, _status_of(response))
            if stream is not None and is_event_stream(header(CONTENT_TYPE)):
                end_span_when_stream_closes(span, stream, sync_closers, async_closers)
        except Exception as error:
            report_once("recording the Portkey response", error)


def _status_of(response: Any) -> object:
    """The status code of any client's response (httpx, requests: ``status_code``; urllib, urllib3,
    aiohttp: ``status``)."""
    status = getattr(response, "status_code", None)
    return status if status is not None else getattr(response, "status", None)


def _bridged_call(span: Span) -> bool:
    """Whether ``span`` is the CLIENT span of a call the bridge sent to a gateway: its request
    hook's decision, still there when the response comes back in the same context, says so; else
    (some other request came in between) the ids it recorded on the span do."""
    decided = request_decision.get()
    if decided is not None and decided.span_id == span.get_span_context().span_id:
        return decided.bound
    return ATTR_SPAN_ID in (getattr(span, "attributes", None) or {})
