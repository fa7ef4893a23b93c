"""``PortkeyPropagator``: the global propagator, minus ``baggage`` on requests to a Portkey gateway.

Every OTel HTTP client instrumentation calls ``opentelemetry.propagate.inject(carrier)`` inside the
request's CLIENT span, with the live header mapping as the carrier. Wrapping the global propagator
is the one public seam all of them share: the wrapper sees every instrumented request, whichever
library sent it and in whatever order the instrumentations loaded.

What it does there: a Portkey-bound request gets ``traceparent`` as usual but **no baggage**. The
bridge's request hook, which ran a moment before in the same span, has already set its
``x-portkey-*`` headers and left its decision (``bridge.request_decision``), so the wrapper looks at
nothing itself; a request no bridge hook saw (its instrumentation was made before the bridge) is
bridged here (``Bridge.on_inject``), from the span's attributes. Hosted Portkey merges every
``baggage`` entry into the request's metadata, so baggage sent there would log the bridge's own
``portkey.metadata.*`` entries a second time, carry values past Portkey's rules, and forward
whatever an outside caller put into the app's inbound baggage. The metadata a gateway should see is
already in ``x-portkey-metadata``, sanitised, budgeted and sent once. Requests to any other service
keep their baggage: ``portkey_metadata`` still reaches them.

Consequence: code that calls ``set_global_textmap`` after the bridge is installed replaces the
wrapper; the next gateway call's request hook notices (:func:`keep_installed`) and wraps the new
propagator (a composite that holds the old wrapper works too: a wrapper nested in another one only
passes through).
"""

from __future__ import annotations

import contextlib
import threading
from contextvars import ContextVar
from typing import Any

from opentelemetry import baggage, propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)

from .bridge import Bridge, request_decision, span_url
from .diagnostics import report_once, warn_once
from .headers import has_portkey_header, remove_baggage

INSTRUMENTATION_SCOPES = (
    "opentelemetry.instrumentation.",
)  # requests, urllib, urllib3, aiohttp_client, httpx

_injecting: ContextVar[bool] = ContextVar("otel_portkey_injecting", default=False)


class PortkeyPropagator(TextMapPropagator):
    """Wraps ``inner``; on a Portkey-bound request it injects no baggage and, unless a bridge hook
    already did, lets ``bridge`` add the Portkey headers (see the module docstring)."""

    def __init__(self, inner: TextMapPropagator, bridge: Bridge) -> None:
        self.inner = inner
        self.bridge = bridge
        self.enabled = True  # False once the bridge is uninstrumented: a wrapper left behind passes through

    def extract(
        self, carrier: CarrierT, context: Context | None = None, getter: Getter[CarrierT] = default_getter
    ) -> Context:
        return self.inner.extract(carrier, context, getter)

    def inject(
        self, carrier: CarrierT, context: Context | None = None, setter: Setter[CarrierT] = default_setter
    ) -> None:
        decided = request_decision.get()
        if decided is not None and decided.carrier is carrier and not decided.bound:  # the usual case
            self.inner.inject(carrier, context, setter)
            return
        if not self.enabled or _injecting.get():  # off, or nested in another PortkeyPropagator
            self.inner.inject(carrier, context, setter)
            return
        span = trace.get_current_span(context)
        try:
            span_id = span.get_span_context().span_id
            if decided is not None and decided.span_id == span_id and span_id:  # the request hook's
                bound, hooked, had_baggage = decided.bound, True, decided.baggage
            else:  # no bridge hook saw this request (its instrumentation was made before the bridge)
                bound, hooked, had_baggage = self._bound(span, carrier), False, True
        except Exception:  # never raise into the request: inject as if the bridge were not here
            bound = False
        if not bound:
            self.inner.inject(carrier, context, setter)
            return
        token = _injecting.set(True)
        try:
            self.inner.inject(carrier, baggage.clear(context), setter)
        finally:
            _injecting.reset(token)
        if had_baggage:  # a baggage header already there (an SDK that injects itself) must not
            with contextlib.suppress(Exception):  # reach Portkey either
                remove_baggage(carrier)
        if not hooked:
            self.bridge.on_inject(span, carrier, setter)  # guarded inside
            keep_installed()

    def _bound(self, span: Any, carrier: Any) -> bool:
        """Whether a request no bridge hook saw goes to a gateway (by the URL on its CLIENT span, or
        an ``x-portkey-*`` header it already has).

        Only a span made by an OTel instrumentation counts: an SDK that traces itself (anthropic
        does) and injects inside its own span would otherwise get the ids of that span, and the HTTP
        span inside it would find them already set. (A non-recording span has no scope to check: in
        an unsampled trace such an SDK's own inject can still set the ids first.)
        """
        url = span_url(span)  # the cheap negative checks first: most requests are not for a gateway
        if not (url and self.bridge.url_is_gateway(url)) and not has_portkey_header(carrier):
            return False
        scope = getattr(span, "instrumentation_scope", None)
        return scope is None or str(getattr(scope, "name", "")).startswith(INSTRUMENTATION_SCOPES)

    @property
    def fields(self) -> set[str]:
        return self.inner.fields


# The installed wrapper, and the ones it replaced when the global propagator was set again after it
# (perhaps still inside a composite); all of them are switched off on uninstall.
_installed: list[PortkeyPropagator] = []
_changing = threading.Lock()  # install, rewrap and uninstall one at a time


def install(bridge: Bridge) -> PortkeyPropagator:
    """Wrap the global propagator."""
    with _changing:
        wrapper = PortkeyPropagator(propagate.get_global_textmap(), bridge)
        propagate.set_global_textmap(wrapper)
        _installed[:] = [wrapper]
        return wrapper


def keep_installed() -> None:
    """Wrap the global propagator again if something replaced the bridge's after it was installed;
    never raises."""
    try:
        ours = _installed[-1]
        current = propagate.get_global_textmap()
    except Exception:  # not installed, or uninstalled meanwhile by another thread
        return
    if current is ours:
        return
    with _changing:
        if not _installed or _installed[-1] is not ours or propagate.get_global_textmap() is not current:
            return  # uninstalled, or rewrapped by another thread, meanwhile
        try:
            _rewrap(ours, current)
        except Exception as error:  # never raise into the request
            report_once("rewrapping the global propagator", error)


def _rewrap(ours: PortkeyPropagator, current: TextMapPropagator) -> None:
    warn_once(
        "propagator replaced",
        "otel-portkey: the global propagator was replaced after the bridge was installed; "
        "wrapping the new one so that gateway requests still carry no baggage",
    )
    # A new wrapper around whatever is there now (a composite holding the old wrapper too: a
    # wrapper nested in another one only passes through), never a mutation of the old one.
    wrapper = PortkeyPropagator(current, ours.bridge)
    _installed.append(wrapper)
    propagate.set_global_textmap(wrapper)


def uninstall() -> None:
    """Switch every wrapper off and give the global propagator back, unless someone replaced it."""
    with _changing:
        for wrapper in _installed:
            wrapper.enabled = False
        if _installed and propagate.get_global_textmap() is _installed[-1]:
            propagate.set_global_textmap(_installed[-1].inner)
        _installed.clear()
