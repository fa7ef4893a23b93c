"""Pure mapping between an HTTP call's trace context and Portkey's headers.

No I/O and no OpenTelemetry globals: everything here takes plain values and returns plain values,
so it is tested exhaustively with property tests. The hooks feed it from live spans and requests.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Final, Literal, NamedTuple

from .ids import format_span_id, format_trace_id

PORTKEY_PREFIX: Final = "x-portkey-"

# Request headers the bridge writes.
TRACE_ID: Final = "x-portkey-trace-id"
PARENT_SPAN_ID: Final = "x-portkey-parent-span-id"
SPAN_ID: Final = "x-portkey-span-id"
SPAN_NAME: Final = "x-portkey-span-name"
METADATA: Final = "x-portkey-metadata"

# Response headers the bridge reads.
CACHE_STATUS: Final = "x-portkey-cache-status"
RETRY_ATTEMPT_COUNT: Final = "x-portkey-retry-attempt-count"
PROVIDER: Final = "x-portkey-provider"
LAST_USED_OPTION_INDEX: Final = "x-portkey-last-used-option-index"
GATEWAY_EXCEPTION: Final = "x-portkey-gateway-exception"

# Span attributes the bridge sets.
ATTR_TRACE_ID: Final = "portkey.trace_id"
ATTR_SPAN_ID: Final = "portkey.span_id"
ATTR_CACHE_STATUS: Final = "portkey.cache.status"
ATTR_RETRY_ATTEMPT_COUNT: Final = "portkey.retry.attempt_count"
ATTR_PROVIDER: Final = "portkey.provider"
ATTR_LAST_USED_OPTION_INDEX: Final = "portkey.last_used_option_index"
ATTR_GATEWAY_EXCEPTION: Final = "portkey.gateway.exception"
ATTR_METADATA_PREFIX: Final = "portkey.metadata."
ATTR_TRACE_URL: Final = "portkey.trace.url"

TraceIdPolicy = Literal["respect", "override"]

# Longest value copied from a response header into an attribute; real values are a few bytes.
MAX_ATTRIBUTE_CHARS: Final = 256


class CallIds(NamedTuple):
    """The ids of one gateway call, as sent in its headers."""

    trace_id: str
    parent_span_id: str
    span_id: str
    span_name: str


def gateway_prefix(url: str) -> str:
    """Normalise a configured gateway base URL for prefix matching (lowercase, no trailing slash)."""
    return url.strip().rstrip("/").lower()


def url_matches_gateway(url: str, prefixes: Iterable[str]) -> bool:
    """True when ``url`` starts with one of the normalised gateway ``prefixes`` at a path boundary.

    ``http://localhost:8787`` matches ``http://localhost:8787/v1/chat/completions`` but not
    ``http://localhost:87870/``.
    """
    lowered = url.lower()
    candidates = tuple(prefixes)
    if not lowered.startswith(candidates):  # one C call rules out almost every request
        return False
    for prefix in candidates:
        if lowered.startswith(prefix) and (len(lowered) == len(prefix) or lowered[len(prefix)] in "/?#"):
            return True
    return False


def portkey_headers(raw: Iterable[tuple[bytes, bytes]], also: tuple[bytes, ...] = ()) -> dict[str, str]:
    """The ``x-portkey-*`` headers (and any named in ``also``) of a raw header list, in one pass.

    Names come back lowercased; values are decoded as latin-1 (as httpx does) and repeated
    headers are joined with ``", "``. Scanning raw bytes once is much cheaper than repeated
    case-insensitive lookups on an httpx ``Headers`` object, and this runs on every request.
    """
    found: dict[str, str] = {}
    for raw_name, raw_value in raw:
        name = raw_name.lower()
        if name.startswith(b"x-portkey-") or name in also:
            key = name.decode("latin-1")
            value = raw_value.decode("latin-1")
            found[key] = f"{found[key]}, {value}" if key in found else value
    return found


def fallback_span_name(method: str, path: str) -> str:
    """``POST /v1/chat/completions``: the gateway node's name when the calling operation is unknown."""
    return f"{method.upper()} {path or '/'}"


def call_ids(trace_id: int, http_span_id: int, gateway_span_id: str, span_name: str) -> CallIds:
    """The ids a call carries: OTel trace, the HTTP span as parent, a fresh id for the gateway's node."""
    return CallIds(format_trace_id(trace_id), format_span_id(http_span_id), gateway_span_id, span_name)


_ID_HEADERS: Final = (TRACE_ID, PARENT_SPAN_ID, SPAN_ID, SPAN_NAME)  # in CallIds' order


def id_headers(ids: CallIds) -> dict[str, str]:
    """The four id headers of a call, as :func:`headers_to_set` gives them for a request that has none."""
    return dict(zip(_ID_HEADERS, ids, strict=True))


def headers_to_set(
    present: Callable[[str], str | None],
    ids: CallIds,
    policy: TraceIdPolicy = "respect",
) -> dict[str, str]:
    """The Portkey headers to add to a request, given a lookup of the headers it already has.

    A header the caller set is never replaced, except ``x-portkey-trace-id`` under the
    ``override`` policy. The result holds only values made of hex digits and the span name,
    which the caller sanitises.
    """
    wanted = {
        TRACE_ID: ids.trace_id,
        PARENT_SPAN_ID: ids.parent_span_id,
        SPAN_ID: ids.span_id,
        SPAN_NAME: ids.span_name,
    }
    return {
        name: value
        for name, value in wanted.items()
        if present(name) is None or (name == TRACE_ID and policy == "override")
    }


@functools.lru_cache(maxsize=256)
def safe_header_value(value: str, limit: int = 256) -> str:
    """Make a string safe as an HTTP header value: printable ASCII only, at most ``limit`` chars.

    Characters outside 0x20-0x7e (CR, LF, NUL, other controls, non-ASCII) become ``?``.
    Cached: span names repeat, and this runs on every call.
    """
    cleaned = "".join(c if " " <= c <= "~" else "?" for c in value[:limit])
    return cleaned.strip() or "?"


# Response headers copied as text. The option index is text too: gateways answer "0", "config" or
# a target path, so it is not parsed.
_TEXT_ATTRIBUTES: Final = (
    (CACHE_STATUS, ATTR_CACHE_STATUS),
    (PROVIDER, ATTR_PROVIDER),
    (LAST_USED_OPTION_INDEX, ATTR_LAST_USED_OPTION_INDEX),
)


def _bounded(value: str) -> str:
    return value[:MAX_ATTRIBUTE_CHARS]


def _as_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def response_attributes(response_header: Callable[[str], str | None]) -> dict[str, str | int | bool]:
    """Span attributes from a gateway's response headers.

    The trace id is there only when the gateway echoed a non-blank one (it then replaces the one
    recorded at request time). A non-integer retry count is ignored; strings are bounded in length.
    """
    attributes: dict[str, str | int | bool] = {}
    echoed = response_header(TRACE_ID)
    if echoed and echoed.strip():
        attributes[ATTR_TRACE_ID] = _bounded(echoed.strip())
    for header, attribute in _TEXT_ATTRIBUTES:
        value = response_header(header)
        if value:
            attributes[attribute] = _bounded(value)
    retries = _as_int(response_header(RETRY_ATTEMPT_COUNT))
    if retries is not None:
        attributes[ATTR_RETRY_ATTEMPT_COUNT] = retries
    exception = response_header(GATEWAY_EXCEPTION)
    if exception and exception.strip().lower() == "true":
        attributes[ATTR_GATEWAY_EXCEPTION] = True
    return attributes
