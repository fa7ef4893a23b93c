"""What a Portkey gateway derives from a request's headers: trace, parent, span, name, metadata.

Pure functions over the headers a request carried (as a recording hop saw them), one per kind of
gateway, so a test can check that every gateway reads a bridged request the same way:

* :func:`read_as_oss`: the OSS and self-hosted gateway read only ``x-portkey-*``; it parses
  ``x-portkey-metadata`` with ``JSON.parse`` and treats anything that is not a JSON object as ``{}``.
* :func:`read_as_hosted`: hosted Portkey as documented in "Tracing" → "W3C Trace Context Support"
  (https://portkey.ai/docs/product/observability/traces): from ``traceparent`` the trace id becomes
  the trace, the parent id the parent span, a new span id is made and the name is the method and
  path; from ``baggage`` every entry is URL-decoded and merged into the metadata, with
  ``x-portkey-metadata`` winning on equal keys; ``x-portkey-*`` headers win over ``traceparent``.

Where the documentation is silent, the reading takes the W3C baggage format at its word: entries
are separated by ``,``, properties after ``;`` are not part of the value, and keys and values are
percent-decoded as ``decodeURIComponent`` does (``+`` stays ``+``). An entry that does not decode
is kept raw, as a lenient server would.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote

NEW_SPAN: Final = "<new span id>"  # the gateway makes a span id of its own
MAX_VALUE_CHARS: Final = 128  # Portkey's metadata rule: string values of at most 128 characters


@dataclass(frozen=True)
class GatewayReading:
    """What a gateway takes from one request."""

    trace_id: str | None
    parent_span_id: str | None
    span_id: str | None
    span_name: str | None
    metadata: dict[str, Any] = field(default_factory=dict)

    def rule_breaks(self) -> list[str]:
        """Each metadata entry that breaks Portkey's rules (a string of at most 128 characters,
        no control characters), described; empty when all is well."""
        problems = []
        for key, value in self.metadata.items():
            if not isinstance(value, str):
                problems.append(f"{key!r}: not a string ({type(value).__name__})")
            elif len(value) > MAX_VALUE_CHARS:
                problems.append(f"{key!r}: {len(value)} characters")
            elif any(c < " " or c == "\x7f" or "\x80" <= c < "\xa0" for c in value):
                problems.append(f"{key!r}: a control character")
        return problems


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _json_object(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        parsed = json.loads(text)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def read_as_oss(headers: Mapping[str, str]) -> GatewayReading:
    """The OSS / self-hosted gateway's reading: ``x-portkey-*`` only."""
    sent = _lower(headers)
    return GatewayReading(
        trace_id=sent.get("x-portkey-trace-id"),
        parent_span_id=sent.get("x-portkey-parent-span-id"),
        span_id=sent.get("x-portkey-span-id"),
        span_name=sent.get("x-portkey-span-name"),
        metadata=_json_object(sent.get("x-portkey-metadata")),
    )


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """``(trace id, parent id)`` of a W3C ``traceparent``, or None when it is not one."""
    if not value:
        return None
    parts = value.strip().split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    trace_id, parent_id = parts[1].lower(), parts[2].lower()
    hex_digits = set("0123456789abcdef")
    if not set(trace_id + parent_id) <= hex_digits or set(trace_id) == {"0"} or set(parent_id) == {"0"}:
        return None
    return trace_id, parent_id


def parse_baggage(value: str | None) -> dict[str, str]:
    """The entries of a W3C ``baggage`` header, percent-decoded (later duplicates win)."""
    entries: dict[str, str] = {}
    for item in (value or "").split(","):
        pair = item.split(";", 1)[0]
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            continue
        entries[unquote(key.strip())] = unquote(raw.strip())
    return entries


def read_as_hosted(
    headers: Mapping[str, str], method: str = "POST", path: str = "/v1/chat/completions"
) -> GatewayReading:
    """Hosted Portkey's documented reading: ``x-portkey-*`` first, then ``traceparent`` and ``baggage``."""
    sent = _lower(headers)
    oss = read_as_oss(sent)
    w3c = parse_traceparent(sent.get("traceparent"))
    trace_id = oss.trace_id or (w3c[0] if w3c else None)
    parent = oss.parent_span_id or (w3c[1] if w3c else None)  # field by field, x-portkey-* first
    span_id = oss.span_id or (NEW_SPAN if trace_id else None)
    name = oss.span_name or (f"{method.upper()} {path}" if trace_id else None)
    metadata: dict[str, Any] = dict(parse_baggage(sent.get("baggage")))
    metadata.update(oss.metadata)  # x-portkey-metadata wins on equal keys
    return GatewayReading(trace_id, parent, span_id, name, metadata)
