"""Which baggage the operator trusts as Portkey metadata (``OTEL_PORTKEY_TRUSTED_BAGGAGE_KEYS``).

Baggage is untrusted input: any client of a public service can send a ``baggage`` header, and a
server instrumentation puts its entries into the context as if the process had set them. Portkey
uses metadata (``_user`` above all) for per-user analytics and, on hosted Portkey, for usage and
rate-limit policies, so by default **no baggage entry becomes Portkey metadata**: metadata comes
only from ``portkey_metadata(...)`` (kept under a context key of the bridge's own, which no header
can set), settings, the resource and the caller's own headers.

Inside one trust domain (services of the same system behind an edge that strips baggage from
outside) an operator can name the baggage keys to trust; a ``*`` at the end matches a prefix, and
``*`` alone trusts every key. Trusted entries map to metadata keys the way ``portkey_metadata``
writes them: ``portkey.metadata.<key>`` → ``<key>``, ``enduser.id`` → ``_user``, any other key as is.
Consequence of turning it on: whoever can reach the service can set those metadata keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from .metadata import sanitise

BAGGAGE_PREFIX: Final = "portkey.metadata."
ENDUSER_ID: Final = "enduser.id"


@dataclass(frozen=True)
class BaggageTrust:
    """The baggage keys trusted as Portkey metadata: exact ``keys`` and key ``prefixes``."""

    keys: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> BaggageTrust:
        """``portkey.metadata.*,enduser.id`` → trust that prefix and that key; blank → trust nothing."""
        keys: set[str] = set()
        prefixes: list[str] = []
        for item in (text or "").split(","):
            item = item.strip()
            if item.endswith("*"):
                prefixes.append(item[:-1])
            elif item:
                keys.add(item)
        return cls(frozenset(keys), tuple(dict.fromkeys(prefixes)))

    def __bool__(self) -> bool:
        return bool(self.keys or self.prefixes)

    def trusts(self, key: str) -> bool:
        return key in self.keys or key.startswith(self.prefixes)

    def metadata(self, entries: Mapping[str, object]) -> dict[str, str]:
        """The trusted entries of a baggage mapping, as sanitised Portkey metadata.

        An explicit ``portkey.metadata._user`` wins over ``enduser.id``.
        """
        found: dict[object, object] = {}
        user: object = None
        for key, value in entries.items():
            if not isinstance(key, str) or not self.trusts(key):
                continue
            if key == ENDUSER_ID:
                user = value
            elif key.startswith(BAGGAGE_PREFIX):
                found[key[len(BAGGAGE_PREFIX) :]] = value
            else:
                found.setdefault(key, value)
        if user is not None and "_user" not in found:
            found = {"_user": user, **found}
        return sanitise(found)
