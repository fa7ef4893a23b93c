"""``PortkeySpanProcessor``: Portkey metadata on every span, and the caller of each HTTP call."""

from __future__ import annotations

import threading
import weakref
from typing import NamedTuple

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span, SpanProcessor
from opentelemetry.trace import SpanKind

from .._contract.baggage_trust import BaggageTrust
from .._contract.call import ATTR_METADATA_PREFIX, MetadataItems
from .diagnostics import report_once
from .metadata_context import NO_TRUST, context_metadata

# Every processor made, weakly (there is one in almost every process): ``caller_of`` asks each.
# A tuple of references, replaced whole when one is added or collected: read on every call.
_processors: tuple[weakref.ref[PortkeySpanProcessor], ...] = ()
_registering = threading.Lock()  # writers only (a new processor, a collected one); readers take the tuple


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
