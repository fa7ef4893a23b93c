"""The pure contract of one call to a Portkey gateway: what its request must carry, what its answer
means.

No I/O and no OpenTelemetry globals: plain values in, plain values out, so every rule here is
property-tested (``tests/test_call.py``). :func:`plan_request` is the one step the request side
runs: from what a client's hook sees (the span's ids, the request's ``x-portkey-*`` entries and
header bytes, URL, method, the calling operation's name, the metadata in force) it makes the plan:
headers to add or replace, span attributes, and notes to give. :func:`answer_attributes` reads the
gateway's answer. Results are memoised where the inputs repeat (span names, metadata merges), which
is safe because every function here is pure.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Final, Literal, NamedTuple
from urllib.parse import urlsplit

from . import metadata as md
from .ids import format_span_id, format_trace_id

PORTKEY_PREFIX: Final = "x-portkey-"

# Request headers the bridge writes.
TRACE_ID: Final = "x-portkey-trace-id"
PARENT_SPAN_ID: Final = "x-portkey-parent-span-id"
SPAN_ID: Final = "x-portkey-span-id"
SPAN_NAME: Final = "x-portkey-span-name"
METADATA: Final = "x-portkey-metadata"
CONFIG: Final = "x-portkey-config"  # read (never written): a call's routing strategy, for its metrics

# Response headers the bridge reads.
CACHE_STATUS: Final = "x-portkey-cache-status"
RETRY_ATTEMPT_COUNT: Final = "x-portkey-retry-attempt-count"
PROVIDER: Final = "x-portkey-provider"
LAST_USED_OPTION_INDEX: Final = "x-portkey-last-used-option-index"
GATEWAY_EXCEPTION: Final = "x-portkey-gateway-exception"
CONTENT_TYPE: Final = "content-type"

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

# Longest value copied from a header into an attribute; real values are a few bytes.
MAX_ATTRIBUTE_CHARS: Final = 256
# The OSS gateway's Node server refuses (431) a request whose header section passes 16 KB. The
# metadata budget of a request shrinks so that what the bridge adds keeps it under that, with room
# for the request line and the ``traceparent`` the propagator adds after the hook.
GATEWAY_HEADER_LIMIT: Final = 16 * 1024
_RESERVED_BYTES: Final = 1024
_BUDGET_STEP: Final = 256  # budgets are rounded down to a step, so merges repeat and are memoised

MetadataItems = tuple[tuple[str, str], ...]  # (key, value) pairs, most specific first


# ---- which requests are bridged --------------------------------------------------------------


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


# ---- the request ------------------------------------------------------------------------------


class CallIds(NamedTuple):
    """The ids of one gateway call, as sent in its headers."""

    trace_id: str
    parent_span_id: str
    span_id: str
    span_name: str


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
    """The Portkey id headers to set on a request, given a lookup of the headers it already has.

    A header the caller set is never replaced, except ``x-portkey-trace-id`` under the
    ``override`` policy. The result holds only values made of hex digits and the span name,
    which the caller sanitises.
    """
    return {
        name: value
        for name, value in zip(_ID_HEADERS, ids, strict=True)
        if present(name) is None or (name == TRACE_ID and policy == "override")
    }


@functools.lru_cache(maxsize=256)
def safe_header_value(value: str, limit: int = 256) -> str:
    """Make a string safe as an HTTP header value: printable ASCII only, at most ``limit`` chars.

    Characters outside 0x20-0x7e (CR, LF, NUL, other controls, non-ASCII) become ``?``.
    Memoised: span names repeat, and this runs on every call.
    """
    cleaned = "".join(c if " " <= c <= "~" else "?" for c in value[:limit])
    return cleaned.strip() or "?"


def metadata_budget(used: int, span_name: str) -> int:
    """Bytes ``x-portkey-metadata`` may take on a request whose other headers take ``used`` bytes:
    at most ``MAX_HEADER_BYTES``, less when they leave less room under the gateway's limit."""
    used += 64 + len(span_name) + 100 + _RESERVED_BYTES  # the 4 id headers (3 are hex ids), names
    room = GATEWAY_HEADER_LIMIT - used - len(METADATA) - 4
    budget = min(md.MAX_HEADER_BYTES, room)
    return max(0, budget - budget % _BUDGET_STEP)


class CallPolicy(NamedTuple):
    """What the settings say about every call (built once from them)."""

    trace_id_policy: TraceIdPolicy = "respect"
    static_metadata: MetadataItems = ()  # OTEL_PORTKEY_METADATA, already sanitised
    jaeger_ui_url: str | None = None  # each call's metadata gets jaeger_trace=<url>/trace/<trace id>
    trace_url_template: str | None = None  # ...{trace_id}...: spans get portkey.trace.url


class RequestFacts(NamedTuple):
    """What a client's hook sees of one Portkey-bound request."""

    trace_id: int  # of the HTTP call's span
    span_id: int  # the HTTP call's span
    gateway_span_id: str  # a fresh 16-hex id for the gateway's node (drawn by the caller)
    present: Mapping[str, str]  # the request's x-portkey-* headers, by lowercase name
    header_bytes: int  # what the request's headers take on the wire
    method: str
    url: str
    caller_name: str | None  # the operation that made the call (the span's parent), if known
    context_metadata: MetadataItems  # portkey_metadata(...) and trusted baggage, most specific first
    resource_metadata: MetadataItems  # from the tracer provider's resource


class Note(NamedTuple):
    """Something to tell the operator once (``key``); ``warning`` False: at debug level only."""

    key: str
    message: str
    warning: bool = True


class RequestPlan(NamedTuple):
    """What to do to one Portkey-bound request and its span."""

    add: dict[str, str]  # headers the request does not have yet (lowercase names)
    replace: dict[str, str]  # headers it has, with their new value (lowercase names)
    attributes: dict[str, str]
    notes: tuple[Note, ...]
    trace_id: str  # the OTel trace id, 32 hex
    portkey_trace_id: str  # the trace id the gateway groups the call by (a caller's own, kept)


class _Merged(NamedTuple):
    header: str | None  # the x-portkey-metadata to send (None: leave the request as it is)
    attributes: dict[str, str]  # portkey.metadata.<key> for each entry sent
    notes: tuple[Note, ...]


def plan_request(facts: RequestFacts, policy: CallPolicy) -> RequestPlan:
    """The plan for one Portkey-bound request: the id headers it lacks (a caller's own are kept,
    but for ``x-portkey-trace-id`` under ``override``), the metadata merged within the request's
    header budget, and the span's attributes."""
    present = facts.present
    name = safe_header_value(facts.caller_name or fallback_span_name(facts.method, urlsplit(facts.url).path))
    ids = call_ids(facts.trace_id, facts.span_id, facts.gateway_span_id, name)
    add = id_headers(ids) if not present else headers_to_set(present.get, ids, policy.trace_id_policy)
    replace: dict[str, str] = {}
    if TRACE_ID in add and TRACE_ID in present:  # the override policy replaces the caller's
        replace[TRACE_ID] = add.pop(TRACE_ID)
    used = facts.header_bytes
    caller_header = present.get(METADATA)
    if caller_header is not None:  # it is replaced by the merged header, counted in the budget
        used -= len(METADATA) + len(caller_header) + 4
    jaeger = f"{policy.jaeger_ui_url}/trace/{ids.trace_id}" if policy.jaeger_ui_url is not None else None
    merged = _merged_metadata(
        caller_header,
        facts.context_metadata,
        policy.static_metadata,
        facts.resource_metadata,
        jaeger,
        metadata_budget(used, name),
    )
    if merged.header is not None:
        (replace if caller_header is not None else add)[METADATA] = merged.header
    if present:  # a caller's own ids can be any length: bounded like every attribute the bridge sets
        sent = {**present, **add, **replace}
        trace_id = sent[TRACE_ID][:MAX_ATTRIBUTE_CHARS]
        span_id = sent[SPAN_ID][:MAX_ATTRIBUTE_CHARS]
    else:  # the usual case: every id is ours
        trace_id, span_id = ids.trace_id, ids.span_id
    attributes = {**merged.attributes, ATTR_TRACE_ID: trace_id, ATTR_SPAN_ID: span_id}
    if policy.trace_url_template is not None:
        attributes[ATTR_TRACE_URL] = policy.trace_url_template.replace("{trace_id}", trace_id)
    return RequestPlan(add, replace, attributes, merged.notes, ids.trace_id, trace_id)


@functools.lru_cache(maxsize=512)
def _merged_metadata(
    caller_header: str | None,
    context: MetadataItems,
    static: MetadataItems,
    resource: MetadataItems,
    jaeger_link: str | None,
    budget: int,
) -> _Merged:
    """The metadata header for these sources. Most specific first (context, then static settings,
    then the resource, then the Jaeger link): when they do not all fit the byte budget, the least
    specific ones are left out. Memoised: within one process these repeat on almost every call."""
    entries = dict(context)
    for fallback in (static, resource):
        for key, value in fallback:
            entries.setdefault(key, value)
    notes: list[Note] = []
    if jaeger_link is not None:
        if len(jaeger_link) <= md.MAX_VALUE_CHARS:
            entries.setdefault("jaeger_trace", jaeger_link)
        else:
            notes.append(
                Note(
                    "jaeger link too long",
                    "otel-portkey: the Jaeger link is longer than 128 characters; not sent",
                    warning=False,
                )
            )
    result = md.merge(caller_header, entries, budget)
    if result.dropped:
        notes.append(
            Note(
                "metadata over budget",
                f"otel-portkey: Portkey metadata passed this request's header budget ({budget} bytes); "
                f"its {result.dropped} least specific entries were not sent",
            )
        )
    if result.made_safe:
        notes.append(
            Note(
                "made safe",
                "otel-portkey: metadata broke Portkey's rules and was made safe (stringified or truncated)",
                warning=False,
            )
        )
    if result.caller_header_invalid:
        notes.append(
            Note(
                "invalid caller metadata",
                "otel-portkey: a request's x-portkey-metadata is not a JSON object; it is sent as is, "
                "without context metadata",
            )
        )
    attributes = {ATTR_METADATA_PREFIX + key: value for key, value in result.entries.items()}
    return _Merged(result.header, attributes, tuple(notes))


# ---- the answer -------------------------------------------------------------------------------

# Response headers copied as text. The option index is text too: gateways answer "0", "config" or
# a target path, so it is not parsed.
_TEXT_ATTRIBUTES: Final = (
    (CACHE_STATUS, ATTR_CACHE_STATUS),
    (PROVIDER, ATTR_PROVIDER),
    (LAST_USED_OPTION_INDEX, ATTR_LAST_USED_OPTION_INDEX),
)


def _as_int(value: str | None) -> int | None:
    """A small decimal integer (a retry count), or None: anything else, including a number an OTLP
    int64 cannot hold (which would make every export of the span or the counter fail), is ignored."""
    if value is None:
        return None
    text = value.strip()
    if not (text.isascii() and len(text) <= 6):
        return None
    try:
        return int(text)
    except ValueError:
        return None


def answer_attributes(response_header: Callable[[str], str | None]) -> dict[str, str | int | bool]:
    """Span attributes from a gateway's response headers (looked up by lowercase name).

    The trace id is there only when the gateway echoed a non-blank one (it then replaces the one
    recorded at request time). A non-integer retry count is ignored; strings are bounded in length.
    """
    attributes: dict[str, str | int | bool] = {}
    echoed = response_header(TRACE_ID)
    if echoed and echoed.strip():
        attributes[ATTR_TRACE_ID] = echoed.strip()[:MAX_ATTRIBUTE_CHARS]
    for header, attribute in _TEXT_ATTRIBUTES:
        value = response_header(header)
        if value:
            attributes[attribute] = value[:MAX_ATTRIBUTE_CHARS]
    retries = _as_int(response_header(RETRY_ATTEMPT_COUNT))
    if retries is not None:
        attributes[ATTR_RETRY_ATTEMPT_COUNT] = retries
    exception = response_header(GATEWAY_EXCEPTION)
    if exception and exception.strip().lower() == "true":
        attributes[ATTR_GATEWAY_EXCEPTION] = True
    return attributes


def is_event_stream(content_type: str | None) -> bool:
    """True for a ``text/event-stream`` content type (any parameters): a streamed answer."""
    return bool(content_type) and content_type.split(";", 1)[0].strip().lower() == "text/event-stream"  # type: ignore[union-attr]
