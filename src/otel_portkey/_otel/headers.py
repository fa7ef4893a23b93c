"""The one reader and writer of every HTTP client's header mappings, with its fast paths.

The OTel client instrumentations hand their hooks, and then ``inject``, the live header mapping of
the request: httpx's ``Headers``, requests' ``CaseInsensitiveDict``, urllib's ``dict``, urllib3's
``HTTPHeaderDict``, aiohttp's ``CIMultiDict`` (names in any case, ``str`` or ``bytes``). Every
instrumented request goes through :func:`header_names` and two substring searches, so that is one
join in C; the rest runs only for requests to a gateway.

It is also where the bridge relies on the HTTP clients' private header layouts (the SDK's are in
``sdk_internals``, the OTLP exporter's in ``exporter``), because three header classes are slow
through their public API on this hot path:

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
class) gets the public API. ``tests/test_headers.py`` fails loudly when a pinned version's layout
changes, and checks every fast answer against the public API's, so a silent fallback to the slow
path cannot go unnoticed.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Mapping
from typing import Any, Final

PORTKEY_NAME: Final = "\nx-portkey-"  # searched for in header_names(...)
BAGGAGE_NAME: Final = "\nbaggage\n"

_PROBE = "x-otel-portkey-probe"
_Layout = str  # "httpx-list", "requests-store", "urllib3-container" or "" (public API only)
_layouts: dict[type[Any], _Layout] = {}  # per header class, probed once: a probe builds an instance


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


def _text(value: object) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


# ---- the public API of any mapping ------------------------------------------------------------


def public_header_names(headers: Any) -> str:
    """The mapping's header names, lowercased, each between newlines (``"\\nname\\n...\\n"``):
    ``PORTKEY_NAME in names`` and ``BAGGAGE_NAME in names`` then ask one question each in C."""
    try:
        return ("\n" + "\n".join(headers) + "\n").lower()
    except TypeError:  # some names are bytes
        return ("\n" + "\n".join(map(_text, headers)) + "\n").lower()


def public_portkey_entries(headers: Any) -> tuple[dict[str, str], dict[str, str]]:
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


def public_header_bytes(headers: Any) -> int:
    """The bytes the mapping's headers take on the wire, ``name: value\\r\\n`` each."""
    try:
        return sum(map(len, headers)) + sum(map(len, headers.values())) + 4 * len(headers)
    except TypeError:  # a value that is not text (urllib accepts ints)
        return sum(len(_text(key)) + len(_text(value)) + 4 for key, value in headers.items())


# ---- the same answers, from the store where the layout is known ------------------------------


def _httpx_entries(headers: Any, also: tuple[bytes, ...] = ()) -> dict[str, str]:
    """The ``x-portkey-*`` headers (and any named in ``also``) from httpx's ``(raw name, lowercase
    name, value)`` triples in one pass: lowercase names are already there, values are decoded as
    latin-1 (as httpx decodes them), repeats are joined with ``", "``, and no ``raw`` list is built."""
    found: dict[str, str] = {}
    for _, name, raw_value in headers._list:
        if name.startswith(b"x-portkey-") or name in also:
            key = name.decode("latin-1")
            value = raw_value.decode("latin-1")
            found[key] = f"{found[key]}, {value}" if key in found else value
    return found


def header_names(headers: Any) -> str:
    """:func:`public_header_names`, from the store when the layout is known."""
    kind = layout(headers)
    if kind == "httpx-list":
        return (b"\n" + b"\n".join([entry[1] for entry in headers._list]) + b"\n").decode("latin-1")
    if kind == "requests-store":
        return "\n" + "\n".join(headers._store) + "\n"
    if kind == "urllib3-container":
        return "\n" + "\n".join(headers._container) + "\n"
    return public_header_names(headers)


def has_portkey_header(headers: Any) -> bool:
    """True when a header mapping (any client's kind) has an ``x-portkey-*`` name."""
    return hasattr(headers, "keys") and PORTKEY_NAME in header_names(headers)


def header_bytes(headers: Any) -> int:
    """:func:`public_header_bytes`, from the store when the layout is known."""
    kind = layout(headers)
    if kind == "httpx-list":
        entries = headers._list
        return sum(len(raw) + len(value) for raw, _, value in entries) + 4 * len(entries)
    if kind == "requests-store":
        store = headers._store
        return sum(map(len, itertools.chain.from_iterable(store.values()))) + 4 * len(store)
    if kind == "urllib3-container":
        container = headers._container
        if sum(map(len, container.values())) == 2 * len(container):  # one value per name
            return sum(map(len, itertools.chain.from_iterable(container.values()))) + 4 * len(container)
        # A repeated name goes out as one line per value, which only ``items()`` lists.
        return sum(len(name) + len(value) + 4 for name, value in headers.items())
    return public_header_bytes(headers)


def portkey_entries(headers: Any) -> tuple[dict[str, str], dict[str, str]]:
    """:func:`public_portkey_entries`, from the store when the layout is known."""
    kind = layout(headers)
    if kind == "httpx-list":
        values = _httpx_entries(headers)
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
    return public_portkey_entries(headers)


def header_getter(headers: Any) -> Callable[[str], str | None]:
    """A lookup of one header by its lowercase name (repeats joined with ``", "`` where the
    mapping keeps them apart), from the store when the layout is known, else ``headers.get``
    (case-insensitive in every client's response headers; a plain ``dict`` is lowercased first)."""
    kind = layout(headers)
    if kind == "httpx-list":  # one pass over the triples instead of a scan per lookup
        return _httpx_entries(headers, also=(b"content-type",)).get
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


# ---- writing ----------------------------------------------------------------------------------


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


def remove_baggage(headers: Any) -> None:
    """Delete every ``baggage`` header (any spelling, every copy) from the mapping."""
    for name in [key for key in headers if _text(key).lower() == "baggage"]:
        with contextlib.suppress(KeyError, TypeError):
            del headers[name]
