"""``PortkeyPropagator``: the global propagator, minus ``baggage`` on requests to a Portkey gateway.

Every OTel HTTP client instrumentation calls ``opentelemetry.propagate.inject(carrier)`` inside the
request's CLIENT span, with the live header mapping as the carrier. Wrapping the global propagator
is the one public seam all of them share: the wrapper sees every instrumented request, whichever
library sent it and in whatever order the instrumentations loaded.

What it does there: a Portkey-bound request (one that carries an ``x-portkey-*`` header, or whose
span's URL is a configured gateway) gets the bridge's ``x-portkey-*`` headers (requests, urllib,
urllib3, aiohttp, and httpx clients the bridge's httpx hooks do not reach), and ``traceparent`` as
usual but **no baggage**. Hosted
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
from collections.abc import Callable, Iterable
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

INSTRUMENTATION_SCOPES = (
    "opentelemetry.instrumentation.",
)  # requests, urllib, urllib3, aiohttp_client, httpx


class Decision(NamedTuple):
    """What a client's request hook, run in the CLIENT span just before its instrumentation
    injects, found out: the propagator then need not look again, and knows the URL even for an
    unsampled span (which has no attributes)."""

    span_id: int
    bound: bool  # the request is for a Portkey gateway (by its URL, or by its headers when final)
    final: bool  # the hook saw the headers too and set the Portkey ones itself (httpx)
    url: str = ""
    method: str = "POST"


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
    """True when a header mapping (any of the HTTP clients' kinds) has an ``x-portkey-*`` name.

    Runs on every instrumented request that is not for a gateway's URL, so it is one string search.
    """
    raw: Iterable[tuple[bytes, bytes]] | None = getattr(carrier, "raw", None)
    if isinstance(raw, list):  # httpx / httpx2 Headers: raw byte pairs, no decoding
        return any(name[:10].lower() == b"x-portkey-" for name, _ in raw)
    keys = getattr(carrier, "keys", None)
    if keys is None:
        return False
    names = list(keys())
    try:  # one search over all the names, instead of a Python loop over them
        return "\nx-portkey-" in ("\n" + "\n".join(names)).lower()
    except TypeError:  # some names are bytes
        return any(
            isinstance(name, bytes | str) and name[:10].lower() in ("x-portkey-", b"x-portkey-")
            for name in names
        )


PortkeyRequest = Callable[[Any, Any, Setter[Any], str, str], None]  # span, carrier, setter, url, method


def remove_baggage(carrier: Any) -> None:
    """Delete every ``baggage`` header (any spelling, every copy) from a header mapping."""
    keys = getattr(carrier, "keys", None)
    if keys is None:
        return
    for name in [k for k in keys() if str(k).lower() == "baggage" or k == b"baggage"]:
        with contextlib.suppress(KeyError, TypeError):
            del carrier[name]


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
        if not self.enabled or _injecting.get():  # off, or nested in another PortkeyPropagator
            self.inner.inject(carrier, context, setter)
            return
        span = trace.get_current_span(context)
        decided: Decision | None = None
        try:
            decided = request_decision.get()
            if decided is not None and decided.span_id != span.get_span_context().span_id:
                decided = None
            if decided is None:
                bound = self._bound(span, carrier)
            else:  # a hook that only knew the URL leaves the headers to look at
                bound = decided.bound or (not decided.final and has_portkey_header(carrier))
        except Exception:  # never raise into the request: inject as if the bridge were not here
            bound = False
        token = _injecting.set(True)
        try:
            self.inner.inject(carrier, baggage.clear(context) if bound else context, setter)
        finally:
            _injecting.reset(token)
        if not bound:
            return
        with contextlib.suppress(Exception):  # a baggage header already there (an SDK that injects
            remove_baggage(carrier)  # itself) must not reach Portkey either
        if (decided is None or not decided.final) and self.on_portkey_request is not None:
            url, method = (decided.url, decided.method) if decided is not None else ("", "POST")
            self.on_portkey_request(span, carrier, setter, url, method)  # guarded inside

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
