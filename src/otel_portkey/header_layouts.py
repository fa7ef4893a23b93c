"""The one module that relies on other packages' private header layouts, each checked first.

Three header classes are slow through their public API on the bridge's hot path:

* httpx/httpx2 ``Headers.__setitem__`` scans every existing header to drop duplicates: five calls
  per request cost more than the rest of the request hook. The bridge only adds headers it has
  just seen to be absent, with ASCII names and values, so appending the ``(raw name, lowercase
  name, value)`` triple httpx itself stores (``_list``) is exactly what ``__setitem__`` would do.
  Its lowercase names, read from the same triples, are searched without decoding each one.
* requests' ``CaseInsensitiveDict`` and urllib3's ``HTTPHeaderDict`` list their names and values
  through Python generators; their stores (``_store``: lowercase name → ``(name, value)``;
  ``_container``: lowercase name → ``[name, value, ...]``) give the same answers in one C call.

Each layout is checked once per class by building a small instance with the public API and
comparing; a class whose layout differs (a future version, a subclass that changed it, any other
class) gets the public API. ``tests/test_header_layouts.py`` fails loudly when a pinned version's
layout changes, so a silent fallback to the slow path cannot go unnoticed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

from . import header_maps
from .headers import portkey_headers

_PROBE = "x-otel-portkey-probe"
_Layout = str  # "httpx-list", "requests-store", "urllib3-container" or "" (public API only)
_layouts: dict[type[Any], _Layout] = {}


def _layout_of(cls: type[Any]) -> _Layout:
    try:
        probe = cls()
        probe["X-Otel-Portkey-Probe"] = "1"
        private = probe.__dict__
    except Exception:
        return ""
    if private.get("_list") == [(b"X-Otel-Portkey-Probe", _PROBE.encode(), b"1")]:
        return "httpx-list"
    if dict(private.get("_store") or {}) == {_PROBE: ("X-Otel-Portkey-Probe", "1")}:
        return "requests-store"
    if private.get("_container") == {_PROBE: ["X-Otel-Portkey-Probe", "1"]}:
        return "urllib3-container"
    return ""


def layout(headers: Any) -> _Layout:
    """Which known private layout ``headers`` has ("" for none), checked once per class."""
    cls = type(headers)
    known = _layouts.get(cls)
    if known is None:
        known = _layouts[cls] = _layout_of(cls)
    return known


def add_absent(headers: Any, new: Mapping[str, str]) -> None:
    """Add ``new`` headers (lowercase ASCII names, ASCII values) that ``headers`` does not have."""
    if layout(headers) == "httpx-list":
        entries = headers._list
        for name, value in new.items():
            raw_name = name.encode("ascii")
            entries.append((raw_name, raw_name, value.encode("ascii")))
        return
    for name, value in new.items():
        headers[name] = value


def header_names(headers: Any) -> str:
    """:func:`header_maps.header_names`, from the store when the layout is known."""
    kind = layout(headers)
    if kind == "httpx-list":
        return (b"\n" + b"\n".join([entry[1] for entry in headers._list]) + b"\n").decode("latin-1")
    if kind == "requests-store":
        return "\n" + "\n".join(headers._store) + "\n"
    if kind == "urllib3-container":
        return "\n" + "\n".join(headers._container) + "\n"
    return header_maps.header_names(headers)


def header_bytes(headers: Any) -> int:
    """:func:`header_maps.header_bytes`, from the store when the layout is known."""
    kind = layout(headers)
    if kind == "httpx-list":
        raw = headers.raw
        return sum(map(len, itertools.chain.from_iterable(raw))) + 4 * len(raw)
    if kind == "requests-store":
        store = headers._store
        return sum(map(len, itertools.chain.from_iterable(store.values()))) + 4 * len(store)
    if kind == "urllib3-container":
        container = headers._container
        if sum(map(len, container.values())) == 2 * len(container):  # one value per name
            return sum(map(len, itertools.chain.from_iterable(container.values()))) + 4 * len(container)
        # A repeated name goes out as one line per value, which only ``items()`` lists.
        return sum(len(name) + len(value) + 4 for name, value in headers.items())
    return header_maps.header_bytes(headers)


def portkey_entries(headers: Any) -> tuple[dict[str, str], dict[str, str]]:
    """:func:`header_maps.portkey_entries`, from the store when the layout is known."""
    kind = layout(headers)
    if kind == "httpx-list":
        values = portkey_headers(headers.raw)
        return values, {name: name for name in values}  # its lookups ignore case
    if kind == "requests-store":
        found = [(lower, entry) for lower, entry in headers._store.items() if lower.startswith("x-portkey-")]
        return {lower: value for lower, (_, value) in found}, {lower: name for lower, (name, _) in found}
    if kind == "urllib3-container":
        found = [
            (lower, entry) for lower, entry in headers._container.items() if lower.startswith("x-portkey-")
        ]
        return {lower: ", ".join(entry[1:]) for lower, entry in found}, {
            lower: entry[0] for lower, entry in found
        }
    return header_maps.portkey_entries(headers)


def header_getter(headers: Any) -> Callable[[str], str | None]:
    """A lookup of one header by its lowercase name (repeats joined with ``", "`` where the
    mapping keeps them apart), from the store when the layout is known, else ``headers.get``
    (case-insensitive in every client's response headers; a plain ``dict`` is lowercased first)."""
    kind = layout(headers)
    if kind == "requests-store":
        store = headers._store

        def from_store(name: str) -> str | None:
            entry = store.get(name)
            return None if entry is None else entry[1]

        return from_store
    if kind == "urllib3-container":
        container = headers._container

        def from_container(name: str) -> str | None:
            entry = container.get(name)
            return None if entry is None else ", ".join(entry[1:])

        return from_container
    if isinstance(headers, dict):  # case-sensitive: looked up by lowercase name
        return {str(name).lower(): str(value) for name, value in headers.items()}.get
    return headers.get  # type: ignore[no-any-return]
