"""``PortkeySpanProcessor``: Portkey metadata on every span, and the live spans by id."""

from __future__ import annotations

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from .baggage_trust import BaggageTrust
from .context import NO_TRUST, MetadataItems, context_metadata
from .headers import ATTR_METADATA_PREFIX
from .hooks import report_once

DEFAULT_MAX_LIVE_SPANS = 10_000


class PortkeySpanProcessor(SpanProcessor):
    """Copies the context's Portkey metadata onto every span, and knows the live spans.

    Consequences: every span started inside ``portkey_metadata(...)`` gets ``portkey.metadata.<key>``
    attributes, so Jaeger can find a trace by user or session; spans without such context get
    nothing. Baggage, which any caller of a service can send, tags spans only for the keys named in
    ``baggage_trust`` (none by default). Each live span is referenced until it ends,
    at most ``max_live_spans`` of them: past that, new spans are not registered and gateway calls
    under them are named ``METHOD /path``. The processor exports nothing.
    """

    def __init__(
        self, max_live_spans: int = DEFAULT_MAX_LIVE_SPANS, baggage_trust: BaggageTrust = NO_TRUST
    ) -> None:
        self._max_live_spans = max_live_spans
        self._trust = baggage_trust
        self._live: dict[int, Span] = {}
        self._attributes: dict[MetadataItems, dict[str, str]] = {}  # per metadata, built once

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        try:
            items = context_metadata(parent_context, self._trust)
            if items:
                attributes = self._attributes.get(items)
                if attributes is None:
                    if len(self._attributes) >= 256:
                        self._attributes.clear()
                    attributes = self._attributes[items] = {ATTR_METADATA_PREFIX + k: v for k, v in items}
                span.set_attributes(attributes)
            live = self._live
            if len(live) < self._max_live_spans:
                live[span.context.span_id] = span
        except Exception as error:  # the SDK does not guard processors: never raise into the app
            report_once("tagging a span with Portkey metadata", error)

    def on_end(self, span: ReadableSpan) -> None:
        try:
            context = span.context
            if context is not None:
                self._live.pop(context.span_id, None)
        except Exception as error:
            report_once("forgetting an ended span", error)

    def span_name_of(self, span_id: int) -> str | None:
        """The current name of the live span ``span_id``, if this processor saw it start."""
        span = self._live.get(span_id)
        return span.name if span is not None else None

    @property
    def live_span_count(self) -> int:
        """How many started spans have not ended yet (bounded by ``max_live_spans``)."""
        return len(self._live)

    def shutdown(self) -> None:
        self._live.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
