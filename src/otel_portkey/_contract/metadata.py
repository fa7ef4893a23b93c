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

MAX_VALUE_CHARS: Final = 128  # Portkey's rule for metadata values
MAX_KEY_CHARS: Final = 128
# Not Portkey's rule (its metadata guide sets no limit on the number of keys): every entry of
# context metadata also becomes a ``portkey.metadata.*`` attribute on every span in the block, and
# the SDK keeps at most 128 attributes per span by default. 64 leaves room for the span's own.
MAX_ENTRIES: Final = 64
# What the bridge may add to one request as ``x-portkey-metadata``, in bytes (the caller's own
# entries are never dropped). With the ids (at most about 420 bytes) the bridge adds at most 4.5 KB,
# and it takes ``baggage`` off gateway requests (up to 8 KB): a request the gateway accepted without
# the bridge stays under the OSS gateway's 16 KB header limit (Node's default) with it.
MAX_HEADER_BYTES: Final = 4096
TRUNCATION_MARK: Final = "…"

# Resource attributes Portkey understands under its own names.
RESOURCE_KEYS: Final = (
    ("deployment.environment.name", "_environment"),
    ("deployment.environment", "_environment"),
    ("service.name", "service"),
)


def _printable(text: str) -> str:
    """``text`` without the characters that are not printable (:meth:`str.isprintable`): C0 and C1
    controls, DEL, lone surrogates (which no OTLP encoder can encode), format characters such as
    bidi overrides, separators other than the space."""
    return text if text.isprintable() else "".join(c for c in text if c.isprintable())


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


def sanitise(entries: Mapping[Any, object], limit: int | None = MAX_ENTRIES) -> dict[str, str]:
    """Every entry made safe; at most ``limit`` entries (the first ones win); empty keys dropped."""
    clean: dict[str, str] = {}
    for key, value in entries.items():
        safe_key = clean_key(key)
        if safe_key is None or safe_key in clean:
            continue
        if limit is not None and len(clean) >= limit:
            break
        clean[safe_key] = clean_value(value)
    return clean


class MergedMetadata(NamedTuple):
    """The header to send (None: leave the request as it is) and the entries it carries."""

    header: str | None
    entries: dict[str, str]
    caller_header_invalid: bool = False
    made_safe: bool = False  # some entry broke Portkey's rules and was changed
    dropped: int = 0  # context entries left out to stay within the byte budget


def encode(entries: Mapping[str, str]) -> str:
    """The ``x-portkey-metadata`` value for already-sanitised entries (ASCII-only JSON)."""
    return json.dumps(dict(entries), ensure_ascii=True, separators=(",", ":"))


def _encoded_size(key: str, value: str) -> int:
    """Bytes one entry takes in :func:`encode`'s output, without the comma before it."""
    return len(json.dumps(key, ensure_ascii=True)) + 1 + len(json.dumps(value, ensure_ascii=True))


def merge(
    caller_header: str | None, context: Mapping[str, str], budget: int = MAX_HEADER_BYTES
) -> MergedMetadata:
    """Merge context metadata into a caller's ``x-portkey-metadata``; the caller's keys win.

    The caller's entries are made safe and placed first, then context entries whose keys the
    caller did not use, most specific first, while the header stays within ``budget`` bytes: the
    first entry that does not fit and every one after it are left out (``dropped``). The caller's
    own entries are never dropped. A caller header that is not a JSON object is kept exactly as
    sent and nothing is merged. With nothing to add, a caller header that already follows
    Portkey's rules is kept byte for byte (no JSON round trip); one that does not is re-encoded,
    made safe.
    """
    context_entries = sanitise(context)
    context_changed = context_entries != context
    if caller_header is None:
        entries: dict[str, str] = {}
        size = 2  # "{}"
    else:
        try:
            parsed = json.loads(caller_header)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            return MergedMetadata(None, {}, caller_header_invalid=True)
        entries = sanitise(parsed, limit=None)  # the caller's own: made safe, never cut
        size = len(encode(entries))
    caller_changed = caller_header is not None and entries != parsed
    caller_count = len(entries)
    dropped = 0
    for key, value in context_entries.items():
        if key in entries:
            continue
        if dropped:
            dropped += 1
            continue
        grown = size + _encoded_size(key, value) + (1 if entries else 0)
        if grown > budget:
            dropped = 1
            continue
        entries[key] = value
        size = grown
    added = len(entries) > caller_count
    made_safe = caller_changed or context_changed
    if (caller_header is None and not entries) or (
        caller_header is not None and not added and not caller_changed
    ):
        return MergedMetadata(None, entries, made_safe=made_safe, dropped=dropped)
    return MergedMetadata(encode(entries), entries, made_safe=made_safe, dropped=dropped)


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
