"""``PortkeyInstrumentor``: the bridge's entry point (``otel_portkey`` in ``opentelemetry_instrumentor``),
and :class:`Installation`, everything one ``instrument()`` puts in place, undone by one ``undo()``.

What an installation puts in place: the bridge's hooks in every client instrumentation made from
then on (``instrument`` of each instrumentor class wrapped, see :func:`attach`), the propagator
wrapper, the ``PortkeySpanProcessor`` on the SDK tracer provider (now, or on the first gateway call
after a provider is set), the httpx/httpx2 instrumentations it makes itself when nobody else does,
and what keeps the join in processes it forks: a forked child starts with every lock of the bridge
free and no per-process cache, and a ``multiprocessing`` worker flushes its spans and metrics
before it exits (its ``os._exit`` skips the SDK's own ``atexit`` flush).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import multiprocessing.util
import os
import threading
from collections.abc import Callable, Collection
from typing import Any

import wrapt
from opentelemetry import metrics, propagate, trace
from opentelemetry.instrumentation.dependencies import get_dependency_conflicts
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap

from ..config import PortkeySettings
from ..environment_variables import OTEL_PYTHON_DISABLED_INSTRUMENTATIONS
from . import client_hooks, processor
from .bridge import Bridge, GatewayMetrics
from .client_hooks import Client
from .diagnostics import report_once, traceback_without_messages, warn_once
from .kept_trace_ids import portkey_trace_ids
from .processor import ProcessorAttachment

_log = logging.getLogger(__name__)

# Set while ``opentelemetry-instrument`` loads instrumentors (pre/post-instrument entry points):
# the httpx instrumentors may still be loaded after the bridge, so it waits before doing it itself.
_auto_instrumenting = False

_MARK = "_otel_portkey_hook"


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


# (class, method) -> (whether the class defined the method itself, the wrapper put there).
# Module-level: ``opentelemetry-instrument`` wraps them (pre-instrument) before any installation.
_wrapped: dict[tuple[type[Any], str], tuple[bool, object]] = {}
_with_our_hooks: set[type[Any]] = set()  # instrumented through the wrapper, not uninstrumented since


def _instrument_wrapper(client: Client) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        ours = client.hooks(client_hooks._bridge)
        kwargs = {**kwargs, **{key: _composed(kwargs.get(key), hook) for key, hook in ours.items()}}
        result = wrapped(*args, **kwargs)
        _with_our_hooks.add(type(instance))
        return result

    return wrapper


def _uninstrument_wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    _with_our_hooks.discard(type(instance))
    return wrapped(*args, **kwargs)


_wrapping = threading.Lock()  # attach and detach one at a time


def attach() -> list[str]:
    """Wrap ``instrument``/``uninstrument`` of every installed client instrumentor (once); returns
    the names of those already instrumented without the bridge's hooks."""
    with _wrapping:
        return _attach()


def _attach() -> list[str]:
    late = []
    for client in client_hooks.CLIENTS:
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
    with _wrapping:
        _detach()


def _detach() -> None:
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


class Installation:
    """Everything one ``instrument()`` put in place; :meth:`undo` takes it all out again."""

    def __init__(self, settings: PortkeySettings, tracer_provider: Any, meter_provider: Any) -> None:
        """Put it all in place; when any step fails, what was put in place is taken out again
        before the failure is raised."""
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.processor = ProcessorAttachment(settings.baggage_trust, tracer_provider)
        self.owned: tuple[type[Any], ...] = ()  # the httpx instrumentors instrumented here
        self.provider_watch: object = None  # the wrapper on trace.set_tracer_provider, while waiting
        # The wrapper on propagate.set_global_textmap: a propagator set after the bridge is wrapped at
        # once (inbound requests keep OTEL_PORTKEY_INBOUND_TRACE_CONTEXT, gateway ones lose baggage).
        self.textmap_watch: object = None
        try:
            attached = self.processor.attach()
            if not attached:
                _log.debug("otel-portkey: no SDK tracer provider yet; it is looked for on each gateway call")
            provider = tracer_provider or trace.get_tracer_provider()
            self.bridge = Bridge(
                settings,
                resource=getattr(provider, "resource", None),
                gateway_metrics=GatewayMetrics(meter_provider) if settings.metrics else None,
                processor_pending=None if attached else self.processor,
            )
            client_hooks.install_propagator(self.bridge)
            client_hooks.activate(self.bridge)
            for name in attach():
                warn_once(
                    f"{name} instrumented first",
                    f"otel-portkey: {name} was instrumented before the bridge, so its calls carry the "
                    f"Portkey ids but their spans do not get the gateway's answer; instrument {name} "
                    "after the bridge (opentelemetry-instrument does)",
                )
            _forks.watch(self)
            self.textmap_watch = wrapt.wrap_function_wrapper(propagate, "set_global_textmap", _rewrap_after)
            if not attached:
                self._watch_provider()
        except Exception:
            self.undo()
            raise

    def _watch_provider(self) -> None:
        """No SDK tracer provider yet (a gunicorn master; the worker sets one in ``post_fork``):
        ``opentelemetry.trace.set_tracer_provider`` is wrapped until one is set, so the processor is
        on it before the first span starts, and the first call is named and tagged as every later
        one. (Code that imported the function by name before the bridge calls it unwrapped: the
        provider is then found on the next inbound request or gateway call, and spans started
        before that are not seen.)"""

        def provider_set(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
            result = wrapped(*args, **kwargs)
            try:
                self.bridge.look_for_processor()
                if self.bridge.processor_pending is None:
                    self._unwatch_provider()
            except Exception as error:  # never raise into the app's set-up
                report_once("attaching to the tracer provider", error)
            return result

        self.provider_watch = wrapt.wrap_function_wrapper(trace, "set_tracer_provider", provider_set)

    def _unwatch_provider(self) -> None:
        watch, self.provider_watch = self.provider_watch, None
        if watch is not None and trace.set_tracer_provider is watch:
            unwrap(trace, "set_tracer_provider")

    def instrument_http_clients(self) -> None:
        """Instrument httpx and httpx2 if nobody has (LLM SDKs send through them) and the library is
        installed; the bridge's hooks come with it. One the user switched off in
        ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` stays off."""
        disabled = {
            name.strip() for name in os.environ.get(OTEL_PYTHON_DISABLED_INSTRUMENTATIONS, "").split(",")
        }
        for client in client_hooks.HTTPX_CLIENTS:
            cls = client.instrumentor_class()
            if cls is None or cls().is_instrumented_by_opentelemetry:
                continue
            if get_dependency_conflicts(cls().instrumentation_dependencies()) is not None:
                continue  # its library is not installed (or not a version it serves): nothing to bridge
            if client.name in disabled or "*" in disabled:
                _log.warning(
                    "otel-portkey: %s is in %s, so the bridge does not instrument it: only %s "
                    "clients you instrument yourself are bridged",
                    client.name,
                    OTEL_PYTHON_DISABLED_INSTRUMENTATIONS,
                    client.name,
                )
                continue
            cls().instrument(tracer_provider=self.tracer_provider)
            self.owned += (cls,)

    def flush(self) -> None:
        """Export what this installation's tracer and meter providers hold (the global ones unless
        ``instrument()`` was given its own)."""
        flush_providers(
            self.tracer_provider or trace.get_tracer_provider(),
            self.meter_provider or metrics.get_meter_provider(),
        )

    def undo(self) -> None:
        """Take out all of it; the processor is switched off (the SDK cannot remove one) and
        switched on again by the next ``instrument()``."""
        _forks.watch(None)
        self._unwatch_provider()
        watch, self.textmap_watch = self.textmap_watch, None
        if watch is not None and propagate.set_global_textmap is watch:
            unwrap(propagate, "set_global_textmap")
        if hasattr(self, "bridge"):
            self.bridge.processor_pending = None  # nothing attaches a processor after the undo
        for cls in self.owned:
            cls().uninstrument()
        self.owned = ()
        self.processor.detach()
        client_hooks.activate(None)
        detach()
        client_hooks.uninstall_propagator()


def _rewrap_after(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    """``propagate.set_global_textmap``, then the bridge's wrapper around what was set."""
    result = wrapped(*args, **kwargs)
    client_hooks.keep_installed()  # never raises
    return result


class _Forks:
    """What keeps the join in forked processes, registered once per process: a forked child gets
    every lock of the bridge's anew and no per-process cache (``os.register_at_fork``), and a
    ``multiprocessing`` child (fork or forkserver start: it leaves through ``os._exit``, so the
    SDK's ``atexit`` flush never runs) flushes the tracer and meter providers when its work is done.
    The flush is registered as a ``multiprocessing`` finaliser from its after-fork hook, which runs
    after the child clears the finalisers it inherited (one registered at fork time is lost)."""

    def __init__(self) -> None:
        self.installation: Installation | None = None
        self._registered = False

    def watch(self, installation: Installation | None) -> None:
        self.installation = installation
        if installation is None or self._registered:
            return
        self._registered = True
        os.register_at_fork(after_in_child=self._after_fork_in_child)
        multiprocessing.util.register_after_fork(self, _Forks._in_worker)

    def _after_fork_in_child(self) -> None:
        try:
            processor.after_fork_in_child()
            client_hooks.after_fork_in_child()
            portkey_trace_ids.after_fork_in_child()
            global _wrapping
            _wrapping = threading.Lock()
            if self.installation is not None:
                self.installation.bridge.forget_caches()
        except Exception as error:  # never raise into the child
            _log.debug("otel-portkey: resetting after fork failed (%s)", type(error).__name__)

    def _in_worker(self) -> None:
        installation = self.installation
        if installation is not None:  # last (after the pool's own finalisers), before os._exit
            multiprocessing.util.Finalize(None, installation.flush, exitpriority=-100)


def flush_providers(*providers: Any, timeout_millis: int = 10_000) -> None:
    """Export what the tracer and meter providers hold (a worker about to leave through
    ``os._exit``): the given ones, else the global ones; never raises."""
    for provider in providers or (trace.get_tracer_provider(), metrics.get_meter_provider()):
        flush = getattr(provider, "force_flush", None)
        if callable(flush):
            try:
                flush(timeout_millis)
            except Exception as error:
                kind = type(provider).__name__
                _log.debug("otel-portkey: flushing %s failed (%s)", kind, type(error).__name__)


_forks = _Forks()
_installation: Installation | None = None  # the one in place, if any


class PortkeyInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Bridges OTel traces and Portkey gateways over every OTel HTTP client instrumentation
    (httpx, httpx2, requests, urllib, urllib3, aiohttp-client), sync and async.

    ``instrument(tracer_provider=None, gateway_urls=None, trace_id_policy=None, metadata=None,
    jaeger_ui_url=None, trace_url_template=None, trusted_baggage_keys=None, metrics=None,
    meter_provider=None)``: arguments override the ``OTEL_PORTKEY_*`` environment; the metrics
    instruments come from ``meter_provider`` or the global one. It makes one :class:`Installation`
    (see the module docstring); ``uninstrument()`` is its ``undo()``.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def instrument(self, **kwargs: Any) -> Any:
        """Install the bridge; never raises.

        When installing fails, the bridge logs one warning, leaves nothing behind and does not
        count as instrumented, so a later ``instrument()`` tries again.
        """
        # BaseInstrumentor marks itself instrumented only after ``_instrument`` returns, so a
        # failure caught here leaves it uninstrumented with nothing more to do.
        try:
            return super().instrument(**kwargs)
        except Exception as error:  # the app must start with or without the bridge
            _log.warning(
                "otel-portkey: the bridge could not be installed (%s); the application runs without it",
                type(error).__name__,
            )
            if _log.isEnabledFor(logging.DEBUG):
                _log.debug("otel-portkey: installing failed\n%s", traceback_without_messages(error))
            with contextlib.suppress(Exception):
                self._uninstrument()
            return None

    def uninstrument(self, **kwargs: Any) -> Any:
        """Take the bridge out again; never raises."""
        try:
            return super().uninstrument(**kwargs)
        except Exception as error:
            _log.warning("otel-portkey: the bridge could not be fully removed (%s)", type(error).__name__)
            return None

    def _instrument(self, **kwargs: Any) -> None:
        global _installation
        settings = PortkeySettings.from_env(
            gateway_urls=kwargs.get("gateway_urls"),
            trace_id_policy=kwargs.get("trace_id_policy"),
            metadata=kwargs.get("metadata"),
            jaeger_ui_url=kwargs.get("jaeger_ui_url"),
            trace_url_template=kwargs.get("trace_url_template"),
            trusted_baggage_keys=kwargs.get("trusted_baggage_keys"),
            metrics=kwargs.get("metrics"),
            inbound_trace_context=kwargs.get("inbound_trace_context"),
        )
        _installation = Installation(settings, kwargs.get("tracer_provider"), kwargs.get("meter_provider"))
        if not _auto_instrumenting:
            _installation.instrument_http_clients()

    def instrument_http_clients(self) -> None:
        """See :meth:`Installation.instrument_http_clients` (nothing when not installed)."""
        if _installation is not None:
            _installation.instrument_http_clients()

    def _uninstrument(self, **kwargs: Any) -> None:
        global _installation
        installation, _installation = _installation, None
        if installation is not None:
            installation.undo()


def _auto_instrumentation_starting() -> None:
    """``opentelemetry_pre_instrument`` entry point: instrumentors are about to load, so the client
    instrumentors' ``instrument`` is wrapped now, whichever of them loads before the bridge."""
    global _auto_instrumenting
    _auto_instrumenting = True
    try:
        attach()
    except Exception as error:
        _log.warning("otel-portkey: could not prepare the HTTP client hooks (%s)", type(error).__name__)


def _auto_instrumentation_finished() -> None:
    """``opentelemetry_post_instrument`` entry point: instrument httpx if no instrumentor did."""
    global _auto_instrumenting
    _auto_instrumenting = False
    instrumentor = PortkeyInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        try:
            instrumentor.instrument_http_clients()
        except Exception as error:
            _log.warning("otel-portkey: could not instrument httpx (%s)", type(error).__name__)
