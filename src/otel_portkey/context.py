"""``portkey_metadata(...)``: Portkey metadata for everything inside a block, as OTel baggage.

Baggage follows the OTel context, so the metadata follows the trace across threads and tasks
that copy the context, and, through the ``baggage`` header, into downstream services: do not
put anything there that those services must not see.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Final

from opentelemetry import baggage, context
from opentelemetry.context import Context, get_value

from .metadata import clean_key, clean_value, sanitise

BAGGAGE_PREFIX: Final = "portkey.metadata."
ENDUSER_ID: Final = "enduser.id"
_BAGGAGE_KEY: str | None = getattr(baggage, "_BAGGAGE_KEY", None)


class portkey_metadata:  # lower case: it reads as a function, ``with portkey_metadata(...):``
    """Add Portkey metadata for everything inside the block (``with`` or ``async with``).

    ``with portkey_metadata(_user="u1", session="s1"): ...``. Nested blocks merge, the inner
    value winning. Values are made safe as Portkey requires (strings, at most 128 characters).
    """

    def __init__(self, entries: Mapping[str, object] | None = None, /, **kwargs: object) -> None:
        self._entries = {**(entries or {}), **kwargs}
        self._token: object | None = None

    def __enter__(self) -> portkey_metadata:
        ctx: Context = context.get_current()
        for key, value in self._entries.items():
            safe_key = clean_key(key)
            if safe_key is not None:
                ctx = baggage.set_baggage(BAGGAGE_PREFIX + safe_key, clean_value(value), ctx)
        self._token = context.attach(ctx)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is not None:
            context.detach(self._token)  # type: ignore[arg-type]
            self._token = None

    async def __aenter__(self) -> portkey_metadata:
        return self.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(kind, error, tb)


MetadataItems = tuple[tuple[str, str], ...]
_EMPTY: MetadataItems = ()
# The last baggage seen and the metadata derived from it: spans and calls inside one block share
# their baggage, so this one-entry cache answers almost every lookup (checked by content).
_last: tuple[dict[str, object], MetadataItems] = ({}, _EMPTY)


def context_metadata(ctx: Context | None = None) -> MetadataItems:
    """The Portkey metadata in ``ctx`` (default: the current context) as ``(key, value)`` pairs.

    ``enduser.id`` becomes ``_user`` (an explicit ``_user`` entry wins). The result is hashable,
    so callers can cache what they derive from it.
    """
    global _last
    # Fast path, run for every span the processor sees: the SDK keeps baggage as a plain dict in
    # the context; reading it directly skips the read-only proxy ``baggage.get_all`` builds.
    entries = get_value(_BAGGAGE_KEY, ctx) if _BAGGAGE_KEY is not None else baggage.get_all(ctx)
    if not entries or not isinstance(entries, Mapping):
        return _EMPTY
    source, items = _last
    if entries == source:
        return items
    found: dict[object, object] = {
        key[len(BAGGAGE_PREFIX) :]: value
        for key, value in entries.items()
        if isinstance(key, str) and key.startswith(BAGGAGE_PREFIX)
    }
    user = entries.get(ENDUSER_ID)
    if user is not None:
        found = {"_user": user, **found}  # first, with an explicit ``_user`` entry's value
    # Baggage can arrive from an upstream service's header: every entry is made safe again, and
    # Portkey's 64-entry cap also bounds the attributes the processor puts on every span.
    items = tuple(sanitise(found).items())
    _last = (dict(entries), items)
    return items
