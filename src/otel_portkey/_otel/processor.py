"""What the OTel context holds for the bridge: ``portkey_metadata(...)`` blocks (and, when the
operator trusts them, baggage entries) and the operation that made each HTTP call, which
``PortkeySpanProcessor`` records as spans start.

``portkey_metadata`` keeps its entries under a context key of the bridge's own, so they follow the
trace across threads and tasks that copy the context, and nothing from outside the process can set
them: a ``baggage`` header from an upstream caller is untrusted input and becomes no Portkey
metadata unless the operator trusts its keys (``_contract.baggage_trust``). The same entries are
also put into OTel baggage (``portkey.metadata.<key>``), so they travel on to downstream services
that are not Portkey in the ``baggage`` header: do not put anything there that those services must
not see. Requests to a Portkey gateway carry them once, in ``x-portkey-metadata`` (the propagator
keeps baggage off those requests).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final, NamedTuple

from opentelemetry import baggage, context, trace
from opentelemetry.context import Context, get_value
from opentelemetry.sdk.trace import Span, SpanProcessor, TracerProvider
from opentelemetry.trace import SpanKind

from .._contract.baggage_trust import BAGGAGE_PREFIX, BaggageTrust
from .._contract.call import ATTR_METADATA_PREFIX, MetadataItems
from .._contract.metadata import MAX_ENTRIES, clean_key, clean_value
from .diagnostics import report_once, warn_once
from .sdk_internals import span_processors

_LOCAL_METADATA: Final = context.create_key("otel-portkey.metadata")
# The caller's span context of an inbound request whose trace the bridge did not continue
# (OTEL_PORTKEY_INBOUND_TRACE_CONTEXT=link): set by the propagator's ``extract``, read by
# ``PortkeySpanProcessor.on_start``, which links the new trace's root span to it.
INBOUND_CALLER: Final = context.create_key("otel-portkey.inbound-caller")
NO_TRUST: Final = BaggageTrust()


class portkey_metadata:  # lower case: it reads as a function, ``with portkey_metadata(...):``
    """Add Portkey metadata for everything inside the block (``with`` or ``async with``).

    ``with portkey_metadata(_user="u1", session="s1"): ...``. Nested blocks merge, the inner
    value winning. Values are made safe as Portkey requires (strings, at most 128 characters).
    """

    def __init__(self, entries: Mapping[str, object] | None = None, /, **kwargs: object) -> None:
        self._entries = {**(entries or {}), **kwargs}
        self._token: object | None = None

    def __enter__(self) -> portkey_metadata:
        ctx: Context = context.get_current()
        added: dict[str, str] = {}
        for key, value in self._entries.items():
            safe_key = clean_key(key)
            if safe_key is not None:
                added[safe_key] = clean_value(value)
                ctx = baggage.set_baggage(BAGGAGE_PREFIX + safe_key, added[safe_key], ctx)
        # Most specific first: this block's entries, then the enclosing blocks' (which they override).
        outer = get_value(_LOCAL_METADATA, ctx) or ()
        items = (*added.items(), *((k, v) for k, v in outer if k not in added))  # type: ignore[attr-defined]
        ctx = context.set_value(_LOCAL_METADATA, items[:MAX_ENTRIES], ctx)
        self._token = context.attach(ctx)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is not None:
            context.detach(self._token)  # type: ignore[arg-type]
            self._token = None

    async def __aenter__(self) -> portkey_metadata:
        return self.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(kind, error, tb)


_EMPTY: MetadataItems = ()
# The last baggage seen and the trusted metadata derived from it: spans and calls inside one request
# share their baggage, so this one-entry cache answers almost every lookup (checked by content).
_last: tuple[BaggageTrust, dict[str, object], MetadataItems] = (NO_TRUST, {}, _EMPTY)


def context_metadata(ctx: Context | None = None, trust: BaggageTrust = NO_TRUST) -> MetadataItems:
    """The Portkey metadata in ``ctx`` (default: the current context) as ``(key, value)`` pairs.

    ``portkey_metadata(...)`` entries first (most specific first), then, only when ``trust`` names
    them, baggage entries (``portkey.metadata.<key>``, ``enduser.id`` as ``_user``, ...), at most
    64 in all. The result is hashable, so callers can cache what they derive from it.
    """
    local: MetadataItems = get_value(_LOCAL_METADATA, ctx) or _EMPTY  # type: ignore[assignment]
    if not (trust.keys or trust.prefixes):  # (not ``bool(trust)``: no call on every span's start)
        return local
    trusted = _trusted_baggage(ctx, trust)
    if not trusted:
        return local
    if not local:
        return trusted
    keys = {key for key, _ in local}
    return (*local, *((k, v) for k, v in trusted if k not in keys))[:MAX_ENTRIES]


def _trusted_baggage(ctx: Context | None, trust: BaggageTrust) -> MetadataItems:
    global _last
    entries = baggage.get_all(ctx)
    if not entries:
        return _EMPTY
    last_trust, source, items = _last
    if last_trust == trust and entries == source:
        return items
    items = tuple(trust.metadata(entries).items())
    _last = (trust, dict(entries), items)
    return items


# Every processor made, weakly (there is one in almost every process): ``caller_of`` asks each.
# A tuple of references, replaced whole when one is added or collected: read on every call.
_processors: tuple[weakref.ref[PortkeySpanProcessor], ...] = ()
_registering = threading.Lock()  # writers only (a new processor, a collected one); readers take the tuple


def after_fork_in_child() -> None:
    """A forked child starts with the lock free (a fork taken while a thread held it would hang),
    and with no baggage remembered."""
    global _registering, _attaching, _last
    _registering = threading.Lock()
    _attaching = threading.Lock()
    _last = (NO_TRUST, {}, _EMPTY)


def _remember(processor: PortkeySpanProcessor) -> None:
    global _processors
    with _registering:
        _processors = (*_processors, weakref.ref(processor, _forget))


def _forget(reference: weakref.ref[PortkeySpanProcessor]) -> None:
    global _processors
    with _registering:
        _processors = tuple(r for r in _processors if r is not reference)


class Caller(NamedTuple):
    """The span that made an HTTP call, as it was when the call started: its name (which names the
    gateway's node) and, when it is a GenAI span, its operation and requested model (the call's
    metrics carry them)."""

    name: str
    operation: object = None  # ``gen_ai.operation.name``
    model: object = None  # ``gen_ai.request.model``


_OPERATION = "gen_ai.operation.name"
_MODEL = "gen_ai.request.model"


def caller_of(span: object) -> Caller | None:
    """The span that made the CLIENT span ``span``, if a processor saw it start."""
    for reference in _processors:
        processor = reference()
        if processor is not None:
            caller = processor.caller(span)
            if caller is not None:
                return caller
    return None


class PortkeySpanProcessor(SpanProcessor):
    """Copies the context's Portkey metadata onto every span, and remembers who made each HTTP call.

    Consequences: every span started inside ``portkey_metadata(...)`` gets ``portkey.metadata.<key>``
    attributes, so Jaeger can find a trace by user or session; spans without such context get
    nothing. Baggage, which any caller of a service can send, tags spans only for the keys named in
    ``baggage_trust`` (none by default). For each CLIENT span it keeps, weakly, the name its parent
    had at the start (the operation that made the call, e.g. ``chat gpt-4o``), which names the
    gateway's node, and the parent's GenAI operation and model, which the call's metrics carry;
    nothing else is kept, and an entry goes with its span. The processor exports
    nothing. Switched off (``enabled = False``, as ``PortkeyInstrumentor().uninstrument()`` leaves
    the one it added: the SDK cannot remove a processor), it does nothing at all.

    A span that starts a trace in the context of an inbound request whose trace the bridge did not
    continue (``OTEL_PORTKEY_INBOUND_TRACE_CONTEXT=link``) gets a link to the caller's span context.
    """

    def __init__(self, baggage_trust: BaggageTrust = NO_TRUST) -> None:
        self.baggage_trust = baggage_trust
        self.enabled = True
        self._attributes: dict[MetadataItems, dict[str, str]] = {}  # per metadata, built once
        # CLIENT span -> the name its parent had when it started (the operation that made the call,
        # e.g. ``chat gpt-4o``), which names the gateway's node. Weak: an entry goes with its span.
        self._callers: weakref.WeakKeyDictionary[Span, Caller] = weakref.WeakKeyDictionary()
        _remember(self)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if not self.enabled:
            return
        try:
            items = context_metadata(parent_context, self.baggage_trust)
            if items:
                attributes = self._attributes.get(items)
                if attributes is None:
                    if len(self._attributes) >= 256:
                        self._attributes.clear()
                    attributes = self._attributes[items] = {ATTR_METADATA_PREFIX + k: v for k, v in items}
                span.set_attributes(attributes)
            if span.kind is SpanKind.CLIENT:
                parent = trace.get_current_span(parent_context)
                name = getattr(parent, "name", None)
                if name and type(span).__weakrefoffset__:
                    attributes = getattr(parent, "attributes", None) or {}
                    self._callers[span] = Caller(name, attributes.get(_OPERATION), attributes.get(_MODEL))
            if span.parent is None:  # a root: in a trace started at an inbound request?
                caller = get_value(INBOUND_CALLER, parent_context)  # None: the current context
                if caller is not None:
                    _link_to_caller(span, caller)
        except Exception as error:  # the SDK does not guard processors: never raise into the app
            report_once("tagging a span with Portkey metadata", error)

    def caller(self, span: object) -> Caller | None:
        """The span that made the CLIENT span ``span``, if this processor saw it start."""
        try:
            return self._callers.get(span)  # type: ignore[call-overload,no-any-return]
        except TypeError:  # not weakly referenceable: never registered
            return None

    def caller_name(self, span: object) -> str | None:
        """The name of the span that made the CLIENT span ``span``, if this processor saw it start."""
        caller = self.caller(span)
        return caller.name if caller is not None else None

    @property
    def tracked_calls(self) -> int:
        """How many CLIENT spans' callers are still remembered (their spans are still alive)."""
        return len(self._callers)

    def shutdown(self) -> None:
        self.enabled = False
        self._callers.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _link_to_caller(span: Span, caller: object) -> None:
    """Link the root span of a trace started at an inbound request to the caller's span context
    (``Span.add_link``: every SDK version the package allows has it; one without it is said once)."""
    add_link = getattr(span, "add_link", None)
    if add_link is None:
        warn_once(
            "no Span.add_link",
            "otel-portkey: this OpenTelemetry SDK's spans have no add_link, so a trace started at an "
            "inbound request (OTEL_PORTKEY_INBOUND_TRACE_CONTEXT=link) carries no link to the caller's",
        )
        return
    add_link(caller)


# Per provider, the processor the bridge added to it (kept, switched off, while uninstrumented).
_added: weakref.WeakKeyDictionary[Any, PortkeySpanProcessor] = weakref.WeakKeyDictionary()
_attaching = threading.Lock()  # one look at a provider's processors, and one add, at a time


class ProcessorAttachment:
    """The bridge's ``PortkeySpanProcessor`` on the SDK tracer provider: given to it when the bridge
    is installed, or, when the provider is set later (gunicorn's ``post_fork``, the OTel docs'
    fork-process-model pattern), on the first gateway call after that (the bridge asks
    :meth:`attach` on each gateway call until it answers True). A provider that is not the SDK's is
    said once, at warning, with the fix; it takes no processor, so gateway nodes are then named
    ``METHOD /path`` and spans get no metadata."""

    def __init__(self, baggage_trust: BaggageTrust, provider: Any = None) -> None:
        self.baggage_trust = baggage_trust
        self.provider = provider  # the one given to instrument(), else the global one is asked
        self.switched_on: PortkeySpanProcessor | None = None  # the one the bridge enabled or added
        self.attached_to: TracerProvider | None = None  # the SDK provider found, once found
        self._said = False

    def attach(self) -> bool:
        """Give the provider the bridge's processor, unless it has one; whether it has one now."""
        provider = self.provider or trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            return False
        with _attaching:  # two first calls at once must not add two processors
            return self._attach(provider)

    def _attach(self, provider: TracerProvider) -> bool:
        self.attached_to = provider
        mine = _added.get(provider)
        if mine is not None:
            mine.baggage_trust, mine.enabled = self.baggage_trust, True
            self.switched_on = mine
            return True
        if any(isinstance(p, PortkeySpanProcessor) and p.enabled for p in span_processors(provider)):
            return True  # the user's, left as it is
        processor = PortkeySpanProcessor(baggage_trust=self.baggage_trust)
        provider.add_span_processor(processor)
        _added[provider] = processor
        self.switched_on = processor
        return True

    def attach_on_call(self) -> bool:
        """:meth:`attach`, from a gateway call; a provider that is not the SDK's is said once."""
        if self.attach():
            return True
        if self._said:
            return False
        self._said = True
        provider = self.provider or trace.get_tracer_provider()
        warn_once(
            "no SDK tracer provider",
            f"otel-portkey: the tracer provider is a {type(provider).__name__}, not the OpenTelemetry "
            "SDK's, so gateway nodes are named METHOD /path and spans get no Portkey metadata; set an "
            "opentelemetry.sdk.trace.TracerProvider (opentelemetry-instrument does), before or after "
            "instrument()",
        )
        return False

    def detach(self) -> None:
        """Switch off the processor the bridge switched on (the SDK cannot remove one)."""
        if self.switched_on is not None:
            self.switched_on.enabled = False
            self.switched_on = None
