"""The pure contract of one call to a Portkey gateway: what its request must carry, what its answer
means, and what its metrics data point says.

No I/O and no OpenTelemetry globals: plain values in, plain values out, so every rule here is
property-tested (``tests/test_call.py``, ``tests/test_call_metrics.py``). :func:`plan_request` is
the one step the request side runs: from what a client's hook sees (the span's ids, the request's
``x-portkey-*`` entries and header bytes, URL, method, the calling operation's name, the metadata in
force) it makes the plan: headers to add or replace, span attributes, and notes to give.
:func:`answer_attributes` reads the gateway's answer. :func:`call_attributes` turns what the bridge
saw of one call into its data point's attributes, which :class:`AttributeBound` bounds in length
and in distinct values. Results are memoised where the inputs repeat (span names, metadata merges),
which is safe because every function here is pure; nothing a request carried is kept in a memo but
the sanitised metadata it sends.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Final, Literal, NamedTuple
from urllib.parse import quote, urlsplit

from . import metadata as md

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
    """The ids a call carries: OTel trace, the HTTP span as parent, a fresh id for the gateway's node
    (spelled as ``ids.format_trace_id`` / ``format_span_id`` do, without a call into another module
    on every request)."""
    return CallIds(f"{trace_id:032x}", f"{http_span_id:016x}", gateway_span_id, span_name)


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
    if present:  # a caller's own ids are untrusted text: bounded, and attributes only when printable
        sent = {**present, **add, **replace}
        trace_id = sent[TRACE_ID][:MAX_ATTRIBUTE_CHARS]
        span_id = sent[SPAN_ID][:MAX_ATTRIBUTE_CHARS]
        attributes = dict(merged.attributes)
        for key, value in ((ATTR_TRACE_ID, trace_id), (ATTR_SPAN_ID, span_id)):
            shown = attribute_text(value)
            if shown is not None:
                attributes[key] = shown
    else:  # the usual case: every id is ours
        trace_id, span_id = ids.trace_id, ids.span_id
        attributes = {**merged.attributes, ATTR_TRACE_ID: trace_id, ATTR_SPAN_ID: span_id}
    if policy.trace_url_template is not None:
        # The trace id is a caller's own under ``respect``: percent-encoded, it stays one path or
        # query value of the link, whatever it holds (``&``, ``"``, ``<``, ``/``, controls).
        attributes[ATTR_TRACE_URL] = policy.trace_url_template.replace(
            "{trace_id}", quote(trace_id, safe="", errors="replace")
        )
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


# A retry count the bridge takes: ``-1`` (Portkey's "retries exhausted") or at most two ASCII digits.
# Portkey retries a target at most 5 times; anything else (a sign, ``_``, other scripts' digits,
# spaces inside, a huge number) is not a count, and would let one answer add thousands of retries.
_RETRY_COUNT: Final = re.compile(r"-1|[0-9]{1,2}", re.ASCII)
MAX_RETRY_COUNT: Final = 99


def attribute_text(value: str | None, limit: int = MAX_ATTRIBUTE_CHARS) -> str | None:
    """An untrusted header value as an attribute value, or None: the value is dropped whole.

    Spaces and tabs around it (HTTP's optional whitespace) are stripped and it is cut to ``limit``
    characters. It is dropped when nothing is left or when it holds any character that is not
    printable (:meth:`str.isprintable`): C0 controls with NUL, ESC (so every ANSI escape) and tab,
    DEL, the C1 controls 0x80-0x9f (what latin-1 makes of such bytes, as httpx, requests, urllib and
    urllib3 decode), lone surrogates (what aiohttp makes of invalid UTF-8 with ``surrogateescape``,
    and what no OTLP encoder can encode), format characters such as bidi overrides, separators
    other than the space, private-use and unassigned code points.

    Dropped rather than repaired: every header the bridge reads is an identifier or one of a few
    words, and a repaired value (``op\\x00enai`` made ``openai``) would pass a hostile answer off as
    a legitimate one. What is kept always encodes as OTLP (valid UTF-8) and prints as it is.
    """
    if value is None:
        return None
    text = value.strip(" \t")
    if not text or not text.isprintable():
        return None
    return text[:limit]


def _as_int(value: str | None) -> int | None:
    """A retry count: ``-1`` or a plain integer of one or two ASCII digits (``0`` to ``99``), with
    nothing around it but spaces or tabs; None for anything else (``+2``, ``1_0``, ``-5``, ``٣``,
    ``0x1``, ``1 2``, ``100``), which is ignored, never partly read."""
    if value is None:
        return None
    text = value.strip(" \t")
    return int(text) if _RETRY_COUNT.fullmatch(text) else None


def answer_attributes(response_header: Callable[[str], str | None]) -> dict[str, str | int | bool]:
    """Span attributes from a gateway's response headers (looked up by lowercase name).

    The answer is untrusted input: each text value passes :func:`attribute_text` (a value with a
    control character, an escape, NUL or invalid UTF-8 is dropped whole; the rest is bounded in
    length), the retry count :func:`_as_int`. The trace id is there only when the gateway echoed
    a usable one (it then replaces the one recorded at request time; a dropped echo leaves that one).
    """
    attributes: dict[str, str | int | bool] = {}
    echoed = attribute_text(response_header(TRACE_ID))
    if echoed is not None:
        attributes[ATTR_TRACE_ID] = echoed
    for header, attribute in _TEXT_ATTRIBUTES:
        value = attribute_text(response_header(header))
        if value is not None:
            attributes[attribute] = value
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


# ---- the call's metrics data point ---------------------------------------------------------------

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


RoutingConfig = dict[str, object] | None  # a config's routing skeleton: strategies and targets only


def routing_config(text: str | None) -> RoutingConfig:
    """The routing skeleton of a call's ``x-portkey-config`` when it is an inline JSON object: each
    level's ``strategy.mode`` and its ``targets``, nothing else (a config holds provider keys, and
    this is kept for the call's life); None for a saved config's id or anything else."""
    if not text or not text.lstrip().startswith("{"):
        return None
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return _skeleton(parsed) if isinstance(parsed, dict) else None


def _skeleton(node: object, depth: int = 0) -> RoutingConfig:
    if not isinstance(node, dict) or depth > 16:
        return None
    skeleton: dict[str, object] = {}
    mode = _strategy(node)
    if mode is not None:
        skeleton["strategy"] = {"mode": mode}
    targets = node.get("targets")
    if isinstance(targets, list):
        skeleton["targets"] = [_skeleton(target, depth + 1) for target in targets]
    return skeleton


def retry_count(answer: Mapping[str, object]) -> int:
    """The retries to add for one call: the gateway's count, or 0 when it is missing or negative
    (``answer_attributes`` takes a count only as -1 or at most :data:`MAX_RETRY_COUNT`)."""
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
    becomes ``_OTHER``; so does a text that is not printable (a control character, an escape, a
    lone surrogate: see :func:`attribute_text`), which no exporter must be handed. On top of
    that, once ``max_sets`` distinct attribute sets (series) have been seen, a new set has every
    bounded value replaced by ``_OTHER``. So one instrument's series stay bounded however many
    models, providers or hostile answers there are, and the bound's own memory is at most
    ``max_distinct`` values per attribute and ``max_sets`` sets (threads racing at a limit may each
    add one more). The first values seen are the ones kept.
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
            if isinstance(value, str) and not value.isprintable():  # see attribute_text: dropped whole
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
