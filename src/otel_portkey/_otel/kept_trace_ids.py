"""The caller's own Portkey trace ids that the bridge kept, by OTel trace: written by the request
side, read by ``record_feedback``.

Under the ``respect`` policy a caller's ``x-portkey-trace-id`` (``createHeaders(trace_id=...)``)
groups the calls in Portkey, not the OTel trace id; feedback on "this trace" must then name the
caller's id. (The ids themselves are made and formatted in ``_contract.ids``: nothing is kept there.)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Final

MAX_TRACES: Final = 1024


class PortkeyTraceIds:
    """A bounded map from OTel trace id (hex) to the caller's Portkey trace id, newest kept."""

    def __init__(self, limit: int = MAX_TRACES) -> None:
        self._limit = limit
        self._ids: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, otel_trace_id: str, portkey_trace_id: str) -> None:
        with self._lock:
            self._ids[otel_trace_id] = portkey_trace_id
            self._ids.move_to_end(otel_trace_id)
            while len(self._ids) > self._limit:
                self._ids.popitem(last=False)

    def get(self, otel_trace_id: str) -> str | None:
        with self._lock:
            return self._ids.get(otel_trace_id)

    def after_fork_in_child(self) -> None:
        """A forked child starts with the lock free (a fork taken while a thread held it would hang)."""
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._ids)


portkey_trace_ids = PortkeyTraceIds()
