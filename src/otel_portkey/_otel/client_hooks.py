"""The seams every OTel HTTP client instrumentation offers, and the bridge in each: its request hook,
the global propagator's ``inject``, and its response hook.

Each client's hooks are thin adapters: the request hook runs in the CLIENT span just before its
instrumentation injects, finds the request's live header mapping, URL and method among its
arguments, and hands them to :meth:`Bridge.on_request <otel_portkey._otel.bridge.Bridge.on_request>`
(which decides whether the request is for a gateway, sets the Portkey headers, makes the call's
:class:`~otel_portkey._otel.bridge.GatewayCall`, and leaves its decision for the propagator); the
response hook hands the response's headers and stream to ``Bridge.on_response``.

:class:`PortkeyPropagator` wraps the global propagator: every instrumentation calls
``opentelemetry.propagate.inject(carrier)`` inside the request's CLIENT span, with the live header
mapping as the carrier, so the wrapper sees every instrumented request, whichever library sent it
and in whatever order the instrumentations loaded. A Portkey-bound request gets ``traceparent`` as
usual but **no baggage**: hosted Portkey merges every ``baggage`` entry into the request's metadata,
so baggage sent there would log the bridge's own ``portkey.metadata.*`` entries a second time, carry
values past Portkey's rules, and forward whatever an outside caller put into the app's inbound
baggage. The metadata a gateway should see is already in ``x-portkey-metadata``, sanitised,
budgeted and sent once. Requests to any other service keep their baggage. A request no bridge hook
saw (its instrumentation was made before the bridge) is bridged here (``Bridge.on_inject``), from
its span's attributes. Code that calls ``set_global_textmap`` after the bridge is installed
replaces the wrapper; the next gateway call's request hook notices (:func:`keep_installed`) and
wraps the new propagator (a composite that holds the old wrapper works too: a wrapper nested in
another one only passes through).

Hooks are given to each instrumentation through its public ``instrument(**kwargs)``, wrapped for
that by the installation (``instrumentor``); the hooks act only while a bridge is active.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NamedTuple

from opentelemetry import baggage, propagate, trace
from opentelemetry.context import Context, set_value
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
from .processor import INBOUND_CALLER

# The installed bridge, if any (read with ``_bridge()``): module-level because an instrumentation keeps
# the hooks it was given for its whole life, across the bridge's installs and uninstalls.
_active: list[Bridge] = []


def _bridge() -> Bridge | None:
    try:
        return _active[0]  # one atomic read: another thread may deactivate meanwhile
    except IndexError:
        return None


def activate(bridge: Bridge | None) -> None:
    """Make ``bridge`` the one the composed hooks call (None: they do nothing)."""
    _active[:] = [bridge] if bridge is not None else []


@dataclass(frozen=True)
class Client:
    """One OTel HTTP client instrumentation and the bridge's hooks for it."""

    name: str  # its entry point's name, as OTEL_PYTHON_DISABLED_INSTRUMENTATIONS spells it
    module: str
    instrumentor: str
    hooks: Callable[..., dict[str, Callable[..., Any]]]  # (bridge_of) → instrument() keyword → hook

    def instrumentor_class(self) -> type[Any] | None:
        """The instrumentor class, or None when the instrumentation (or its library) is not installed."""
        try:
            return getattr(importlib.import_module(self.module), self.instrumentor)  # type: ignore[no-any-return]
        except Exception:
            return None


def _request(bridge: Bridge, span: Any, headers: Any, url: str, method: str) -> None:
    if bridge.on_request(span, headers, url, method):  # guarded inside
        keep_installed()


BridgeOf = Callable[[], "Bridge | None"]  # the bridge a hook calls: the installed one, unless a test says


def httpx_hooks(bridge_of: BridgeOf = _bridge) -> dict[str, Callable[..., Any]]:
    """The httpx/httpx2 instrumentation's hooks (``RequestInfo`` / ``ResponseInfo`` tuples), calling
    ``bridge_of()``: the installed bridge by default."""

    def request_hook(span: Any, request: Any) -> None:
        bridge = bridge_of()
        if bridge is None:
            return
        try:
            headers = request.headers
            method = request.method
            method = method.decode("ascii", "replace") if isinstance(method, bytes) else str(method)
            url = str(request.url)
        except Exception as error:
            report_once("adding Portkey headers", error)
            return
        if headers is not None:
            _request(bridge, span, headers, url, method)

    def response_hook(span: Any, request: Any, response: Any) -> None:
        bridge = bridge_of()
        call = bridge.call_of(span) if bridge is not None else None
        if bridge is None or call is None:  # not a Portkey-bound call's: its answer is not read
            return
        try:
            headers, stream, status = response.headers, response.stream, response.status_code
        except Exception as error:
            report_once("recording the Portkey response", error)
            return
        bridge.on_response(span, call, headers, stream, status, ("close",), ("aclose",))

    async def async_request_hook(span: Any, request: Any) -> None:
        request_hook(span, request)

    async def async_response_hook(span: Any, request: Any, response: Any) -> None:
        response_hook(span, request, response)

    return {
        "request_hook": request_hook,
        "response_hook": response_hook,
        "async_request_hook": async_request_hook,
        "async_response_hook": async_response_hook,
    }


def _answer(response: Any) -> tuple[Any, Any, object]:
    """Headers, stream and status of a requests, urllib, urllib3 or aiohttp response; no stream
    when its body is already read (requests without ``stream=True``)."""
    body = getattr(response, "raw", None) or response  # requests keeps the stream in ``raw``
    stream = None if getattr(body, "closed", False) is True else response
    status = getattr(response, "status_code", None)  # requests; urllib, urllib3, aiohttp: ``status``
    return response.headers, stream, status if status is not None else getattr(response, "status", None)


def _client_hooks(
    request_of: Callable[..., tuple[Any, str, str]],
    response_of: Callable[..., Any],
    closers: tuple[str, ...],
) -> Callable[[BridgeOf], dict[str, Callable[..., Any]]]:
    """A ``request_hook`` that bridges the request (``request_of`` finds its header mapping, URL
    and method among the hook's arguments after the span), and a ``response_hook`` that reads the
    gateway's answer from the response (``response_of``), whose span a stream keeps open until one
    of ``closers`` runs."""

    def hooks(bridge_of: BridgeOf = _bridge) -> dict[str, Callable[..., Any]]:
        def request_hook(span: Any, *args: Any) -> None:
            bridge = bridge_of()
            if bridge is None:
                return
            try:
                headers, url, method = request_of(*args)
            except Exception:
                return
            if headers is not None:
                _request(bridge, span, headers, url, method)

        def response_hook(span: Any, *args: Any) -> None:
            bridge = bridge_of()
            call = bridge.call_of(span) if bridge is not None else None
            if bridge is None or call is None:  # not a Portkey-bound call's: its answer is not read
                return
            try:
                response = response_of(*args)
                if response is None:
                    return
                headers, stream, status = _answer(response)
            except Exception as error:
                report_once("recording the Portkey response", error)
                return
            bridge.on_response(span, call, headers, stream, status, closers)

        return {"request_hook": request_hook, "response_hook": response_hook}

    return hooks


def _second(_first: Any, response: Any) -> Any:
    return response


class _ErrorAnswer(NamedTuple):
    """The answer an HTTP error exception carries (aiohttp's ``ClientResponseError`` under
    ``raise_for_status``): its status and headers, its body already gone."""

    status: int
    headers: Any
    closed: bool = True


def _aiohttp_response(params: Any) -> Any:
    """The response of ``TraceRequestEndParams``; for ``TraceRequestExceptionParams``, the answer
    an HTTP error carries (``raise_for_status``), else None (no answer: the request failed)."""
    response = getattr(params, "response", None)
    if response is not None:
        return response
    error = getattr(params, "exception", None)
    status, headers = getattr(error, "status", None), getattr(error, "headers", None)
    if isinstance(status, int) and not isinstance(status, bool) and headers is not None:
        return _ErrorAnswer(status, headers)
    return None


def _requests_request(request: Any) -> tuple[Any, str, str]:
    return request.headers, str(request.url), str(request.method)


def _urllib_request(request: Any) -> tuple[Any, str, str]:
    return request.headers, str(request.full_url), str(request.get_method())


def _urllib3_request(pool: Any, info: Any) -> tuple[Any, str, str]:
    url = str(info.url)
    if url.startswith("/"):  # a pool's requests name only the path
        url = f"{pool.scheme}://{pool.host}:{pool.port}{url}"
    return info.headers, url, str(info.method)


def _aiohttp_request(params: Any) -> tuple[Any, str, str]:
    return params.headers, str(params.url), str(params.method)


_HTTPX = "opentelemetry.instrumentation.httpx"
CLIENTS = (
    Client("httpx", _HTTPX, "HTTPXClientInstrumentor", httpx_hooks),
    Client("httpx2", _HTTPX, "HTTPX2ClientInstrumentor", httpx_hooks),
    Client(
        "requests",
        "opentelemetry.instrumentation.requests",
        "RequestsInstrumentor",
        _client_hooks(_requests_request, _second, ("close",)),
    ),
    Client(
        "urllib",
        "opentelemetry.instrumentation.urllib",
        "URLLibInstrumentor",
        _client_hooks(_urllib_request, _second, ("close",)),
    ),
    Client(
        "urllib3",
        "opentelemetry.instrumentation.urllib3",
        "URLLib3Instrumentor",
        _client_hooks(_urllib3_request, _second, ("close", "release_conn")),
    ),
    Client(
        "aiohttp-client",
        "opentelemetry.instrumentation.aiohttp_client",
        "AioHttpClientInstrumentor",
        _client_hooks(_aiohttp_request, _aiohttp_response, ("close", "release")),
    ),
)
HTTPX_CLIENTS = CLIENTS[:2]  # the bridge instruments these itself when nobody else does


# ---- the propagator -----------------------------------------------------------------------------

INSTRUMENTATION_SCOPES = ("opentelemetry.instrumentation.",)  # requests, urllib, urllib3, aiohttp, httpx

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
        if self.enabled and self.bridge.processor_pending is not None:  # a provider set after
            try:  # instrument(): found before this inbound request's server span starts
                self.bridge.look_for_processor()
            except Exception as error:
                report_once("looking for the tracer provider", error)
        extracted = self.inner.extract(carrier, context, getter)
        if self.enabled and self.bridge.link_inbound:
            try:
                return _new_trace_linked_to_caller(extracted, context)
            except Exception as error:  # never the caller's trace: a new one, unlinked
                report_once("starting a new trace at an inbound request", error)
                return trace.set_span_in_context(trace.INVALID_SPAN, extracted)
        return extracted

    def inject(
        self, carrier: CarrierT, context: Context | None = None, setter: Setter[CarrierT] = default_setter
    ) -> None:
        decided = request_decision.get()
        if decided is not None and decided.carrier_id == id(carrier) and not decided.bound:  # the usual case
            request_decision.set(None)  # used: a later mapping at the same address is another request
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
                if decided.call is None:  # used (httpx injects into a copy of what its hook saw)
                    request_decision.set(None)
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


def _new_trace_linked_to_caller(extracted: Context, given: Context | None) -> Context:
    """``OTEL_PORTKEY_INBOUND_TRACE_CONTEXT=link``: the context an inbound request's spans start in
    holds no caller's span, so its server span starts a new trace (whose id the caller cannot choose);
    the caller's span context is kept under the bridge's own key, for the processor to link that span
    to it. Baggage stays as extracted (it is untrusted input in any case: ``_contract.baggage_trust``).
    """
    caller = trace.get_current_span(extracted)
    caller_context = caller.get_span_context()
    if not caller_context.is_valid or not caller_context.is_remote:
        return extracted  # no traceparent (or an invalid one): a new trace anyway
    if given is not None and trace.get_current_span(given) is caller:
        return extracted  # nothing extracted from this carrier: the given context's own span
    return set_value(INBOUND_CALLER, caller_context, trace.set_span_in_context(trace.INVALID_SPAN, extracted))


# The installed wrapper, and the ones it replaced when the global propagator was set again after it
# (perhaps still inside a composite); all of them are switched off on uninstall. Module-level
# because ``keep_installed`` runs from every bound request's hook, which has no other way to them.
_installed: list[PortkeyPropagator] = []
_changing = threading.Lock()  # install, rewrap and uninstall one at a time


def install_propagator(bridge: Bridge) -> PortkeyPropagator:
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
        except Exception as error:  # never raise into the request
            report_once("rewrapping the global propagator", error)


def uninstall_propagator() -> None:
    """Switch every wrapper off and give the global propagator back, unless someone replaced it."""
    with _changing:
        for wrapper in _installed:
            wrapper.enabled = False
        if _installed and propagate.get_global_textmap() is _installed[-1]:
            propagate.set_global_textmap(_installed[-1].inner)
        _installed.clear()


def after_fork_in_child() -> None:
    """A forked child starts with the lock free (a fork taken while a thread held it would hang)."""
    global _changing
    _changing = threading.Lock()
