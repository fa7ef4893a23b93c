"""The bridge's hooks in every OTel HTTP client instrumentation, through its public ``instrument()``.

Each client's hooks are thin adapters: the request hook runs in the CLIENT span just before its
instrumentation injects, finds the request's live header mapping, URL and method among its
arguments, and hands them to :meth:`Bridge.on_request <otel_portkey._otel.bridge.Bridge.on_request>`
(which decides whether the request is for a gateway, sets the Portkey headers, and leaves its
decision for the propagator); the response hook hands the response's headers and stream to
``Bridge.on_response``. (A request no bridge hook saw is still bridged by the propagator alone.)

Each instrumentation takes hooks only as keyword arguments of its public ``instrument(**kwargs)``,
and ``opentelemetry-instrument`` calls it with none. So the bridge wraps ``instrument`` (and
``uninstrument``) on each instrumentor class: every instrumentation made after the wrap calls the
user's hook first, then the bridge's. Under ``opentelemetry-instrument`` that is every one of them,
whatever the load order, because the wrap happens in the ``opentelemetry_pre_instrument`` entry
point, before any instrumentor loads. An instrumentation made by hand before the bridge keeps its
hooks as they were: its calls still carry the Portkey ids, but their spans do not get the gateway's
answer, and the bridge says so once. The bridge's hooks act only while the bridge is installed;
``uninstrument()`` takes the wrappers off. No private layout of another package is touched.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import wrapt
from opentelemetry.instrumentation.utils import unwrap

from .bridge import Bridge
from .diagnostics import report_once
from .propagator import keep_installed

_active: list[Bridge] = []  # the installed bridge, if any (read with ``_bridge()``)


def _bridge() -> Bridge | None:
    try:
        return _active[0]  # one atomic read: another thread may deactivate meanwhile
    except IndexError:
        return None


def activate(bridge: Bridge | None) -> None:
    """Make ``bridge`` the one the composed hooks call (None: they do nothing)."""
    _active[:] = [bridge] if bridge is not None else []


_MARK = "_otel_portkey_hook"


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
        if bridge is not None:
            bridge.on_response(span, response, _httpx_answer, ("close",), ("aclose",))  # guarded inside

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


def _httpx_answer(response: Any) -> tuple[Any, Any]:
    return response.headers, response.stream


def _answer(response: Any) -> tuple[Any, Any]:
    """Headers and stream of a requests, urllib, urllib3 or aiohttp response; no stream when its
    body is already read (requests without ``stream=True``)."""
    body = getattr(response, "raw", None) or response  # requests keeps the stream in ``raw``
    return response.headers, None if getattr(body, "closed", False) is True else response


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
            if bridge is None:
                return
            try:
                response = response_of(*args)
            except Exception:
                return
            if response is not None:
                bridge.on_response(span, response, _answer, closers)  # guarded inside

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


def _called_as(user: Any, ours: Callable[..., Any]) -> bool:
    """Whether the instrumentation would call ``user``, passed alone where ``ours`` goes.

    Each one documents and checks its hooks so: all of them call a hook only when it is
    ``callable``, and httpx takes an ``async_request_hook`` / ``async_response_hook`` only when it
    is a coroutine function (``inspect.iscoroutinefunction``, as it tests it), silently ignoring
    anything else. The bridge's coroutine hooks are exactly those two.
    """
    if inspect.iscoroutinefunction(ours):
        return inspect.iscoroutinefunction(user)
    return callable(user)


def _composed(user: Any, ours: Callable[..., Any]) -> Callable[..., Any]:
    """``user`` then ``ours``, as one hook of the same kind (coroutine functions stay coroutines).

    A ``user`` hook the instrumentation would ignore (see ``_called_as``) is ignored here too,
    and only ``ours`` runs. An exception from ``user`` leaves the composed hook as it would leave
    the instrumentation's own call of it (``ours`` does not run then).
    """
    # ``is True``: any attribute of a ``Mock`` hook is a truthy Mock, and a Mock is a hook to call
    if user is None or getattr(user, _MARK, False) is True or not _called_as(user, ours):
        composed = ours
    elif inspect.iscoroutinefunction(ours):

        async def composed(*args: Any) -> None:
            await user(*args)
            await ours(*args)

    else:

        def composed(*args: Any) -> None:
            user(*args)
            ours(*args)

    setattr(composed, _MARK, True)
    return composed


# (class, method) -> (whether the class defined the method itself, the wrapper put there)
_wrapped: dict[tuple[type[Any], str], tuple[bool, object]] = {}
_with_our_hooks: set[type[Any]] = set()  # instrumented through the wrapper, not uninstrumented since


def _instrument_wrapper(client: Client) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        ours = client.hooks(_bridge)
        kwargs = {**kwargs, **{key: _composed(kwargs.get(key), hook) for key, hook in ours.items()}}
        result = wrapped(*args, **kwargs)
        _with_our_hooks.add(type(instance))
        return result

    return wrapper


def _uninstrument_wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    _with_our_hooks.discard(type(instance))
    return wrapped(*args, **kwargs)


def attach() -> list[str]:
    """Wrap ``instrument``/``uninstrument`` of every installed client instrumentor (once); returns
    the names of those already instrumented without the bridge's hooks."""
    late = []
    for client in CLIENTS:
        cls = client.instrumentor_class()
        if cls is None:
            continue
        if (cls, "instrument") not in _wrapped:
            for method, wrapper in (
                ("instrument", _instrument_wrapper(client)),
                ("uninstrument", _uninstrument_wrapper),
            ):
                own = method in cls.__dict__
                _wrapped[(cls, method)] = (own, wrapt.wrap_function_wrapper(cls, method, wrapper))
        if cls().is_instrumented_by_opentelemetry and cls not in _with_our_hooks:
            late.append(client.name)
    return late


def detach() -> None:
    """Put every wrapped method back, unless something wrapped it again over the bridge's wrapper
    (that one is left in place, and with it ours, which does nothing once the bridge is gone)."""
    for (cls, method), (own, wrapper) in list(_wrapped.items()):
        del _wrapped[(cls, method)]
        if cls.__dict__.get(method) is not wrapper:
            continue
        if own:
            unwrap(cls, method)
        else:  # inherited: the class gets its base's method again
            delattr(cls, method)
    _with_our_hooks.difference_update(
        {c for c in _with_our_hooks if not c().is_instrumented_by_opentelemetry}
    )
