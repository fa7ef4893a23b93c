"""The pure contract of the bridge's metrics: instrument names, bucket boundaries, and the one
data point's attributes for a call to a Portkey gateway, bounded so that no request or answer can
grow a metric without limit.

No I/O and no OpenTelemetry globals; property-tested (``tests/test_call_metrics.py``).
:func:`call_attributes` turns what the bridge saw of one call (the gateway's answer as span
attributes, the status, the exception, the gateway's host, the calling GenAI operation) into
attributes; :class:`AttributeBound` then bounds every value that came from a request or an answer,
in length and in distinct values, replacing the rest by ``_OTHER``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Final

from .call import (
    ATTR_CACHE_STATUS,
    ATTR_GATEWAY_EXCEPTION,
    ATTR_LAST_USED_OPTION_INDEX,
    ATTR_PROVIDER,
    ATTR_RETRY_ATTEMPT_COUNT,
)

METRIC_REQUEST_DURATION: Final = "portkey.gateway.request.duration"
METRIC_RETRIES: Final = "portkey.gateway.retries"

# Seconds. LLM calls through a gateway run from a cache hit (tens of milliseconds) to a long
# generation or a chain of retries and fallbacks (minutes); the OTel default (0-10 s, made for
# web requests) would put every slow call in one bucket.
DURATION_BUCKETS: Final = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)

ATTR_FALLBACK: Final = "portkey.fallback"
ATTR_STATUS_CODE: Final = "http.response.status_code"
ATTR_ERROR_TYPE: Final = "error.type"
ATTR_SERVER_ADDRESS: Final = "server.address"
ATTR_OPERATION: Final = "gen_ai.operation.name"
ATTR_MODEL: Final = "gen_ai.request.model"

# What the gateway flagged as its own failure (``x-portkey-gateway-exception: true``).
GATEWAY_EXCEPTION_ERROR: Final = "portkey.gateway_exception"

OTHER: Final = "_OTHER"
MAX_VALUE_CHARS: Final = 64
MAX_DISTINCT_VALUES: Final = 100
MAX_ATTRIBUTE_SETS: Final = 2000

# Attributes whose values come from a request or an answer: bounded. ``portkey.fallback`` is a
# bool the bridge derives, so it needs no bound.
BOUNDED: Final = (
    ATTR_PROVIDER,
    ATTR_CACHE_STATUS,
    ATTR_STATUS_CODE,
    ATTR_ERROR_TYPE,
    ATTR_SERVER_ADDRESS,
    ATTR_OPERATION,
    ATTR_MODEL,
)

_TARGET_INDEX = re.compile(r"\[\s*(\d+)\s*\]", re.ASCII)


def is_fallback(option_index: object, config: object = None) -> bool:
    """Whether the gateway's ``x-portkey-last-used-option-index`` names a fallback: a target other
    than the first of a ``fallback`` strategy. The OSS gateway answers paths such as ``config`` (no
    targets), ``config.targets[0]`` or ``config.targets[1]`` (nested: ``config.targets[0].targets[1]``);
    a bare number is an index. It writes the same paths for a ``loadbalance`` or ``conditional``
    strategy's pick, which is no fallback: when the call's own config (``x-portkey-config`` as JSON,
    parsed by :func:`routing_config`) says which strategy each level has, only an index past the
    first under ``fallback`` counts. Without it (a saved config's id), any index past the first does.
    """
    if isinstance(option_index, int) and not isinstance(option_index, bool):
        return option_index > 0 and _strategy(config) in (None, "fallback")
    if not isinstance(option_index, str):
        return False
    text = option_index.strip()
    if text.isascii() and text.isdecimal():
        return int(text) > 0 and _strategy(config) in (None, "fallback")
    node = config
    for index in (int(found) for found in _TARGET_INDEX.findall(text)):
        if index > 0 and _strategy(node) in (None, "fallback"):
            return True
        targets = node.get("targets") if isinstance(node, dict) else None
        node = targets[index] if isinstance(targets, list) and index < len(targets) else None
    return False


def _strategy(node: object) -> str | None:
    """The strategy mode of one level of a routing config; None when unknown."""
    strategy = node.get("strategy") if isinstance(node, dict) else None
    mode = strategy.get("mode") if isinstance(strategy, dict) else None
    return mode.strip().lower() if isinstance(mode, str) else None


@functools.lru_cache(maxsize=64)
def routing_config(text: str | None) -> dict[str, object] | None:
    """A call's ``x-portkey-config`` when it is an inline JSON object (an app sends the same few
    again and again, so the parse is kept); None for a saved config's id or anything else."""
    if not text or not text.lstrip().startswith("{"):
        return None
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None


def retry_count(answer: Mapping[str, object]) -> int:
    """The retries to add for one call: the gateway's count, or 0 when it is missing or negative
    (``answer_attributes`` already ignores a count of more than six characters)."""
    count = answer.get(ATTR_RETRY_ATTEMPT_COUNT)
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 0


def error_type(status_code: int | None, gateway_exception: bool, exception: str | None) -> str | None:
    """``error.type`` of a call, as the HTTP semantic conventions spell it: the exception's class
    name when the call raised; the gateway's own flag when it answered with one; the status code
    (as text) for an answer of 400 or more; None for a call that succeeded."""
    if exception:
        return exception
    if gateway_exception:
        return GATEWAY_EXCEPTION_ERROR
    if status_code is not None and status_code >= 400:
        return str(status_code)
    return None


def call_attributes(
    answer: Mapping[str, object],
    status_code: int | None,
    exception: str | None,
    server_address: str | None,
    operation: object = None,
    model: object = None,
    config: object = None,
) -> dict[str, str | int | bool]:
    """The attributes of one call's data point (unbounded: pass them through :class:`AttributeBound`).

    ``answer`` holds the span attributes read from the gateway's answer (``answer_attributes``);
    only the provider, the cache status and the option index are taken from it, never its trace
    id, metadata or anything that identifies a user or a request. ``operation`` and ``model`` are
    the calling GenAI span's ``gen_ai.operation.name`` / ``gen_ai.request.model`` (non-text is
    ignored); ``config`` the call's routing config, if known (see :func:`is_fallback`).
    """
    attributes: dict[str, str | int | bool] = {
        ATTR_FALLBACK: is_fallback(answer.get(ATTR_LAST_USED_OPTION_INDEX), config),
    }
    for key in (ATTR_PROVIDER, ATTR_CACHE_STATUS):
        value = answer.get(key)
        if isinstance(value, str) and value:
            attributes[key] = value
    if status_code is not None:
        attributes[ATTR_STATUS_CODE] = status_code
    error = error_type(status_code, answer.get(ATTR_GATEWAY_EXCEPTION) is True, exception)
    if error is not None:
        attributes[ATTR_ERROR_TYPE] = error
    if server_address:
        attributes[ATTR_SERVER_ADDRESS] = server_address
    if isinstance(operation, str) and operation:
        attributes[ATTR_OPERATION] = operation
    if isinstance(model, str) and model:
        attributes[ATTR_MODEL] = model
    return attributes


class AttributeBound:
    """Bounds the values of :data:`BOUNDED` attributes: each is cut to ``max_chars`` characters,
    and once an attribute has had ``max_distinct`` distinct values, any value not among them
    becomes ``_OTHER``. On top of that, once ``max_sets`` distinct attribute sets (series) have
    been seen, a new set has every bounded value replaced by ``_OTHER``. So one instrument's series
    stay bounded however many models, providers or hostile answers there are, and the bound's own
    memory is at most ``max_distinct`` values per attribute and ``max_sets`` sets (threads racing at
    a limit may each add one more). The first values seen are the ones kept.
    """

    def __init__(
        self,
        max_chars: int = MAX_VALUE_CHARS,
        max_distinct: int = MAX_DISTINCT_VALUES,
        max_sets: int = MAX_ATTRIBUTE_SETS,
    ) -> None:
        self.max_chars = max_chars
        self.max_distinct = max_distinct
        self.max_sets = max_sets
        self._seen: dict[str, set[str | int]] = {key: set() for key in BOUNDED}
        self._sets: set[tuple[tuple[str, str | int | bool], ...]] = set()

    def bound(self, attributes: dict[str, str | int | bool]) -> dict[str, str | int | bool]:
        """``attributes`` with every bounded value within the bound (changed in place, returned)."""
        return self.bound_series(attributes)[0]

    def bound_series(
        self, attributes: dict[str, str | int | bool]
    ) -> tuple[dict[str, str | int | bool], bool]:
        """:meth:`bound`, and whether the resulting attribute set is one not seen before (a new
        series, the all-``_OTHER`` set included the first time)."""
        for key, seen in self._seen.items():
            value = attributes.get(key)
            if value is None or (value in seen and type(value) is not bool):
                continue
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                attributes[key] = OTHER
                continue
            if isinstance(value, str) and len(value) > self.max_chars:
                value = value[: self.max_chars]
                if value in seen:
                    attributes[key] = value
                    continue
            if len(seen) < self.max_distinct:
                seen.add(value)  # one ``set.add``
            else:
                value = OTHER
            attributes[key] = value
        series = tuple(attributes.items())
        if series in self._sets:
            return attributes, False
        if len(self._sets) >= self.max_sets:
            for key in BOUNDED:
                if key in attributes:
                    attributes[key] = OTHER
            series = tuple(attributes.items())
            if series in self._sets:
                return attributes, False
        self._sets.add(series)  # at most one all-_OTHER set per shape past the bound
        return attributes, True

    def distinct(self, key: str) -> int:
        """How many distinct values of ``key`` are kept."""
        return len(self._seen.get(key, ()))

    @property
    def series(self) -> int:
        """How many distinct attribute sets are kept."""
        return len(self._sets)
