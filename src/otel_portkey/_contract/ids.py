"""Pure conversions between OpenTelemetry ids and the hex strings Portkey expects.

Portkey keeps ids only when they are W3C-shaped: 32 lowercase hex characters for a trace,
16 for a span, never all zeros.
"""

from __future__ import annotations


def format_trace_id(trace_id: int) -> str:
    """Render an OTel trace id as 32 lowercase hex characters."""
    return format(trace_id, "032x")


def format_span_id(span_id: int) -> str:
    """Render an OTel span id as 16 lowercase hex characters."""
    return format(span_id, "016x")


def is_trace_id(value: str) -> bool:
    """True for a W3C trace id: 32 lowercase hex characters, not all zeros."""
    return _is_hex_id(value, 32)


def is_span_id(value: str) -> bool:
    """True for a W3C span id: 16 lowercase hex characters, not all zeros."""
    return _is_hex_id(value, 16)


def _is_hex_id(value: str, length: int) -> bool:
    return len(value) == length and all(c in "0123456789abcdef" for c in value) and value.strip("0") != ""
