"""Pure Portkey metadata handling: sanitising entries and merging them into ``x-portkey-metadata``.

Portkey's rules: the header is a JSON object whose values are strings of at most 128 characters.
Entries that break a rule are made safe (stringified, control characters dropped, truncated with
a visible ``…``), never rejected. The header is written with ``ensure_ascii``, so whatever the
input, it holds printable ASCII only: no CR, LF or NUL can reach the wire.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, NamedTuple
from urllib.parse import unquote

MAX_VALUE_CHARS: Final = 128
MAX_KEY_CHARS: Final = 128
MAX_ENTRIES: Final = 64
TRUNCATION_MARK: Final = "…"
RESERVED_KEYS: Final = ("_user", "_environment", "_organisation", "_prompt")

# Resource attributes Portkey understands under its own names.
RESOURCE_KEYS: Final = (
    ("deployment.environment.name", "_environment"),
    ("deployment.environment", "_environment"),
    ("service.name", "service"),
)


def _printable(text: str) -> str:
    return "".join(c for c in text if c >= " " and c != "\x7f" and not 0x80 <= ord(c) < 0xA0)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + TRUNCATION_MARK


def clean_key(key: object) -> str | None:
    """A metadata key made safe: text without control characters, bounded; None when nothing is left."""
    text = _printable(key if isinstance(key, str) else str(key)).strip()
    return _truncate(text, MAX_KEY_CHARS) if text else None


def clean_value(value: object) -> str:
    """A metadata value made safe: a string of at most 128 printable characters.

    Numbers and booleans become their text, objects and lists compact JSON, None an empty string.
    """
    if isinstance(value, str):
        text = value
    elif value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = str(value)
    else:
        try:
            text = json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
        except (TypeError, ValueError):
            text = str(value)
    return _truncate(_printable(text), MAX_VALUE_CHARS)


def sanitise(entries: Mapping[Any, object]) -> dict[str, str]:
    """Every entry made safe; at most 64 entries (the first ones win); empty keys dropped."""
    clean: dict[str, str] = {}
    for key, value in entries.items():
        safe_key = clean_key(key)
        if safe_key is None or safe_key in clean:
            continue
        if len(clean) >= MAX_ENTRIES:
            break
        clean[safe_key] = clean_value(value)
    return clean


class MergedMetadata(NamedTuple):
    """The header to send (None: leave the request as it is) and the entries it carries."""

    header: str | None
    entries: dict[str, str]
    caller_header_invalid: bool = False
    made_safe: bool = False  # some entry broke Portkey's rules and was changed


def encode(entries: Mapping[str, str]) -> str:
    """The ``x-portkey-metadata`` value for already-sanitised entries (ASCII-only JSON)."""
    return json.dumps(dict(entries), ensure_ascii=True, separators=(",", ":"))


def merge(caller_header: str | None, context: Mapping[str, str]) -> MergedMetadata:
    """Merge context metadata into a caller's ``x-portkey-metadata``; the caller's keys win.

    The caller's entries are made safe and placed first, then context entries whose keys the
    caller did not use, up to the 64-entry cap. A caller header that is not a JSON object is kept
    exactly as sent and nothing is merged. With no context metadata, a caller header that already
    follows Portkey's rules is kept byte for byte (no JSON round trip); one that does not is
    re-encoded, made safe.
    """
    context_entries = sanitise(context)
    context_changed = context_entries != context
    if caller_header is None:
        if not context_entries:
            return MergedMetadata(None, {}, made_safe=context_changed)
        return MergedMetadata(encode(context_entries), context_entries, made_safe=context_changed)
    try:
        parsed = json.loads(caller_header)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        return MergedMetadata(None, {}, caller_header_invalid=True)
    entries = sanitise(parsed)
    caller_changed = entries != parsed
    if not context_entries and not caller_changed:
        return MergedMetadata(None, entries, made_safe=context_changed)
    for key, value in context_entries.items():
        if len(entries) >= MAX_ENTRIES:
            break
        entries.setdefault(key, value)
    return MergedMetadata(encode(entries), entries, made_safe=caller_changed or context_changed)


def parse_key_values(text: str) -> tuple[dict[str, str], list[str]]:
    """Parse ``key=value,key=value`` (the ``OTEL_RESOURCE_ATTRIBUTES`` form, percent-decoded).

    Returns the entries and the malformed items, which the caller reports.
    """
    entries: dict[str, str] = {}
    malformed: list[str] = []
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = unquote(key).strip()
        if not sep or not key:
            malformed.append(item.strip())
            continue
        entries[key] = unquote(value).strip()
    return entries, malformed


def from_resource(attributes: Mapping[str, object]) -> dict[str, str]:
    """Portkey metadata derived from resource attributes (environment and service name)."""
    derived: dict[str, str] = {}
    for attribute, key in RESOURCE_KEYS:
        value = attributes.get(attribute)
        if value is not None and key not in derived:
            derived[key] = clean_value(value)
    return derived
