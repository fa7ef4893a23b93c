"""Reading any HTTP client's request headers through the mapping's public API, cheaply.

The OTel client instrumentations hand their hooks, and then ``inject``, the live header mapping of
the request: requests' ``CaseInsensitiveDict``, urllib's ``dict``, urllib3's ``HTTPHeaderDict``,
aiohttp's ``CIMultiDict`` (names in any case, ``str`` or ``bytes``). Every instrumented request
goes through :func:`header_names` and two substring searches, so that is one join in C; the rest
runs only for requests to a gateway.
"""

from __future__ import annotations

import contextlib
from typing import Any, Final

PORTKEY_NAME: Final = "\nx-portkey-"  # searched for in header_names(...)
BAGGAGE_NAME: Final = "\nbaggage\n"


def header_names(headers: Any) -> str:
    """The mapping's header names, lowercased, each between newlines (``"\\nname\\n...\\n"``):
    ``PORTKEY_NAME in names`` and ``BAGGAGE_NAME in names`` then ask one question each in C."""
    try:
        return ("\n" + "\n".join(headers) + "\n").lower()
    except TypeError:  # some names are bytes
        text = "\n".join(name.decode("latin-1") if isinstance(name, bytes) else str(name) for name in headers)
        return ("\n" + text + "\n").lower()


def _text(value: object) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def portkey_entries(headers: Any) -> tuple[dict[str, str], dict[str, str]]:
    """The mapping's ``x-portkey-*`` headers: lowercase name → value (repeats joined with ``", "``),
    and lowercase name → the name as the mapping spells it (a ``dict`` is case-sensitive)."""
    values: dict[str, str] = {}
    spelled: dict[str, str] = {}
    for key, value in headers.items():
        name = _text(key)
        lower = name.lower()
        if lower.startswith("x-portkey-"):
            text = _text(value)
            values[lower] = f"{values[lower]}, {text}" if lower in values else text
            spelled[lower] = name
    return values, spelled


def header_bytes(headers: Any) -> int:
    """The bytes the mapping's headers take on the wire, ``name: value\\r\\n`` each."""
    try:
        return sum(map(len, headers)) + sum(map(len, headers.values())) + 4 * len(headers)
    except TypeError:  # a value that is not text (urllib accepts ints)
        return sum(len(_text(key)) + len(_text(value)) + 4 for key, value in headers.items())


def remove_baggage(headers: Any) -> None:
    """Delete every ``baggage`` header (any spelling, every copy) from the mapping."""
    for name in [key for key in headers if _text(key).lower() == "baggage"]:
        with contextlib.suppress(KeyError, TypeError):
            del headers[name]
