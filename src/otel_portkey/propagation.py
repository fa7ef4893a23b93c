"""``PortkeyPropagator``: the global propagator, minus ``baggage`` on requests to a Portkey gateway.

Every OTel HTTP client instrumentation calls ``opentelemetry.propagate.inject(carrier)`` inside the
request's CLIENT span, with the live header mapping as the carrier. Wrapping the global propagator
is the one public seam all of them share: the wrapper sees every instrumented request, whichever
library sent it and in whatever order the instrumentations loaded.

What it does there: a Portkey-bound request (one that carries an ``x-portkey-*`` header, or whose
URL is a configured gateway) gets ``traceparent`` as usual but **no baggage**. The bridge's request
hook, which ran a moment before in the same span, has already set its ``x-portkey-*`` headers and
left its decision (``request_decision``), so the wrapper looks at nothing itself; a request no
bridge hook saw (its instrumentation was made before the bridge) gets its headers here, from the
span's attributes. Hosted
Portkey merges every ``baggage`` entry into the request's metadata, so baggage sent there would
log the bridge's own ``portkey.metadata.*`` entries a second time, carry values past Portkey's
rules, and forward whatever an outside caller put into the app's inbound baggage. The metadata a
gateway should see is already in ``x-portkey-metadata``, sanitised, budgeted and sent once.
Requests to any other service keep their baggage: ``portkey_metadata`` still reaches them.

Consequence: code that calls ``set_global_textmap`` after the bridge is installed replaces the
wrapper; the next gateway call's request hook notices and wraps the new propagator (a composite
that holds the old wrapper works too: a wrapper nested in another one only passes through).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, NamedTuple

from opentelemetry import baggage, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)

from . import header_layouts
from .header_maps import PORTKEY_NAME, remove_baggage

INSTRUMENTATION_SCOPES = (
    "opentelemetry.instrumentation.",
)  # requests, urllib, urllib3, aiohttp_client, httpx


class Decision(NamedTuple):
    """What the bridge's request hook found, in the CLIENT span, just before the client's
    instrumentation injects: the propagator then need not look again. The hook has already set
    the Portkey headers of a bound request. It stays in the context until the next request there,
    and with it a reference to that request's header mapping (compared by identity, never read)."""

    carrier: object  # the header mapping the hook saw (the one injected into next, except for httpx)
    span_id: int
    bound: bool  # the request is for a Portkey gateway (by its URL or an ``x-portkey-*`` header)
    baggage: bool  # the request already has a ``baggage`` header (an SDK that injects itself)


request_decision: ContextVar[Decision | None] = ContextVar("otel_portkey_request", default=None)
_injecting: ContextVar[bool] = ContextVar("otel_portkey_injecting", default=False)


def span_url(span: Any) -> str:
    """The URL an HTTP client span records (``url.full``, or the older ``http.url``); "" when it has
    none (an unsampled span has no attributes)."""
    attributes = getattr(span, "attributes", None)
    if not attributes:
        return ""
    url = attributes.get("url.full") or attributes.get("http.url")
    return url if isinstance(url, str) else ""


def has_portkey_header(carrier: Any) -> bool:
    """True when a header mapping (any of the HTTP clients' kinds) has an ``x-portkey-*`` name."""
    return hasattr(carrier, "keys") and PORTKEY_NAME in header_layouts.header_names(carrier)


PortkeyRequest = Callable[[Any, Any, Setter[Any]], None]  # span, carrier, setter


class PortkeyPropagator(TextMapPropagator):
    """Wraps ``inner``; on a Portkey-bound request it injects no baggage and, unless the httpx
    request hook already did, lets ``on_portkey_request(span, carrier, setter)`` add the Portkey
    headers (see the module docstring)."""

    def __init__(
        self,
        inner: TextMapPropagator,
        url_is_gateway: Callable[[str], bool],
        on_portkey_request: PortkeyRequest | None = None,
    ) -> None:
        self.inner = inner
        self.url_is_gateway = url_is_gateway
        self.on_portkey_request = on_portkey_request
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
        if not hooked and self.on_portkey_request is not None:
            self.on_portkey_request(span, carrier, setter)  # guarded inside

    def portkey_bound(self, carrier: Any, context: Context | None) -> bool:
        """Whether the request whose headers are ``carrier`` goes to a Portkey gateway (by the
        URL on its CLIENT span, or an ``x-portkey-*`` header it already has).

        Only a span made by an OTel instrumentation counts: an SDK that traces itself (anthropic
        does) and injects inside its own span would otherwise get the ids of that span, and the
        HTTP span inside it would find them already set. (A non-recording span has no scope to
        check: in an unsampled trace such an SDK's own inject can still set the ids first.)
        """
        return self._bound(trace.get_current_span(context), carrier)

    def _bound(self, span: Any, carrier: Any) -> bool:
        # The cheap negative checks first: most requests are not for a gateway.
        url = span_url(span)
        if not (url and self.url_is_gateway(url)) and not has_portkey_header(carrier):
            return False
        scope = getattr(span, "instrumentation_scope", None)
        return scope is None or str(getattr(scope, "name", "")).startswith(INSTRUMENTATION_SCOPES)

    @property
    def fields(self) -> set[str]:
        return self.inner.fields
