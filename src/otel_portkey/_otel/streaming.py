"""Keep an HTTP span open while its response body streams.

The httpx instrumentation ends the CLIENT span as soon as the response headers arrive. For a
streamed chat completion (``text/event-stream``) that is before the first token, so the span
would say nothing about how long the stream took. :func:`end_span_when_stream_closes` defers the
span's end to the moment the body is fully read or closed early, with garbage collection of an
abandoned stream as the last resort.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry.trace import Span


def end_span_when_stream_closes(
    span: Span,
    stream: Any,
    sync_methods: tuple[str, ...] = ("close",),
    async_methods: tuple[str, ...] = ("aclose",),
) -> bool:
    """Defer ``span.end()`` until ``stream`` is closed: the first call of any of its
    ``sync_methods`` or ``async_methods`` (httpx streams: ``close``/``aclose``; an aiohttp
    response: ``close``/``release``), or its garbage collection as the last resort.

    Returns False when the span or stream cannot be wrapped: the span then ends as usual. An
    unsampled span is deferred too: its ``end`` may record the call's metrics point.
    """
    closers = {name: getattr(stream, name, None) for name in (*sync_methods, *async_methods)}
    if not any(callable(method) for method in closers.values()):
        return False

    real_end = span.end
    lock = threading.Lock()
    state = {"ended": False}

    def finish() -> None:
        with lock:
            if state["ended"]:
                return
            state["ended"] = True
        with contextlib.suppress(AttributeError):
            del span.end
        real_end()

    def end_later(end_time: int | None = None) -> None:
        """Stands in for ``span.end`` while the body streams: the instrumentation's call is ignored."""

    def sync_then_end(close: Callable[..., Any]) -> Callable[..., Any]:
        def closing(*args: Any, **kwargs: Any) -> Any:
            try:
                return close(*args, **kwargs)
            finally:
                finish()

        return closing

    def async_then_end(aclose: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def closing(*args: Any, **kwargs: Any) -> Any:
            try:
                return await aclose(*args, **kwargs)
            finally:
                finish()

        return closing

    # The stream is patched first: if it cannot be (slots, no weak references), the span ends as
    # usual and whatever was patched does nothing.
    try:
        for name in sync_methods:
            method = closers[name]
            if callable(method):
                setattr(stream, name, sync_then_end(method))
        for name in async_methods:
            method = closers[name]
            if callable(method):
                setattr(stream, name, async_then_end(method))
        weakref.finalize(stream, finish)
    except (AttributeError, TypeError):
        state["ended"] = True  # a half-patched stream must not end the span a second time
        return False
    try:
        span.end = end_later  # type: ignore[method-assign]
    except (AttributeError, TypeError):
        state["ended"] = True  # the span ends as usual; the patched stream must not end it again
        return False
    return True
