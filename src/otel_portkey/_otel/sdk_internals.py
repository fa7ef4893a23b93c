"""The OpenTelemetry SDK internals the bridge reads where the SDK has no public API: each probed once
against the public API, with a fallback, and tested (``tests/test_sdk_internals.py`` fails when a
pinned version changes either, and runs each fallback). Nothing here is ever written.

* ``TracerProvider._active_span_processor._span_processors``: the processors added to a provider,
  which the SDK does not list publicly. Read to find a ``PortkeySpanProcessor`` already there (the
  user's, or one an earlier ``instrument()`` added and switched off again), so the bridge reuses it
  instead of adding a second one. Fallback: none found, one is added.
* ``_real_instrument`` of the API's proxy instruments (what ``metrics.get_meter`` gives before a
  ``MeterProvider`` is set): None while no provider is there, so the bridge's metrics skip all their
  work until one is (an app that exports no metrics pays nothing for them). Fallback: the work is
  done, and the proxy drops it.
"""

from __future__ import annotations

from typing import Any


def _processors_layout() -> bool:
    """The SDK's multi-processor keeps the processors added to it in ``_span_processors`` (probed on
    one of its own, not on a provider: making a provider detects resources and registers atexit)."""
    try:
        from opentelemetry.sdk.trace import SpanProcessor, SynchronousMultiSpanProcessor

        multi = SynchronousMultiSpanProcessor()  # type: ignore[no-untyped-call]
        probe = SpanProcessor()
        multi.add_span_processor(probe)
        return multi._span_processors == (probe,)
    except Exception:
        return False


PROCESSORS_READABLE: bool | None = None  # probed on first use (only the instrumentor reads it)


def span_processors(provider: Any) -> tuple[Any, ...]:
    """The span processors added to an SDK tracer provider; () when they cannot be read."""
    global PROCESSORS_READABLE
    if PROCESSORS_READABLE is None:
        PROCESSORS_READABLE = _processors_layout()
    if not PROCESSORS_READABLE:
        return ()
    processors = getattr(getattr(provider, "_active_span_processor", None), "_span_processors", ())
    return processors if isinstance(processors, tuple) else ()


def waiting_for_provider(instrument: object) -> bool:
    """Whether ``instrument`` is the API's proxy with no ``MeterProvider`` behind it yet (whatever it
    records is dropped); False when that cannot be told."""
    return getattr(instrument, "_real_instrument", False) is None
