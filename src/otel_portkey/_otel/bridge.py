"""One call to a Portkey gateway, one object: :class:`GatewayCall`, from the request hook to its
span's end, made and answered by :class:`Bridge`, one implementation for every HTTP client.

The call's life (each client's adapters in ``client_hooks`` hand what they see to the bridge):

1. :meth:`Bridge.on_request`, from the client's request hook, in the call's CLIENT span: is the
   request Portkey-bound (one search over its header names, one prefix check of its URL)? It
   leaves that answer in :data:`request_decision` for the propagator, which injects next. For a
   bound request it gathers the facts (the request's ``x-portkey-*`` entries and header bytes, the
   calling operation, the metadata in force), asks the contract for the plan
   (:func:`~otel_portkey._contract.call.plan_request`), writes the plan's headers, sets its
   attributes, and makes the :class:`GatewayCall`. The call keeps nothing of the request: not its
   header mapping, not its ``Authorization``, not its ``x-portkey-config`` (only the routing
   strategies that config names, for the fallback flag).
   :meth:`Bridge.on_inject` does the same for a request no bridge hook saw, from the propagator.
2. :meth:`Bridge.on_response`: the gateway's answer, read once, goes on the span and into the
   call; a streamed answer (``text/event-stream``) defers the call's end until the stream closes.
3. The call stands in for its span's ``end`` (the one interposition on the span): when the span
   ends (the instrumentation's end, a stream's last chunk or close, an exception before any
   answer) the call records its metrics point, sampled or not, and ends the span, once.

Nothing here raises into the application: every failure is reported once and the request goes on.
This is the hot path of every instrumented request, so a request that is not Portkey-bound costs
one join and two substring searches, and a bound one reads only the ``x-portkey-*`` headers.
"""

from __future__ import annotations

import random
import sys
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any, Final, NamedTuple
from urllib.parse import urlsplit

from opentelemetry import metrics, trace
from opentelemetry.propagators.textmap import Setter, default_setter
from opentelemetry.trace import Span, Status, StatusCode

from .._contract.call import (
    ATTR_ERROR_TYPE,
    ATTR_GATEWAY_EXCEPTION,
    CONFIG,
    CONTENT_TYPE,
    DURATION_BUCKETS,
    METRIC_REQUEST_DURATION,
    METRIC_RETRIES,
    OTHER,
    AttributeBound,
    CallPolicy,
    MetadataItems,
    Note,
    RequestFacts,
    RoutingConfig,
    answer_attributes,
    call_attributes,
    is_event_stream,
    plan_request,
    retry_count,
    routing_config,
    url_matches_gateway,
)
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
from .processor import Caller, ProcessorAttachment, caller_of, context_metadata
from .sdk_internals import waiting_for_provider

_MAX_RESOURCES: Final = 16
_NO_ANSWER: Final[Mapping[str, object]] = MappingProxyType({})
_MAX_ROUTINGS: Final = 64
_STATUS_ATTRIBUTES: Final = ("http.response.status_code", "http.status_code")


class Decision(NamedTuple):
    """What the bridge's request hook found, in the CLIENT span, just before the client's
    instrumentation injects: the propagator then need not look again. It holds the id of the header
    mapping the hook saw (compared with the carrier's, never a reference to it: nothing of the
    request outlives the request), and the propagator takes it out when it uses it."""

    carrier_id: int  # ``id()`` of the header mapping the hook saw (the one injected into, but httpx's)
    span_id: int
    bound: bool  # the request is for a Portkey gateway (by its URL or an ``x-portkey-*`` header)
    baggage: bool  # the request already has a ``baggage`` header (an SDK that injects itself)
    call: GatewayCall | None = None  # the call, for a span that takes no stand-in for its end


request_decision: ContextVar[Decision | None] = ContextVar("otel_portkey_request", default=None)


def span_url(span: Any) -> str:
    """The URL an HTTP client span records (``url.full``, or the older ``http.url``); "" when it has
    none (an unsampled span has no attributes)."""
    attributes = getattr(span, "attributes", None)
    if not attributes:
        return ""
    url = attributes.get("url.full") or attributes.get("http.url")
    return url if isinstance(url, str) else ""


def new_span_id(rng: random.Random | None = None) -> str:
    """A fresh random, non-zero span id for the gateway's node, as 16 lowercase hex characters (the
    one impure input of the plan, drawn here so that the contract stays pure)."""
    draw = (rng or random).getrandbits
    span_id = 0
    while span_id == 0:
        span_id = draw(64)
    return f"{span_id:016x}"


def tell(note: Note) -> None:
    (warn_once if note.warning else debug_once)(note.key, note.message)


class GatewayMetrics:
    """``portkey.gateway.request.duration`` (histogram, s) and ``portkey.gateway.retries``
    (counter, {retry}), with one :class:`AttributeBound` for both. Instruments come from
    ``meter_provider`` or the global one (what ``opentelemetry-instrument`` sets up from
    ``OTEL_METRICS_EXPORTER``); while no provider is set, no point is made at all. Exemplars carry
    the call's trace and span id, so a slow bucket leads to the trace in Jaeger."""

    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        from .. import __version__

        meter = metrics.get_meter("otel_portkey", __version__, meter_provider)
        self._duration = meter.create_histogram(
            METRIC_REQUEST_DURATION,
            unit="s",
            description="Duration of calls to a Portkey gateway, from the request to the end of the "
            "call's HTTP client span (a streamed answer: its end)",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._retries = meter.create_counter(
            METRIC_RETRIES,
            unit="{retry}",
            description="Retries a Portkey gateway made for the calls it answered "
            "(its x-portkey-retry-attempt-count)",
        )
        self.bound = AttributeBound()
        # No MeterProvider behind the instruments yet: asked on each call until one is there.
        self._waiting = waiting_for_provider(self._duration)

    def ready(self) -> bool:
        """Whether a point would reach a provider (the API's proxy drops it while none is set)."""
        if self._waiting:
            if waiting_for_provider(self._duration):
                return False
            self._waiting = False
        return True

    def record(self, call: GatewayCall, span: Span, seconds: float) -> None:
        recording = span.is_recording()
        span_attributes: Mapping[str, Any] = (getattr(span, "attributes", None) or {}) if recording else {}
        # The answer as read (span limits may have cut what the span kept); a span's attributes
        # only for a call whose answer the bridge never saw.
        answer = call.answer if call.answered or not recording else span_attributes
        status = call.status
        if status is None:
            for key in _STATUS_ATTRIBUTES:
                value = span_attributes.get(key)
                if isinstance(value, int):
                    status = value
                    break
        exception = None
        if not call.answered:  # no answer: the call raised, and its exception is being raised now
            recorded = span_attributes.get(ATTR_ERROR_TYPE)
            raised = sys.exc_info()[1]
            if raised is not None and id(raised) == call.handling:  # the app was already handling it
                raised = None  # when the call began
            if isinstance(recorded, str):
                exception = recorded
            elif raised is not None:
                exception = type(raised).__qualname__
            elif status is None and call.hooked:  # (no hook: no answer was ever to be seen)
                exception = OTHER
        attributes, new_series = self.bound.bound_series(
            call_attributes(answer, status, exception, call.server, call.operation, call.model, call.routing)
        )
        context = trace.set_span_in_context(span)
        self._duration.record(seconds, attributes, context=context)
        retries = retry_count(answer)
        if retries or new_series:  # a series starts at 0 (so the first retries count in rate()); no
            self._retries.add(retries, attributes, context=context)  # other 0 is worth its 10 µs


class GatewayCall:
    """One Portkey-bound call in flight, from its request to its span's end.

    It stands in for its span's ``end`` (the one place the bridge interposes on a span). The
    instrumentation's end, or a stream's close once the answer streams, ends the call: its metrics
    point is recorded (when metrics are on and a provider is set) and the span ends, once, whichever
    thread gets there first (``list.pop`` is atomic). After that the span is as it was, and nothing
    refers from one to the other.
    """

    __slots__ = (
        "_ending",
        "_streaming",
        "answer",
        "answered",
        "handling",
        "hooked",
        "model",
        "operation",
        "routing",
        "server",
        "started",
        "status",
    )

    def __init__(
        self, ending: list[tuple[Callable[..., None], Span, GatewayMetrics | None]], hooked: bool = True
    ) -> None:
        # What ending takes (the span's own ``end``, the span, the metrics), popped once; empty
        # when the call could not stand in for its span's end.
        self._ending = ending
        self._streaming = False  # the answer streams: only the stream's close ends the call
        self.hooked = hooked  # the client's response hook will hand over the answer
        self.answer: Mapping[str, object] = _NO_ANSWER
        self.answered = False
        self.status: int | None = None

    @classmethod
    def begin(
        cls,
        span: Span,
        gateway_metrics: GatewayMetrics | None,
        hooked: bool,
        counted: tuple[str | None, Caller | None, RoutingConfig] | None = None,
    ) -> GatewayCall:
        """Make the call and put it in for ``span.end``, whole before it stands in (``counted``:
        what the metrics point needs from the request, ``(server, caller, routing)``). A span that
        already has a call (the same span bridged twice) keeps the first, which is returned; a span
        that takes no stand-in for its end gets the answer on its attributes all the same, but no
        metrics point and no stream's end (said once)."""
        try:
            end = span.end
            if isinstance(end, GatewayCall):
                return end
            call = cls([(end, span, gateway_metrics)], hooked)
            if counted is not None:
                call.count(*counted)
            span.end = call  # type: ignore[method-assign]
            return call
        except (AttributeError, TypeError) as error:
            warn_once(
                "span end",
                f"otel-portkey: a {type(span).__name__} takes no stand-in for its end "
                f"({type(error).__name__}), so its calls' streams and metrics are not followed",
            )
            return cls([], hooked)

    def count(self, server: str | None, caller: Caller | None, routing: RoutingConfig) -> None:
        """What the call's metrics point needs from its request (metrics on only)."""
        self.started = time.perf_counter()
        # An exception the app handles around the call is not its error: its id only (the exception
        # would keep its traceback's frames, a request's locals among them, as long as the call).
        self.handling = id(sys.exc_info()[1])
        self.server = server
        self.operation, self.model = (caller.operation, caller.model) if caller else (None, None)
        self.routing = routing

    def answered_with(self, answer: Mapping[str, object], status: object) -> None:
        self.answered = True
        self.answer = answer
        if isinstance(status, int) and not isinstance(status, bool):
            self.status = status

    def __call__(self, end_time: int | None = None) -> None:
        """The span's ``end``, as the instrumentation calls it: ends the call, unless its answer
        streams (then the stream's close does)."""
        if not self._streaming:
            self.finish(end_time)

    def finish(self, end_time: int | None = None) -> None:
        try:
            end, span, gateway_metrics = self._ending.pop()
        except IndexError:  # ended already
            return
        try:
            if span.__dict__.get("end") is self:
                del span.end
            if gateway_metrics is not None:
                gateway_metrics.record(self, span, time.perf_counter() - self.started)
        except Exception as error:
            report_once("recording Portkey gateway metrics", error)
        end(end_time)

    def stream(self, stream: Any, sync_closers: tuple[str, ...], async_closers: tuple[str, ...]) -> bool:
        """Let ``stream`` end the call: the first call of any of its closers (httpx:
        ``close``/``aclose``; an aiohttp response: ``close``/``release``), or its garbage collection
        as the last resort. False when it cannot be patched: the call then ends as usual."""
        if not self._ending:  # not in for its span's end, or ended already
            return False
        closers = {name: getattr(stream, name, None) for name in (*sync_closers, *async_closers)}
        if not any(callable(method) for method in closers.values()):
            return False
        finish = self.finish
        try:
            for name in sync_closers:
                method = closers[name]
                if callable(method):
                    setattr(stream, name, _then(method, finish))
            for name in async_closers:
                method = closers[name]
                if callable(method):
                    setattr(stream, name, _then_async(method, finish))
            weakref.finalize(stream, finish)
        except (AttributeError, TypeError):  # slots, no weak references: what was patched ends a call
            return False  # that the instrumentation's own end has ended already
        self._streaming = True
        return True


def _then(close: Callable[..., Any], finish: Callable[[], None]) -> Callable[..., Any]:
    def closing(*args: Any, **kwargs: Any) -> Any:
        try:
            return close(*args, **kwargs)
        finally:
            finish()

    return closing


def _then_async(aclose: Callable[..., Awaitable[Any]], finish: Callable[[], None]) -> Callable[..., Any]:
    async def closing(*args: Any, **kwargs: Any) -> Any:
        try:
            return await aclose(*args, **kwargs)
        finally:
            finish()

    return closing


def call_of(span: object) -> GatewayCall | None:
    """The call standing in for ``span``'s end, if ``span`` is a Portkey-bound call's."""
    end = getattr(span, "__dict__", {}).get("end")
    return end if isinstance(end, GatewayCall) else None


class Bridge:
    """Puts the trace's ids and metadata on Portkey-bound requests and the gateway's answer on
    their spans, as ``settings`` say; one per installation."""

    def __init__(
        self,
        settings: PortkeySettings,
        resource: object | None = None,
        gateway_metrics: GatewayMetrics | None = None,
        processor_pending: ProcessorAttachment | None = None,
    ) -> None:
        self._metrics = gateway_metrics  # None: metrics off
        # OTEL_PORTKEY_INBOUND_TRACE_CONTEXT=link: the propagator starts a new trace per inbound request
        self.link_inbound = settings.inbound_trace_context == "link"
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
        # Per inline x-portkey-config, by its hash (the text is never kept: it may hold keys): its
        # routing strategies. An app sends the same few configs again and again.
        self._routings: dict[int, RoutingConfig] = {}
        # Asked on each gateway call until an SDK tracer provider has the bridge's processor (one
        # set after the bridge was installed); None once it has.
        self.processor_pending = processor_pending

    def look_for_processor(self) -> None:
        """While the bridge's processor waits for an SDK tracer provider (one set after
        ``instrument()``): give it one if there is one now. Asked on each inbound request the
        propagator extracts (before its server span starts, so that request's spans are all seen)
        and on each gateway call (a worker with no inbound request): until then, spans are not seen
        starting, so a call's gateway node is named ``METHOD /path``."""
        pending = self.processor_pending
        if pending is not None and pending.attach_on_call():
            self.processor_pending = None
            if self._resource is None:  # for spans that carry none (unsampled ones), as if set first
                self._resource = getattr(pending.attached_to, "resource", None)

    def url_is_gateway(self, url: str) -> bool:
        return url_matches_gateway(url, self._gateways)

    def forget_caches(self) -> None:
        """In a forked child: start with no per-process cache."""
        self._resources = {}
        self._routings = {}

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
            decision = Decision(id(headers), context.span_id, bound, BAGGAGE_NAME in names)
            request_decision.set(decision)
            if bound and context.is_valid:
                call = self._begin(span, headers, default_setter, url, method, has_portkey, hooked=True)
                if not call._ending:  # not in for its span's end: the response hook finds it here
                    request_decision.set(decision._replace(call=call))
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
            self._begin(span, carrier, setter, span_url(span), str(method), True, hooked=False)
        except Exception as error:
            report_once("adding Portkey headers", error)

    def _begin(
        self,
        span: Span,
        headers: Any,
        setter: Setter[Any],
        url: str,
        method: str,
        has_portkey: bool,
        hooked: bool,
    ) -> GatewayCall:
        """Plans the request, carries the plan out, and makes the call (``hooked``: the bridge's
        response hook will hand it the answer)."""
        if self.processor_pending is not None:
            self.look_for_processor()
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
        metrics = self._metrics
        if metrics is None or not metrics.ready():
            return GatewayCall.begin(span, None, hooked)
        config = present.get(CONFIG)
        routing = self._routing(config) if config is not None else None
        return GatewayCall.begin(span, metrics, hooked, (_host(url), caller, routing))

    def _resource_metadata(self, span: Span) -> MetadataItems:
        resource = getattr(span, "resource", None) or self._resource
        known = self._resources.get(id(resource))
        if known is None or known[0] is not resource:
            if len(self._resources) >= _MAX_RESOURCES:
                self._resources.clear()
            attributes = getattr(resource, "attributes", None) or {}
            known = self._resources[id(resource)] = (resource, tuple(from_resource(attributes).items()))
        return known[1]

    def _routing(self, config: str) -> RoutingConfig:
        key = hash(config)
        if key in self._routings:
            return self._routings[key]
        if len(self._routings) >= _MAX_ROUTINGS:
            self._routings.clear()
        routing = self._routings[key] = routing_config(config)
        return routing

    # ---- the answer -----------------------------------------------------------------------------

    def call_of(self, span: Span) -> GatewayCall | None:
        """The call of ``span`` if it is a Portkey-bound call's (no other response is read at all)."""
        call = call_of(span)
        if call is not None:
            return call
        decided = request_decision.get()  # a span that takes no stand-in for its end
        if decided is None or decided.call is None:
            return None
        return decided.call if decided.span_id == span.get_span_context().span_id else None

    def on_response(
        self,
        span: Span,
        call: GatewayCall,
        headers: Any,
        stream: Any,
        status: object,
        sync_closers: tuple[str, ...] = ("close",),
        async_closers: tuple[str, ...] = (),
    ) -> None:
        """From any client's response hook, for a call :meth:`call_of` found: the gateway's answer
        (its ``headers``, its ``status``) on the span and into the call. A streamed answer
        (``text/event-stream``; ``stream`` is None when the body is already read) keeps the call
        (and its span) open until one of the stream's closers runs. Never raises."""
        try:
            header = header_getter(headers)
            attributes = answer_attributes(header)
            if span.is_recording():
                if attributes:
                    span.set_attributes(attributes)
                if attributes.get(ATTR_GATEWAY_EXCEPTION):
                    span.set_status(Status(StatusCode.ERROR, "Portkey gateway exception"))
            call.answered_with(attributes, status)
            if stream is not None and is_event_stream(header(CONTENT_TYPE)):
                call.stream(stream, sync_closers, async_closers)
        except Exception as error:
            report_once("recording the Portkey response", error)


# Gateway URL (by its hash: a URL may carry a key in its query) -> its host. A process calls a few
# URLs again and again; parsing one costs more than the rest of the call's metrics work.
_hosts: dict[int, str | None] = {}


def _host(url: str) -> str | None:
    key = hash(url)
    if key in _hosts:
        return _hosts[key]
    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    if len(_hosts) >= 256:
        _hosts.clear()
    _hosts[key] = host
    return host
