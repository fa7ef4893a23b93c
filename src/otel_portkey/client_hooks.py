"""The bridge's hooks in every OTel HTTP client instrumentation, through its public ``instrument()``.

The request side needs no hook: ``PortkeyPropagator`` sees every instrumented request. The hooks
add what only they can: the gateway's answer on the span (every client), and for httpx/httpx2 the
request side with the URL at hand (so an unsampled call is bridged too, and the propagator need not
look at the headers again).

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
from typing import TYPE_CHECKING, Any

import wrapt

if TYPE_CHECKING:
    from .hooks import PortkeyHooks

_active: list[PortkeyHooks] = []  # the installed bridge's hooks, if any
_MARK = "_otel_portkey_hook"


@dataclass(frozen=True)
class Client:
    """One OTel HTTP client instrumentation and the bridge's hooks for it."""

    name: str  # its entry point's name, as OTEL_PYTHON_DISABLED_INSTRUMENTATIONS spells it
    module: str
    instrumentor: str
    hooks: Callable[[], dict[str, Callable[..., Any]]]  # instrument() keyword → the bridge's hook

    def instrumentor_class(self) -> type[Any] | None:
        """The instrumentor class, or None when the instrumentation (or its library) is not installed."""
        try:
            return getattr(importlib.import_module(self.module), self.instrumentor)  # type: ignore[no-any-return]
        except Exception:
            return None


def _httpx_hooks() -> dict[str, Callable[..., Any]]:
    def request_hook(span: Any, request: Any) -> None:
        if _active:
            _active[0].on_request(span, request)

    def response_hook(span: Any, request: Any, response: Any) -> None:
        if _active:
            _active[0].on_response(span, request, response)

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


def _response_hook(
    response_of: Callable[..., Any], close_methods: tuple[str, ...]
) -> Callable[[], dict[str, Any]]:
    """A ``response_hook`` that finds the response among the hook's arguments after the span."""

    def hooks() -> dict[str, Callable[..., Any]]:
        def response_hook(span: Any, *args: Any) -> None:
            if not _active:
                return
            try:
                response = response_of(*args)
            except Exception:
                return
            if response is not None:
                _active[0].on_client_response(span, response, close_methods)  # guarded inside

        return {"response_hook": response_hook}

    return hooks


def _second(_first: Any, response: Any) -> Any:
    return response


def _aiohttp_response(params: Any) -> Any:
    return getattr(params, "response", None)  # TraceRequestEndParams; a failed request has none


_HTTPX = "opentelemetry.instrumentation.httpx"
CLIENTS = (
    Client("httpx", _HTTPX, "HTTPXClientInstrumentor", _httpx_hooks),
    Client("httpx2", _HTTPX, "HTTPX2ClientInstrumentor", _httpx_hooks),
    Client(
        "requests",
        "opentelemetry.instrumentation.requests",
        "RequestsInstrumentor",
        _response_hook(_second, ("close",)),
    ),
    Client(
        "urllib",
        "opentelemetry.instrumentation.urllib",
        "URLLibInstrumentor",
        _response_hook(_second, ("close",)),
    ),
    Client(
        "urllib3",
        "opentelemetry.instrumentation.urllib3",
        "URLLib3Instrumentor",
        _response_hook(_second, ("close", "release_conn")),
    ),
    Client(
        "aiohttp-client",
        "opentelemetry.instrumentation.aiohttp_client",
        "AioHttpClientInstrumentor",
        _response_hook(_aiohttp_response, ("close", "release")),
    ),
)
HTTPX_CLIENTS = CLIENTS[:2]  # the bridge instruments these itself when nobody else does


def _composed(user: Callable[..., Any] | None, ours: Callable[..., Any]) -> Callable[..., Any]:
    """``user`` then ``ours``, as one hook of the same kind (coroutine functions stay coroutines)."""
    if user is None or getattr(user, _MARK, False):
        composed = ours
    elif inspect.iscoroutinefunction(ours):

        async def composed(*args: Any) -> None:
            result = user(*args)
            if inspect.isawaitable(result):
                await result
            await ours(*args)

    else:

        def composed(*args: Any) -> None:
            user(*args)
            ours(*args)

    setattr(composed, _MARK, True)
    return composed


_wrapped: dict[tuple[type[Any], str], bool] = {}  # (class, method) → whether the class defined it
_with_our_hooks: set[type[Any]] = set()  # instrumented through the wrapper, not uninstrumented since


def _instrument_wrapper(client: Client) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        ours = client.hooks()
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
                _wrapped[(cls, method)] = method in cls.__dict__
                wrapt.wrap_function_wrapper(cls, method, wrapper)
        if cls().is_instrumented_by_opentelemetry and cls not in _with_our_hooks:
            late.append(client.name)
    return late


def detach() -> None:
    """Put every wrapped method back."""
    for (cls, method), own in list(_wrapped.items()):
        if own:
            setattr(cls, method, cls.__dict__[method].__wrapped__)
        else:
            delattr(cls, method)
        del _wrapped[(cls, method)]
    _with_our_hooks.difference_update(
        {c for c in _with_our_hooks if not c().is_instrumented_by_opentelemetry}
    )


def activate(hooks: PortkeyHooks | None) -> None:
    """Make ``hooks`` the bridge the composed hooks call (None: they do nothing)."""
    _active[:] = [hooks] if hooks is not None else []


def x_portkey_items(headers: Any) -> dict[str, str]:
    """The ``x-portkey-*`` and ``content-type`` headers of any client's response header mapping."""
    found: dict[str, str] = {}
    for key, value in headers.items():
        name = str(key).lower()
        if name.startswith("x-portkey-") or name == "content-type":
            found[name] = f"{found[name]}, {value}" if name in found else str(value)
    return found
