"""``PortkeyInstrumentor``: the bridge's entry point (``otel_portkey`` in ``opentelemetry_instrumentor``)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Collection
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.instrumentation.dependencies import get_dependency_conflicts
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.sdk.trace import TracerProvider

from . import client_hooks
from . import headers as h
from .config import PortkeySettings
from .environment_variables import OTEL_PYTHON_DISABLED_INSTRUMENTATIONS
from .hooks import PortkeyHooks, warn_once
from .processor import PortkeySpanProcessor
from .propagation import PortkeyPropagator

_log = logging.getLogger(__name__)

# Set while ``opentelemetry-instrument`` loads instrumentors (pre/post-instrument entry points):
# the httpx instrumentors may still be loaded after the bridge, so it waits before doing it itself.
_auto_instrumenting = False


class PortkeyInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Bridges OTel traces and Portkey gateways over every OTel HTTP client instrumentation
    (httpx, httpx2, requests, urllib, urllib3, aiohttp-client), sync and async.

    ``instrument(tracer_provider=None, gateway_urls=None, trace_id_policy=None, metadata=None,
    jaeger_ui_url=None, trace_url_template=None, trusted_baggage_keys=None)``: arguments override
    the ``OTEL_PORTKEY_*`` environment. Installing it wraps the global propagator (the request
    side, :mod:`otel_portkey.propagation`), adds the bridge's hooks to client instrumentations
    made from then on (the response side, :mod:`otel_portkey.client_hooks`), adds a
    ``PortkeySpanProcessor`` to an SDK tracer provider (unless one is there already), and
    instruments httpx/httpx2 itself when nobody else does, so no HTTP span is ever doubled.
    ``uninstrument()`` undoes all of it.
    """

    # BaseInstrumentor is a per-class singleton whose constructor runs on every ``PortkeyInstrumentor()``:
    # state lives in class defaults, replaced on the instance by ``_instrument``.
    _owned: tuple[type[Any], ...] = ()  # the httpx instrumentors the bridge instrumented itself
    _tracer_provider: Any = None
    _added_processor: tuple[Any, PortkeySpanProcessor] | None = None
    _propagator: PortkeyPropagator | None = None
    _replaced: tuple[PortkeyPropagator, ...] = ()  # earlier wrappers, perhaps still inside a composite

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def instrument(self, **kwargs: Any) -> Any:
        """Install the bridge (see the class docstring); never raises.

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
            with contextlib.suppress(Exception):
                self._uninstrument()
            return None

    def uninstrument(self, **kwargs: Any) -> Any:
        """Take the bridge out again (see the class docstring); never raises."""
        try:
            return super().uninstrument(**kwargs)
        except Exception as error:
            _log.warning("otel-portkey: the bridge could not be fully removed (%s)", type(error).__name__)
            return None

    def _instrument(self, **kwargs: Any) -> None:
        settings = PortkeySettings.from_env(
            gateway_urls=kwargs.get("gateway_urls"),
            trace_id_policy=kwargs.get("trace_id_policy"),
            metadata=kwargs.get("metadata"),
            jaeger_ui_url=kwargs.get("jaeger_ui_url"),
            trace_url_template=kwargs.get("trace_url_template"),
            trusted_baggage_keys=kwargs.get("trusted_baggage_keys"),
        )
        self._tracer_provider = kwargs.get("tracer_provider")
        provider = self._tracer_provider or trace.get_tracer_provider()
        processor, added = _processor_for(provider, settings)
        self._added_processor = (provider, processor) if added and processor is not None else None
        hooks = PortkeyHooks(
            settings,
            processor.caller_name if processor is not None else None,
            after_request=self._keep_propagator,
            resource=getattr(provider, "resource", None),
        )
        self._propagator = PortkeyPropagator(
            propagate.get_global_textmap(),
            lambda url: h.url_matches_gateway(url, settings.gateway_prefixes),
            hooks.on_portkey_request,
        )
        propagate.set_global_textmap(self._propagator)
        client_hooks.activate(hooks)
        for name in client_hooks.attach():
            warn_once(
                f"{name} instrumented first",
                f"otel-portkey: {name} was instrumented before the bridge, so its calls carry the Portkey "
                f"ids but their spans do not get the gateway's answer; instrument {name} after the bridge "
                "(opentelemetry-instrument does)",
            )
        self._owned = ()
        if not _auto_instrumenting:
            self.instrument_http_clients()

    def instrument_http_clients(self) -> None:
        """Instrument httpx and httpx2 if nobody has (LLM SDKs send through them) and the library is
        installed; the bridge's hooks come with it. One the user switched off in
        ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` stays off."""
        if self._propagator is None:  # not installed
            return
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
            cls().instrument(tracer_provider=self._tracer_provider)
            self._owned += (cls,)

    def _keep_propagator(self) -> None:
        """Wrap the global propagator again if something replaced it after the bridge was installed."""
        ours = self._propagator
        current = propagate.get_global_textmap()
        if ours is None or current is ours:
            return
        warn_once(
            "propagator replaced",
            "otel-portkey: the global propagator was replaced after the bridge was installed; "
            "wrapping the new one so that gateway requests still carry no baggage",
        )
        # A new wrapper around whatever is there now (a composite holding the old wrapper too: a
        # wrapper nested in another one only passes through), never a mutation of the old one.
        self._propagator = PortkeyPropagator(current, ours.url_is_gateway, ours.on_portkey_request)
        self._replaced += (ours,)
        propagate.set_global_textmap(self._propagator)

    def _uninstrument(self, **kwargs: Any) -> None:
        for cls in self._owned:
            cls().uninstrument()
        self._owned = ()
        if self._added_processor is not None:
            _remove_processor(*self._added_processor)
            self._added_processor = None
        client_hooks.activate(None)
        client_hooks.detach()
        if self._propagator is not None:
            for wrapper in (*self._replaced, self._propagator):
                wrapper.enabled = False
            if propagate.get_global_textmap() is self._propagator:  # else someone replaced it: keep theirs
                propagate.set_global_textmap(self._propagator.inner)
            self._propagator = None
            self._replaced = ()


def _processor_for(provider: Any, settings: PortkeySettings) -> tuple[PortkeySpanProcessor | None, bool]:
    """The provider's bridge processor and whether the bridge added it; (None, False) for a non-SDK one.

    A processor the user added by hand is found and reused (and never removed by the bridge).
    """
    if not isinstance(provider, TracerProvider):
        _log.debug("otel-portkey: no SDK tracer provider; gateway nodes get METHOD /path names")
        return None, False
    registered = getattr(getattr(provider, "_active_span_processor", None), "_span_processors", ())
    processor = next((p for p in registered if isinstance(p, PortkeySpanProcessor)), None)
    if processor is not None:
        return processor, False
    processor = PortkeySpanProcessor(baggage_trust=settings.baggage_trust)
    provider.add_span_processor(processor)
    return processor, True


def _remove_processor(provider: Any, processor: PortkeySpanProcessor) -> None:
    """Take the bridge's processor off the provider again.

    The SDK has no public way to remove a span processor; its multi-processor keeps them in a
    tuple it replaces under a lock, so the bridge does the same. If that layout is not there, the
    processor stays registered (harmless: it only names and tags spans) and is reused next time.
    """
    multi: Any = getattr(provider, "_active_span_processor", None)
    lock = getattr(multi, "_lock", None)
    if lock is None or not isinstance(getattr(multi, "_span_processors", None), tuple):
        return
    with lock:
        multi._span_processors = tuple(p for p in multi._span_processors if p is not processor)
    processor.shutdown()


def _auto_instrumentation_starting() -> None:
    """``opentelemetry_pre_instrument`` entry point: instrumentors are about to load, so the client
    instrumentors' ``instrument`` is wrapped now, whichever of them loads before the bridge."""
    global _auto_instrumenting
    _auto_instrumenting = True
    try:
        client_hooks.attach()
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
