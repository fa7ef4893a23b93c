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


def is_event_stream(content_type: str | None) -> bool:
    """True for a ``text/event-stream`` content type (any parameters)."""
    return bool(content_type) and content_type.split(";", 1)[0].strip().lower() == "text/event-stream"  # type: ignore[union-attr]


def end_span_when_stream_closes(span: Span, stream: Any) -> bool:
    """Defer ``span.end()`` until ``stream`` is closed (sync ``close`` or async ``aclose``).

    Returns False when the span or stream cannot be wrapped: the span then ends as usual.
    """
    close: Callable[[], None] | None = getattr(stream, "close", None)
    aclose: Callable[[], Awaitable[None]] | None = getattr(stream, "aclose", None)
    if not span.is_recording() or (close is None and aclose is None):
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

    # The stream is patched first: if it cannot be (slots, no weak references), the span ends as
    # usual and whatever was patched does nothing.
    try:
        if close is not None:

            def close_then_end() -> None:
                try:
                    close()
                finally:
                    finish()

            stream.close = close_then_end
        if aclose is not None:

            async def aclose_then_end() -> None:
                try:
                    await aclose()
                finally:
                    finish()

            stream.aclose = aclose_then_end
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
