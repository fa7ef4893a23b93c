"""``PortkeyInstrumentor``: the bridge's entry point (``otel_portkey`` in ``opentelemetry_instrumentor``)."""

from __future__ import annotations

import contextlib
import logging
import os
import weakref
from collections.abc import Collection
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.dependencies import get_dependency_conflicts
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.sdk.trace import TracerProvider

from ..config import PortkeySettings
from ..environment_variables import OTEL_PYTHON_DISABLED_INSTRUMENTATIONS
from . import client_hooks, propagator
from .bridge import Bridge
from .diagnostics import warn_once
from .metrics import GatewayMetrics
from .processor import PortkeySpanProcessor
from .sdk_internals import span_processors

_log = logging.getLogger(__name__)

# Set while ``opentelemetry-instrument`` loads instrumentors (pre/post-instrument entry points):
# the httpx instrumentors may still be loaded after the bridge, so it waits before doing it itself.
_auto_instrumenting = False


class PortkeyInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Bridges OTel traces and Portkey gateways over every OTel HTTP client instrumentation
    (httpx, httpx2, requests, urllib, urllib3, aiohttp-client), sync and async.

    ``instrument(tracer_provider=None, gateway_urls=None, trace_id_policy=None, metadata=None,
    jaeger_ui_url=None, trace_url_template=None, trusted_baggage_keys=None, metrics=None,
    meter_provider=None)``: arguments override the ``OTEL_PORTKEY_*`` environment; the metrics
    instruments come from ``meter_provider`` or the global one. Installing it adds the bridge's
    hooks to client instrumentations made from then on (``client_hooks``), wraps the global propagator
    (``propagator``), gives an SDK tracer provider a ``PortkeySpanProcessor`` (unless one is there
    already), and instruments httpx/httpx2 itself when nobody else does and they are installed, so
    no HTTP span is ever doubled. ``uninstrument()`` undoes all of it; the processor it added is
    switched off (the SDK cannot remove one) and switched on again by the next ``instrument()``.
    """

    # BaseInstrumentor is a per-class singleton whose constructor runs on every ``PortkeyInstrumentor()``:
    # state lives in class defaults, replaced on the instance by ``_instrument``.
    _owned: tuple[type[Any], ...] = ()  # the httpx instrumentors the bridge instrumented itself
    _tracer_provider: Any = None
    _switched_on: PortkeySpanProcessor | None = None  # the processor instrument() enabled or added

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
            metrics=kwargs.get("metrics"),
        )
        self._tracer_provider = kwargs.get("tracer_provider")
        provider = self._tracer_provider or trace.get_tracer_provider()
        self._switched_on = _processor_for(provider, settings)
        gateway_metrics = GatewayMetrics(kwargs.get("meter_provider")) if settings.metrics else None
        bridge = Bridge(
            settings, resource=getattr(provider, "resource", None), gateway_metrics=gateway_metrics
        )
        propagator.install(bridge)
        client_hooks.activate(bridge)
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
        if client_hooks._bridge() is None:  # not installed
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

    def _uninstrument(self, **kwargs: Any) -> None:
        for cls in self._owned:
            cls().uninstrument()
        self._owned = ()
        if self._switched_on is not None:
            self._switched_on.enabled = False
            self._switched_on = None
        client_hooks.activate(None)
        client_hooks.detach()
        propagator.uninstall()


def _processor_for(provider: Any, settings: PortkeySettings) -> PortkeySpanProcessor | None:
    """Switch on the provider's bridge processor, adding one if it has none; returns the one the
    bridge switched on (None: a processor the user added, which the bridge leaves as it is, or a
    provider that is not the SDK's, which takes none)."""
    if not isinstance(provider, TracerProvider):
        _log.debug("otel-portkey: no SDK tracer provider; gateway nodes get METHOD /path names")
        return None
    mine = _added.get(provider)
    if mine is not None:
        mine.baggage_trust, mine.enabled = settings.baggage_trust, True
        return mine
    if any(isinstance(p, PortkeySpanProcessor) and p.enabled for p in span_processors(provider)):
        return None  # the user's
    processor = PortkeySpanProcessor(baggage_trust=settings.baggage_trust)
    provider.add_span_processor(processor)
    _added[provider] = processor
    return processor


# Per provider, the processor the bridge added to it (kept, switched off, while uninstrumented).
_added: weakref.WeakKeyDictionary[Any, PortkeySpanProcessor] = weakref.WeakKeyDictionary()


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
