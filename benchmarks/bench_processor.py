"""PortkeySpanProcessor cost per span (on_start + on_end), with and without context metadata."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from harness import interleave, table, timed
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span, SpanProcessor, TracerProvider

from otel_portkey import PortkeySpanProcessor, portkey_metadata


class _AttributesOnly(SpanProcessor):
    """The floor: a processor that only stores the same two metadata attributes through the SDK."""

    ATTRIBUTES: ClassVar[dict[str, str]] = {
        "portkey.metadata._user": "u-1",
        "portkey.metadata.session": "s-1",
    }

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        span.set_attributes(self.ATTRIBUTES)


def _no_setup() -> Callable[[], None]:
    return lambda: None


def bench(count: int, rounds: int) -> tuple[str, dict[str, float]]:
    without, with_processor, floor = TracerProvider(), TracerProvider(), TracerProvider()
    with_processor.add_span_processor(PortkeySpanProcessor())
    floor.add_span_processor(_AttributesOnly())
    tracers = {
        "no processor": without.get_tracer("b"),
        "PortkeySpanProcessor": with_processor.get_tracer("b"),
        "floor": floor.get_tracer("b"),
    }
    results: dict[str, float] = {}
    rows = []
    for label, metadata in (("no metadata", False), ("context metadata", True)):

        def run(name: str, metadata: bool = metadata) -> tuple[float, float]:
            tracer = tracers[name]

            def one() -> None:
                tracer.start_span("span").end()

            if metadata:
                with portkey_metadata(_user="u-1", session="s-1"):
                    return timed(count, one)
            return timed(count, one)

        measured = interleave({name: _no_setup for name in tracers}, run, rounds)
        added = measured["PortkeySpanProcessor"][0] - measured["no processor"][0]
        results[label] = added
        rows.append(
            [
                label,
                f"{measured['no processor'][0] * 1e9:,.0f} ns",
                f"{measured['PortkeySpanProcessor'][0] * 1e9:,.0f} ns",
                f"{added * 1e9:,.0f} ns",
                f"{(measured['floor'][0] - measured['no processor'][0]) * 1e9:,.0f} ns" if metadata else "—",
            ]
        )
    header = [
        "context",
        "span start+end, no processor",
        "with PortkeySpanProcessor",
        "added per span",
        "SDK floor: storing the 2 attributes",
    ]
    return table(f"Span processor ({count} spans x {rounds} rounds, CPU medians)", header, rows), results
