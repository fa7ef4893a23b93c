"""``portkey_metadata(...)``: Portkey metadata for everything inside a block.

The entries are kept under a context key of the bridge's own, so they follow the trace across
threads and tasks that copy the context, and nothing from outside the process can set them: a
``baggage`` header from an upstream caller is untrusted input and becomes no Portkey metadata
unless the operator trusts its keys (``_contract.baggage_trust``).

The same entries are also put into OTel baggage (``portkey.metadata.<key>``), so they travel on to
downstream services that are not Portkey in the ``baggage`` header: do not put anything there that
those services must not see. Requests to a Portkey gateway carry them once, in ``x-portkey-metadata``
(the propagator keeps baggage off those requests).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Final

from opentelemetry import baggage, context
from opentelemetry.context import Context, get_value

from .._contract.baggage_trust import BAGGAGE_PREFIX, BaggageTrust
from .._contract.call import MetadataItems
from .._contract.metadata import MAX_ENTRIES, clean_key, clean_value
from .sdk_internals import baggage_entries

_LOCAL_METADATA: Final = context.create_key("otel-portkey.metadata")
NO_TRUST: Final = BaggageTrust()


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
        added: dict[str, str] = {}
        for key, value in self._entries.items():
            safe_key = clean_key(key)
            if safe_key is not None:
                added[safe_key] = clean_value(value)
                ctx = baggage.set_baggage(BAGGAGE_PREFIX + safe_key, added[safe_key], ctx)
        # Most specific first: this block's entries, then the enclosing blocks' (which they override).
        outer = get_value(_LOCAL_METADATA, ctx) or ()
        items = (*added.items(), *((k, v) for k, v in outer if k not in added))  # type: ignore[attr-defined]
        ctx = context.set_value(_LOCAL_METADATA, items[:MAX_ENTRIES], ctx)
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


_EMPTY: MetadataItems = ()
# The last baggage seen and the trusted metadata derived from it: spans and calls inside one request
# share their baggage, so this one-entry cache answers almost every lookup (checked by content).
_last: tuple[BaggageTrust, dict[str, object], MetadataItems] = (NO_TRUST, {}, _EMPTY)


def context_metadata(ctx: Context | None = None, trust: BaggageTrust = NO_TRUST) -> MetadataItems:
    """The Portkey metadata in ``ctx`` (default: the current context) as ``(key, value)`` pairs.

    ``portkey_metadata(...)`` entries first (most specific first), then, only when ``trust`` names
    them, baggage entries (``portkey.metadata.<key>``, ``enduser.id`` as ``_user``, ...), at most
    64 in all. The result is hashable, so callers can cache what they derive from it.
    """
    local: MetadataItems = get_value(_LOCAL_METADATA, ctx) or _EMPTY  # type: ignore[assignment]
    if not trust:
        return local
    trusted = _trusted_baggage(ctx, trust)
    if not trusted:
        return local
    if not local:
        return trusted
    keys = {key for key, _ in local}
    return (*local, *((k, v) for k, v in trusted if k not in keys))[:MAX_ENTRIES]


def _trusted_baggage(ctx: Context | None, trust: BaggageTrust) -> MetadataItems:
    global _last
    entries = baggage_entries(ctx)
    if not entries:
        return _EMPTY
    last_trust, source, items = _last
    if last_trust == trust and entries == source:
        return items
    items = tuple(trust.metadata(entries).items())
    _last = (trust, dict(entries), items)
    return items
