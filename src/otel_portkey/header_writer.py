"""Writing the bridge's headers into an httpx/httpx2 ``Headers`` object, cheaply.

``Headers.__setitem__`` scans every existing header to drop duplicates: five calls per request
cost more than the rest of the bridge's request hook. The bridge only adds headers it has just
seen to be absent, and their names and values are ASCII, so appending the ``(raw name, lowercase
name, value)`` triple httpx itself stores is exactly what ``__setitem__`` would do. That layout is
checked once per ``Headers`` class with the public API; any other class, or a future layout, gets
plain ``__setitem__``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_PROBE = "x-otel-portkey-probe"
_layout_ok: dict[type[Any], bool] = {}


def _stores_triples(cls: type[Any]) -> bool:
    try:
        probe = cls()
        probe[_PROBE] = "1"
        return getattr(probe, "_list", None) == [(_PROBE.encode(), _PROBE.encode(), b"1")]
    except Exception:
        return False


def add_absent(headers: Any, new: Mapping[str, str]) -> None:
    """Add ``new`` headers (lowercase ASCII names, ASCII values) that ``headers`` does not have."""
    cls = type(headers)
    fast = _layout_ok.get(cls)
    if fast is None:
        fast = _layout_ok[cls] = _stores_triples(cls)
    if fast:
        entries = headers._list
        for name, value in new.items():
            raw_name = name.encode("ascii")
            entries.append((raw_name, raw_name, value.encode("ascii")))
    else:
        for name, value in new.items():
            headers[name] = value
