"""Attach the bridge's hooks to the OTel httpx and httpx2 instrumentation, whenever it is installed.

``HTTPXClientInstrumentor`` and ``HTTPX2ClientInstrumentor`` are per-class singletons that take
hooks only through ``instrument(**kwargs)``, and ``opentelemetry-instrument`` instruments them
with no hooks, before or after the bridge. So, for each flavour:

* already instrumented: the transport wrapper is re-made from its own ``functools.partial`` with
  the bridge's hooks composed after any hooks the user passed (tracer, meters and settings kept);
* instrumented later: its ``_instrument`` is wrapped so the same happens right after it runs;
* :func:`detach` puts the user's own partial back, so nothing of the bridge stays behind.

Composed hooks call the user's hook first, then the bridge's, so headers the user's hook sets
count as the caller's own and are respected.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import wrapt
from opentelemetry.instrumentation.utils import unwrap

from .hooks import PortkeyHooks

_log = logging.getLogger(__name__)

_BRIDGE_MARK = "_otel_portkey_composed"


@dataclass(frozen=True)
class Flavour:
    """One httpx-compatible library and the OTel instrumentor class for it."""

    module_name: str  # "httpx" or "httpx2"
    instrumentor_class: type[Any]

    @property
    def module(self) -> Any:
        return self.instrumentor_class._module

    def available(self) -> bool:
        return self.module is not None

    def is_instrumented(self) -> bool:
        return bool(self.instrumentor_class()._is_instrumented_by_opentelemetry)


def flavours() -> tuple[Flavour, ...]:
    """The httpx-compatible libraries the installed OTel instrumentation supports."""
    from opentelemetry.instrumentation import httpx as otel_httpx

    found = [Flavour("httpx", otel_httpx.HTTPXClientInstrumentor)]
    httpx2_class = getattr(otel_httpx, "HTTPX2ClientInstrumentor", None)
    if httpx2_class is not None:
        found.append(Flavour("httpx2", httpx2_class))
    return tuple(flavour for flavour in found if flavour.available())


# (transport class name, method name, hook keyword names) for the sync and the async transport.
_TRANSPORTS = (
    ("HTTPTransport", "handle_request", ("request_hook", "response_hook"), False),
    ("AsyncHTTPTransport", "handle_async_request", ("async_request_hook", "async_response_hook"), True),
)


def _compose_sync(user: Callable[..., Any] | None, ours: Callable[..., None]) -> Callable[..., None]:
    def composed(*args: Any) -> None:
        if user is not None:
            user(*args)
        ours(*args)

    setattr(composed, _BRIDGE_MARK, True)
    return composed


def _compose_async(
    user: Callable[..., Awaitable[None]] | None, ours: Callable[..., Awaitable[None]]
) -> Callable[..., Awaitable[None]]:
    async def composed(*args: Any) -> None:
        if user is not None:
            await user(*args)
        await ours(*args)

    setattr(composed, _BRIDGE_MARK, True)
    return composed


class Wiring:
    """Keeps the bridge's hooks attached to every instrumented httpx flavour until :meth:`detach`."""

    def __init__(self, hooks: PortkeyHooks) -> None:
        self._hooks = hooks
        # (module name, transport class) -> the partial the instrumentation made, before composition
        self._originals: dict[tuple[str, str], functools.partial[Any]] = {}
        # instrumentor classes whose ``_instrument`` is wrapped -> whether the class defined its own
        self._patched_instrument: dict[type[Any], bool] = {}

    def attach(self, flavour: Flavour) -> None:
        """Compose hooks into ``flavour`` now (if instrumented) and whenever it is instrumented again."""
        cls = flavour.instrumentor_class
        if cls not in self._patched_instrument:
            self._patched_instrument[cls] = "_instrument" in cls.__dict__
            wrapt.wrap_function_wrapper(cls, "_instrument", self._after_instrument(flavour))
        if flavour.is_instrumented():
            self._compose(flavour)

    def detach(self, flavour: Flavour) -> None:
        """Restore ``flavour``'s own transport wrappers and ``_instrument``."""
        cls = flavour.instrumentor_class
        if cls in self._patched_instrument:
            if self._patched_instrument.pop(cls):
                unwrap(cls, "_instrument")
            else:
                delattr(cls, "_instrument")
        module = flavour.module
        for class_name, method_name, _, _ in _TRANSPORTS:
            original = self._originals.pop((flavour.module_name, class_name), None)
            transport = getattr(module, class_name)
            current = transport.__dict__.get(method_name)
            if original is None or not _is_composed(current):
                continue
            unwrap(transport, method_name)
            wrapt.wrap_function_wrapper(transport, method_name, original)

    def _after_instrument(self, flavour: Flavour) -> Callable[..., Any]:
        def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
            result = wrapped(*args, **kwargs)
            try:
                self._compose(flavour)
            except Exception as error:  # the instrumentation itself must still succeed
                _log.warning(
                    "otel-portkey: could not attach to %s (%s)", flavour.module_name, type(error).__name__
                )
            return result

        return wrapper

    def _compose(self, flavour: Flavour) -> None:
        module = flavour.module
        for class_name, method_name, (request_key, response_key), is_async in _TRANSPORTS:
            transport = getattr(module, class_name)
            current = transport.__dict__.get(method_name)
            partial = getattr(current, "_self_wrapper", None)
            if not isinstance(partial, functools.partial) or request_key not in partial.keywords:
                _log.debug(
                    "otel-portkey: %s.%s is not wrapped by the OTel instrumentation", class_name, method_name
                )
                continue
            if _is_composed(current):
                continue
            keywords = dict(partial.keywords)
            if is_async:
                keywords[request_key] = _compose_async(
                    keywords.get(request_key), self._hooks.async_request_hook
                )
                keywords[response_key] = _compose_async(
                    keywords.get(response_key), self._hooks.async_response_hook
                )
            else:
                keywords[request_key] = _compose_sync(keywords.get(request_key), self._hooks.request_hook)
                keywords[response_key] = _compose_sync(keywords.get(response_key), self._hooks.response_hook)
            self._originals[(flavour.module_name, class_name)] = partial
            unwrap(transport, method_name)
            wrapt.wrap_function_wrapper(
                transport, method_name, functools.partial(partial.func, *partial.args, **keywords)
            )


def _is_composed(method: Any) -> bool:
    partial = getattr(method, "_self_wrapper", None)
    if not isinstance(partial, functools.partial):
        return False
    return any(getattr(hook, _BRIDGE_MARK, False) for hook in partial.keywords.values())
