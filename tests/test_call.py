import contextlib
import logging
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import httpx2
from hypothesis import example, given
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider

from otel_portkey._contract import call as h
from otel_portkey._contract import metadata as md
from otel_portkey._contract.ids import format_span_id, format_trace_id, is_span_id, is_trace_id

trace_ids = st.integers(min_value=1, max_value=2**128 - 1)
span_ids = st.integers(min_value=1, max_value=2**64 - 1)
header_values = st.text(min_size=1, max_size=40).map(lambda v: h.safe_header_value(v))
OURS = (h.TRACE_ID, h.PARENT_SPAN_ID, h.SPAN_ID, h.SPAN_NAME)


@given(trace_ids, span_ids, span_ids, st.dictionaries(st.sampled_from(OURS), header_values))
def test_caller_headers_are_never_replaced_under_respect(trace_id, http_span, gateway_span, caller):
    ids = h.call_ids(trace_id, http_span, format(gateway_span, "016x"), "chat gpt-4o")
    added = h.headers_to_set(caller.get, ids, "respect")
    assert not set(added) & set(caller)
    assert set(added) | set(caller) == set(OURS)
    if h.TRACE_ID in added:
        assert is_trace_id(added[h.TRACE_ID])
        assert int(added[h.TRACE_ID], 16) == trace_id
    if h.PARENT_SPAN_ID in added:
        assert is_span_id(added[h.PARENT_SPAN_ID])


@given(trace_ids, span_ids, st.dictionaries(st.sampled_from(OURS), header_values))
def test_override_replaces_only_the_trace_id(trace_id, http_span, caller):
    ids = h.call_ids(trace_id, http_span, "00000000000000aa", "n")
    added = h.headers_to_set(caller.get, ids, "override")
    assert added[h.TRACE_ID] == format(trace_id, "032x")
    assert not (set(added) - {h.TRACE_ID}) & set(caller)


@given(st.text())
def test_safe_header_values_are_printable_ascii_that_httpx_accepts(value):
    safe = h.safe_header_value(value)
    assert safe
    assert len(safe) <= 256
    assert all(" " <= c <= "~" for c in safe)
    for module in (httpx, httpx2):
        request = module.Request("POST", "http://gateway.test/", headers={h.SPAN_NAME: safe})
        assert request.headers[h.SPAN_NAME] == safe


def test_gateway_prefix_matches_only_at_a_path_boundary():
    prefixes = (h.gateway_prefix("http://localhost:8787/"), h.gateway_prefix("HTTPS://api.portkey.ai"))
    assert h.url_matches_gateway("http://localhost:8787/v1/chat/completions", prefixes)
    assert h.url_matches_gateway("https://API.portkey.ai/v1/chat/completions", prefixes)
    assert h.url_matches_gateway("http://localhost:8787", prefixes)
    assert h.url_matches_gateway("http://localhost:8787?x=1", prefixes)
    assert not h.url_matches_gateway("http://localhost:87870/v1", prefixes)
    assert not h.url_matches_gateway("https://api.portkey.ai.evil.test/v1", prefixes)
    assert not h.url_matches_gateway("https://api.openai.com/v1", prefixes)


def test_response_attributes_from_a_gateway_answer():
    answer = {
        h.TRACE_ID: "c" * 32,
        h.CACHE_STATUS: "SEMANTIC HIT",
        h.RETRY_ATTEMPT_COUNT: "-1",
        h.PROVIDER: "openai",
        h.LAST_USED_OPTION_INDEX: "config",
        h.GATEWAY_EXCEPTION: "true",
    }
    assert h.answer_attributes(answer.get) == {
        "portkey.trace_id": "c" * 32,
        "portkey.cache.status": "SEMANTIC HIT",
        "portkey.retry.attempt_count": -1,
        "portkey.provider": "openai",
        "portkey.last_used_option_index": "config",
        "portkey.gateway.exception": True,
    }
    # The OSS gateway echoes an empty value when no trace id was sent: the one sent stays.
    assert "portkey.trace_id" not in h.answer_attributes({h.TRACE_ID: "  "}.get)


# A retry-count header as gateways (or anything in front of them) might send it: ASCII digits with
# or without a sign, digits of other scripts (``int()`` reads ARABIC-INDIC DIGIT ONE as 1, the bridge
# does not), Python's ``_`` separators, the edge cases by name, any text.
RETRY_EDGE_CASES = [
    *("0", "3", "-1", "07", "99", " 7 ", "\t5", "100", "+2", "007", "123456", "-12345", "+12345"),
    *("+99999", "-99999", "99999", "-2", "-0", "--1", "-1-1", "1234567", "99999999", "\u0661", "\u0663"),
    *("\u0661\u0662", "\uff11", "\u00b2", "1\u0661", "1_0", "_1", "1_", "1__0", " 1 2", "\u20037", "7\n"),
    *("\x007", "7\x00", "", "  ", "two", "0x1", "1e3", "3.0"),
]
digits = st.sampled_from("0123456789") | st.characters(categories=["Nd"])
retry_values = st.one_of(
    st.sampled_from(RETRY_EDGE_CASES),
    st.tuples(st.sampled_from(["", "-", "+", " "]), st.text(digits, min_size=1, max_size=8)).map("".join),
    st.text(max_size=5000),
)


def retry_count(value):
    """The retry count a header stands for, written out from the contract: Portkey's ``-1``
    ("retries exhausted") or one or two ASCII digits, with nothing around them but spaces or tabs
    (HTTP's optional whitespace); None for anything else."""
    if value is None:
        return None
    text = value.strip(" \t")
    if text == "-1":
        return -1
    if 1 <= len(text) <= 2 and all(c in "0123456789" for c in text):
        return int(text)
    return None


def test_the_retry_count_is_only_a_plain_small_count():
    taken = {
        value: h.answer_attributes({h.RETRY_ATTEMPT_COUNT: value}.get).get(h.ATTR_RETRY_ATTEMPT_COUNT)
        for value in ("0", "3", "07", "99", " 7 ", "-1")
    }
    assert taken == {"0": 0, "3": 3, "07": 7, "99": 99, " 7 ": 7, "-1": -1}
    for hostile in ("+99999", "1_0", "-99999", "\u0663", " 1 2", "0x1", "100", "+2", "-2", "\uff11", "7\x00"):
        assert h.ATTR_RETRY_ATTEMPT_COUNT not in h.answer_attributes({h.RETRY_ATTEMPT_COUNT: hostile}.get), (
            hostile
        )


@given(
    st.dictionaries(
        st.sampled_from(
            [h.TRACE_ID, h.CACHE_STATUS, h.PROVIDER, h.LAST_USED_OPTION_INDEX, h.GATEWAY_EXCEPTION]
        ),
        st.text(max_size=5000),
    ),
    st.none() | retry_values,
)
@example({}, "1234567")
@example({}, "\u0661")
@example({}, "+99999")
def test_response_attributes_never_raise_and_stay_bounded(answer, retries):
    if retries is not None:
        answer = {**answer, h.RETRY_ATTEMPT_COUNT: retries}
    attributes = h.answer_attributes(answer.get)
    for value in attributes.values():
        if isinstance(value, str):
            assert len(value) <= h.MAX_ATTRIBUTE_CHARS
            assert value.isprintable()
    # The retry count is the header's small ASCII count when it holds one, else absent (never a string).
    assert attributes.get(h.ATTR_RETRY_ATTEMPT_COUNT) == retry_count(retries)


def test_a_non_integer_retry_count_is_ignored():
    assert "portkey.retry.attempt_count" not in h.answer_attributes({h.RETRY_ATTEMPT_COUNT: "two"}.get)


# ---- the gateway's answer is untrusted input: any bytes, decoded as each client decodes them ----

# What a client hands the bridge for a header value's bytes: requests, urllib and urllib3 (through
# http.client) decode latin-1; aiohttp decodes UTF-8 with ``surrogateescape`` (invalid UTF-8 becomes
# lone surrogates); httpx tries ASCII, then UTF-8, then latin-1 (its own ``Headers``, asked here).
DECODINGS = {
    "latin-1": lambda raw: raw.decode("latin-1"),
    "utf-8 surrogateescape": lambda raw: raw.decode("utf-8", "surrogateescape"),
    "httpx": lambda raw: httpx.Headers([(b"v", raw)])["v"],
}
READ = (
    h.TRACE_ID,
    h.CACHE_STATUS,
    h.PROVIDER,
    h.LAST_USED_OPTION_INDEX,
    h.RETRY_ATTEMPT_COUNT,
    h.GATEWAY_EXCEPTION,
)
TEXT = {h.TRACE_ID: h.ATTR_TRACE_ID, h.CACHE_STATUS: h.ATTR_CACHE_STATUS, h.PROVIDER: h.ATTR_PROVIDER}
TEXT[h.LAST_USED_OPTION_INDEX] = h.ATTR_LAST_USED_OPTION_INDEX
HOSTILE_PIECES = [
    *(
        b"\x00",
        b"\x01",
        b"\t",
        b"\x1b[31m",
        b"\x1b]8;;http://evil\x07",
        b"\x7f",
        b"\x85",
        b"\x9b31m",
        b"\xff",
    ),
    *(b"\xed\xa0\x80", b"\xc2\x9b", b"\xe2\x80\xae", b"\xef\xbf\xbe", b"\xc3\xa9", b"openai", b"MISS", b" "),
    *(b"-1", b"7", b"+", b"_", b"\xd9\xa3", b"config.targets[1]"),
]
header_bytes = st.binary(max_size=300) | st.lists(st.sampled_from(HOSTILE_PIECES), max_size=8).map(b"".join)
TRACER = TracerProvider().get_tracer("answer")


@contextlib.contextmanager
def otel_errors():
    """The ERROR records OpenTelemetry's loggers (the OTLP encoders among them) give meanwhile."""
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep(logging.ERROR)
    logger = logging.getLogger("opentelemetry")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def encoded_span_attributes(attributes):
    """``attributes`` on a finished SDK span, through the real OTLP trace encoder: what it encoded."""
    span = TRACER.start_span("POST", attributes=attributes)
    span.end()
    request = encode_spans([span])
    request.SerializeToString()
    [encoded] = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    return {kv.key: kv.value for kv in encoded.attributes}


def test_the_encoder_check_sees_what_the_issue_saw():
    """Without the bridge's rule, the value aiohttp makes of invalid UTF-8 makes the OTLP encoder
    log an error and leave the attribute out: the check below would catch any such value."""
    with otel_errors() as errors:
        encoded = encoded_span_attributes(
            {"portkey.provider": b"op\xffenai".decode("utf-8", "surrogateescape")}
        )
    assert errors
    assert "portkey.provider" not in encoded


@given(st.dictionaries(st.sampled_from(READ), header_bytes), st.sampled_from(sorted(DECODINGS)))
@example({h.PROVIDER: b"op\x01en\x7fai\x1b[31mRED", h.TRACE_ID: b"\x00abc"}, "latin-1")
@example({h.PROVIDER: b"op\xffenai", h.CACHE_STATUS: b"\xed\xa0\x80"}, "utf-8 surrogateescape")
@example({h.RETRY_ATTEMPT_COUNT: b"+99999", h.LAST_USED_OPTION_INDEX: b"\xc2\x9b31m"}, "httpx")
def test_no_byte_a_gateway_answers_reaches_an_attribute_unless_it_is_printable_text(raw, decoding):
    answer = {name: DECODINGS[decoding](value) for name, value in raw.items()}
    attributes = h.answer_attributes(answer.get)
    for header, attribute in TEXT.items():
        sent = answer.get(header, "").strip(" \t")
        if sent and sent.isprintable():  # printable text is kept (bounded), anything else dropped whole
            assert attributes[attribute] == sent[: h.MAX_ATTRIBUTE_CHARS]
        else:
            assert attribute not in attributes
    for value in attributes.values():
        if isinstance(value, str):
            assert value.isprintable()
            assert not any(c in value for c in "\x00\x1b\x7f\x9b")
            assert value.encode("utf-8")  # valid UTF-8: no lone surrogate
    count = attributes.get(h.ATTR_RETRY_ATTEMPT_COUNT)
    assert count is None or (type(count) is int and -1 <= count <= h.MAX_RETRY_COUNT)
    assert count == retry_count(answer.get(h.RETRY_ATTEMPT_COUNT))
    with otel_errors() as errors:
        encoded = encoded_span_attributes(attributes)
    assert errors == []
    assert set(encoded) == set(attributes), "the encoder left nothing out"


# ---- plan_request: the one pure step of the request side ---------------------------------------

names_present = st.sampled_from(
    [h.TRACE_ID, h.PARENT_SPAN_ID, h.SPAN_ID, h.SPAN_NAME, h.METADATA, h.PROVIDER]
)
caller_values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300)
metadata_items = st.lists(
    st.tuples(st.text(min_size=1, max_size=20).map(lambda k: k.strip() or "k"), st.text(max_size=200)),
    max_size=8,
    unique_by=lambda item: item[0],
).map(tuple)


@st.composite
def request_facts(draw):
    present = draw(st.dictionaries(names_present, caller_values | st.just('{"team":"a"}'), max_size=6))
    return h.RequestFacts(
        trace_id=draw(trace_ids),
        span_id=draw(span_ids),
        gateway_span_id=format(draw(span_ids), "016x"),
        present=present,
        header_bytes=draw(st.integers(min_value=0, max_value=20_000)),
        method=draw(st.sampled_from(["POST", "GET", "post"])),
        url=draw(
            st.sampled_from(["http://gw.test/v1/chat/completions", "http://gw.test", "http://gw.test/a?b"])
        ),
        caller_name=draw(st.none() | st.text(max_size=300)),
        context_metadata=draw(metadata_items),
        resource_metadata=draw(metadata_items),
    )


policies = st.builds(
    h.CallPolicy,
    trace_id_policy=st.sampled_from(["respect", "override"]),
    static_metadata=metadata_items,
    jaeger_ui_url=st.none() | st.just("http://jaeger.test:16686"),
    trace_url_template=st.none() | st.just("https://app.portkey.ai/logs?trace_id={trace_id}"),
)


def printable(value):
    return all(" " <= c <= "~" for c in value)


@given(request_facts(), policies)
def test_the_plan_adds_only_what_is_absent_and_replaces_only_what_the_policy_allows(facts, policy):
    plan = h.plan_request(facts, policy)
    assert not set(plan.add) & set(facts.present)
    assert set(plan.replace) <= set(facts.present)
    allowed = {h.METADATA} | ({h.TRACE_ID} if policy.trace_id_policy == "override" else set())
    assert set(plan.replace) <= allowed
    sent = {**facts.present, **plan.add, **plan.replace}
    assert {h.TRACE_ID, h.PARENT_SPAN_ID, h.SPAN_ID, h.SPAN_NAME} <= set(sent)
    for value in (*plan.add.values(), *plan.replace.values()):
        assert printable(value), value


@given(request_facts(), policies)
def test_the_plan_names_the_otel_trace_and_the_http_span(facts, policy):
    plan = h.plan_request(facts, policy)
    assert plan.trace_id == format_trace_id(facts.trace_id)
    if h.TRACE_ID not in facts.present or policy.trace_id_policy == "override":
        assert {**plan.add, **plan.replace}[h.TRACE_ID] == plan.trace_id == plan.portkey_trace_id
    else:  # the caller's own is kept, and is what the gateway groups by
        assert plan.portkey_trace_id == facts.present[h.TRACE_ID][: h.MAX_ATTRIBUTE_CHARS]
    if h.PARENT_SPAN_ID not in facts.present:
        assert plan.add[h.PARENT_SPAN_ID] == format_span_id(facts.span_id)
    if h.SPAN_ID not in facts.present:
        assert plan.add[h.SPAN_ID] == facts.gateway_span_id
    # a caller's own ids are attributes only as untrusted text may be: printable, else left out
    assert plan.attributes.get(h.ATTR_TRACE_ID) == h.attribute_text(plan.portkey_trace_id)
    sent_span_id = facts.present.get(h.SPAN_ID, facts.gateway_span_id)
    assert plan.attributes.get(h.ATTR_SPAN_ID) == h.attribute_text(sent_span_id[: h.MAX_ATTRIBUTE_CHARS])
    assert all(len(v) <= h.MAX_ATTRIBUTE_CHARS for k, v in plan.attributes.items() if k != h.ATTR_TRACE_URL)


@given(request_facts(), policies)
def test_the_metadata_the_plan_adds_is_within_its_budget_and_its_attributes_say_what_was_sent(facts, policy):
    import json

    plan = h.plan_request(facts, policy)
    header = {**plan.add, **plan.replace}.get(h.METADATA)
    sent_attributes = {k: v for k, v in plan.attributes.items() if k.startswith(h.ATTR_METADATA_PREFIX)}
    if header is None:
        return
    entries = json.loads(header)
    assert sent_attributes == {h.ATTR_METADATA_PREFIX + k: v for k, v in entries.items()}
    if h.METADATA not in facts.present:  # all of it is the bridge's: bounded by the budget
        assert len(header) <= md.MAX_HEADER_BYTES
    assert all(isinstance(v, str) and len(v) <= md.MAX_VALUE_CHARS for v in entries.values())


def test_a_request_with_no_portkey_header_gets_the_four_ids_named_after_its_caller():
    facts = chat_request(
        caller_name="chat\ngpt-4o",
        context_metadata=(("_user", "u1"),),
        resource_metadata=(("service", "svc"),),
    )
    plan = h.plan_request(facts, h.CallPolicy(jaeger_ui_url="http://j.test"))
    assert plan.add == {
        h.TRACE_ID: "4bf92f3577b34da6a3ce929d0e0e4736",
        h.PARENT_SPAN_ID: "00f067aa0ba902b7",
        h.SPAN_ID: "cb01d5e57be3d309",
        h.SPAN_NAME: "chat?gpt-4o",
        h.METADATA: '{"_user":"u1","service":"svc","jaeger_trace":"http://j.test/trace/4bf92f3577b34da6a3ce929d0e0e4736"}',
    }
    assert plan.replace == {}
    assert plan.notes == ()
    unnamed = h.plan_request(facts._replace(caller_name=None), h.CallPolicy())
    assert unnamed.add[h.SPAN_NAME] == "POST /v1/chat/completions"
    assert unnamed.add[h.METADATA] == '{"_user":"u1","service":"svc"}', "no Jaeger link without a Jaeger URL"


# ---- portkey.trace.url: the trace id is one value of the link, whatever a caller put in it ---------

HOSTILE_TRACE_ID = 'x&next=https://evil"><script>'


def planned_link(trace_id, template):
    facts = h.RequestFacts(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        gateway_span_id="cb01d5e57be3d309",
        present={h.TRACE_ID: trace_id},
        header_bytes=200,
        method="POST",
        url="http://gw.test/v1/chat/completions",
        caller_name=None,
        context_metadata=(),
        resource_metadata=(),
    )
    return h.plan_request(facts, h.CallPolicy(trace_url_template=template)).attributes[h.ATTR_TRACE_URL]


def test_a_callers_trace_id_is_url_encoded_into_the_trace_link():
    link = planned_link(HOSTILE_TRACE_ID, "https://app.portkey.ai/logs?trace_id={trace_id}")
    assert link == "https://app.portkey.ai/logs?trace_id=x%26next%3Dhttps%3A%2F%2Fevil%22%3E%3Cscript%3E"
    assert parse_qs(urlsplit(link).query) == {"trace_id": [HOSTILE_TRACE_ID]}, "no next= parameter"
    in_path = planned_link(HOSTILE_TRACE_ID, "https://portkey.test/traces/{trace_id}/view")
    assert urlsplit(in_path).path.split("/") == ["", "traces", quote(HOSTILE_TRACE_ID, safe=""), "view"]
    assert not set('"<> ') & set(in_path)
    # Our own trace id (32 hex) reads the same as before.
    own = h.plan_request(
        h.RequestFacts(1, 2, "00000000000000aa", {}, 0, "POST", "http://gw.test/", None, (), ()),
        h.CallPolicy(trace_url_template="https://app.portkey.ai/logs?trace_id={trace_id}"),
    )
    assert own.attributes[h.ATTR_TRACE_URL] == "https://app.portkey.ai/logs?trace_id=" + "0" * 31 + "1"


@given(st.text(max_size=300))
def test_any_callers_trace_id_is_one_query_value_of_the_link(trace_id):
    link = planned_link(trace_id, "https://app.portkey.ai/logs?trace_id={trace_id}&view=tree")
    assert link.isascii()
    assert link.isprintable()
    assert " " not in link
    query = parse_qs(urlsplit(link).query, keep_blank_values=True, errors="replace")
    sent = trace_id[: h.MAX_ATTRIBUTE_CHARS]
    assert query["view"] == ["tree"]
    assert len(query) == 2
    assert query["trace_id"] == [sent.encode("utf-8", "replace").decode("utf-8", "replace")]


# ---- the header budget: what the bridge adds keeps a request under the gateway's 16 KB ----------
#
# Written out from what the budget stands for, not from the code: the OSS gateway's Node server
# answers 431 past 16 KB of request headers; 1 KB is kept for the request line and the traceparent
# the propagator adds after the hook; the four id headers take 32 + 16 + 16 hex characters and the
# span name, and their names (with ": " and CRLF, 94 bytes) are counted as 100; x-portkey-metadata
# itself takes its name, ": " and CRLF besides its value; budgets go down in steps of 256 bytes.

GATEWAY_LIMIT = 16 * 1024
RESERVED = 1024
ID_VALUES = 32 + 16 + 16
ID_NAMES = 100
METADATA_FRAME = len("x-portkey-metadata: \r\n")


def largest_request_with_the_full_budget(span_name):
    """The most bytes a request's own headers may take for the bridge to add 4096 of metadata."""
    return GATEWAY_LIMIT - RESERVED - ID_VALUES - len(span_name) - ID_NAMES - METADATA_FRAME - 4096


def wire_bytes(headers):
    """What headers take in an HTTP/1.1 request: name, ": ", value, CRLF."""
    return sum(len(name) + 2 + len(value) + 2 for name, value in headers.items())


def written(*pairs):
    """An x-portkey-metadata value written out by hand (ASCII, no escapes): {"key":"value",...}."""
    return "{" + ",".join(f'"{key}":"{value}"' for key, value in pairs) + "}"


# 30 entries that take exactly 4096 bytes as x-portkey-metadata (see test_metadata.py)
FULL_ENTRIES = tuple((f"k{i:02d}", "v" * 128) for i in range(29))
FITS_4096 = (*FULL_ENTRIES, ("k29", "v" * 113))


def chat_request(**changes):
    """A request from a ``chat`` operation, with no Portkey header of its own."""
    facts = h.RequestFacts(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        gateway_span_id="cb01d5e57be3d309",
        present={},
        header_bytes=200,
        method="POST",
        url="http://gw.test/v1/chat/completions",
        caller_name="chat",
        context_metadata=(),
        resource_metadata=(),
    )
    return facts._replace(**changes)


def test_the_metadata_budget_is_what_the_gateways_16_kb_leave_in_steps_of_256():
    assert wire_bytes(dict.fromkeys(OURS, "")) == 94 <= ID_NAMES, "the id headers' names, as counted"
    assert largest_request_with_the_full_budget("chat") == 11074
    assert h.metadata_budget(0, "chat") == 4096
    assert h.metadata_budget(11074, "chat") == 4096
    assert h.metadata_budget(11075, "chat") == 3840, "one byte more: the next step down"
    assert h.metadata_budget(11074, "chat!") == 3840, "a span name's bytes count the same"
    assert h.metadata_budget(11074 + 256, "chat") == 3840
    assert h.metadata_budget(11074 + 257, "chat") == 3584
    # what is left for the metadata: 16384 - 1024 - 68 - 100 - 22 - used = 15170 - used
    assert h.metadata_budget(15170 - 256, "chat") == 256
    assert h.metadata_budget(15170 - 255, "chat") == 0
    assert h.metadata_budget(15170, "chat") == 0
    assert h.metadata_budget(20_000, "chat") == 0


def test_a_request_keeps_under_the_gateways_16_kb_with_the_largest_metadata_that_fits():
    largest = largest_request_with_the_full_budget("chat")
    plan = h.plan_request(chat_request(header_bytes=largest, context_metadata=FITS_4096), h.CallPolicy())
    assert plan.add[h.METADATA] == written(*FITS_4096)
    assert len(plan.add[h.METADATA]) == 4096
    assert plan.notes == ()
    assert largest + wire_bytes(plan.add) + RESERVED <= GATEWAY_LIMIT
    one_more = h.plan_request(
        chat_request(header_bytes=largest + 1, context_metadata=FITS_4096), h.CallPolicy()
    )
    assert one_more.add[h.METADATA] == written(*FULL_ENTRIES[:28])  # 3837 bytes within 3840
    assert largest + 1 + wire_bytes(one_more.add) + RESERVED <= GATEWAY_LIMIT
    assert one_more.notes == (
        h.Note(
            "metadata over budget",
            "otel-portkey: Portkey metadata passed this request's header budget (3840 bytes); "
            "its 2 least specific entries were not sent",
        ),
    )
    assert one_more.notes[0].warning is True


def test_a_callers_metadata_header_is_replaced_so_its_bytes_go_back_to_the_budget():
    caller = '{"team":"ml"}'
    own = len("x-portkey-metadata: ") + len(caller) + len("\r\n")  # in header_bytes, and replaced
    context = (*FULL_ENTRIES, ("k29", "v" * 101))  # with the caller's entry: exactly 4096 bytes
    largest = largest_request_with_the_full_budget("chat") + own
    plan = h.plan_request(
        chat_request(header_bytes=largest, present={h.METADATA: caller}, context_metadata=context),
        h.CallPolicy(),
    )
    assert plan.replace[h.METADATA] == written(("team", "ml"), *context)
    assert len(plan.replace[h.METADATA]) == 4096
    assert plan.notes == ()
    one_more = h.plan_request(
        chat_request(header_bytes=largest + 1, present={h.METADATA: caller}, context_metadata=context),
        h.CallPolicy(),
    )
    assert one_more.replace[h.METADATA] == written(("team", "ml"), *FULL_ENTRIES[:27])  # 3712 of 3840
    assert [note.key for note in one_more.notes] == ["metadata over budget"]
    assert "its 3 least specific entries were not sent" in one_more.notes[0].message


def test_a_request_with_no_room_left_gets_its_ids_and_no_metadata():
    plan = h.plan_request(
        chat_request(header_bytes=15_000, context_metadata=(("_user", "u1"),)), h.CallPolicy()
    )
    assert set(plan.add) == {h.TRACE_ID, h.PARENT_SPAN_ID, h.SPAN_ID, h.SPAN_NAME}
    assert plan.notes == (
        h.Note(
            "metadata over budget",
            "otel-portkey: Portkey metadata passed this request's header budget (0 bytes); "
            "its 1 least specific entries were not sent",
        ),
    )


# ---- the notes a plan gives: each with its text and how loudly --------------------------------

JAEGER_LINK_TOO_LONG = h.Note(
    "jaeger link too long",
    "otel-portkey: the Jaeger link is longer than 128 characters; not sent",
    warning=False,
)
MADE_SAFE = h.Note(
    "made safe",
    "otel-portkey: metadata broke Portkey's rules and was made safe (stringified or truncated)",
    warning=False,
)
INVALID_CALLER_METADATA = h.Note(
    "invalid caller metadata",
    "otel-portkey: a request's x-portkey-metadata is not a JSON object; it is sent as is, "
    "without context metadata",
    warning=True,
)


def test_a_jaeger_link_of_128_characters_is_sent_and_one_of_129_is_not():
    trace_link_tail = "/trace/4bf92f3577b34da6a3ce929d0e0e4736"  # 39 characters
    ui_128 = "http://jaeger.test/" + "p" * (128 - 39 - 19)
    assert len(ui_128 + trace_link_tail) == 128
    plan = h.plan_request(chat_request(), h.CallPolicy(jaeger_ui_url=ui_128))
    assert plan.add[h.METADATA] == written(("jaeger_trace", ui_128 + trace_link_tail))
    assert plan.notes == ()
    too_long = h.plan_request(chat_request(), h.CallPolicy(jaeger_ui_url=ui_128 + "p"))
    assert h.METADATA not in too_long.add
    assert too_long.notes == (JAEGER_LINK_TOO_LONG,)


def test_metadata_made_safe_is_noted_at_debug_level():
    plan = h.plan_request(chat_request(context_metadata=(("long", "x" * 200),)), h.CallPolicy())
    assert plan.add[h.METADATA] == written(("long", "x" * 127 + "\\u2026"))
    assert plan.notes == (MADE_SAFE,)


def test_a_caller_header_that_is_no_json_object_is_sent_as_is_with_a_warning():
    plan = h.plan_request(
        chat_request(present={h.METADATA: "team=ml"}, context_metadata=(("_user", "u1"),)), h.CallPolicy()
    )
    assert h.METADATA not in plan.add
    assert h.METADATA not in plan.replace
    assert plan.notes == (INVALID_CALLER_METADATA,)
    assert not any(key.startswith(h.ATTR_METADATA_PREFIX) for key in plan.attributes)


def test_every_note_of_one_request_comes_in_order():
    plan = h.plan_request(
        chat_request(header_bytes=15_000, context_metadata=(("n", "a\nb"),)),
        h.CallPolicy(jaeger_ui_url="http://jaeger.test/" + "p" * 100),
    )
    assert [note.key for note in plan.notes] == ["jaeger link too long", "metadata over budget", "made safe"]
    assert plan.notes[0] == JAEGER_LINK_TOO_LONG
    assert plan.notes[2] == MADE_SAFE


def test_the_callers_metadata_is_merged_and_its_keys_win():
    plan = h.plan_request(
        chat_request(
            present={h.METADATA: '{"_user": "caller"}'},
            context_metadata=(("_user", "context"), ("session", "s1")),
            resource_metadata=(("service", "svc"),),
        ),
        h.CallPolicy(static_metadata=(("team", "ml"), ("session", "static"))),
    )
    assert plan.replace == {
        h.METADATA: written(("_user", "caller"), ("session", "s1"), ("team", "ml"), ("service", "svc"))
    }
    assert h.METADATA not in plan.add
    assert plan.attributes[h.ATTR_METADATA_PREFIX + "_user"] == "caller"


# ---- span names and header values: printable ASCII, bounded ---------------------------------------


def test_span_names_keep_printable_ascii_and_everything_else_becomes_a_question_mark():
    assert h.safe_header_value("chat gpt-4o ~!") == "chat gpt-4o ~!"  # 0x20 and 0x7e are printable ASCII
    # C0 controls, DEL (0x7f), the C1 controls (0x80-0x9f), NBSP (0xa0) and anything past ASCII
    assert h.safe_header_value("a\x1fb\x7fc\x80d\x9fe\xa0fé") == "a?b?c?d?e?f?"
    assert h.safe_header_value("x" * 256) == "x" * 256
    assert h.safe_header_value("x" * 257) == "x" * 256
    assert h.safe_header_value("") == "?"
    assert h.safe_header_value("   ") == "?"
    assert h.fallback_span_name("post", "") == "POST /"
    assert h.fallback_span_name("get", "/v1/models") == "GET /v1/models"
    plan = h.plan_request(chat_request(caller_name=None, url="http://gw.test"), h.CallPolicy())
    assert plan.add[h.SPAN_NAME] == "POST /"


def test_a_gateway_url_is_normalised_for_matching():
    assert h.gateway_prefix("  HTTP://GW.test/PX/ ") == "http://gw.test/px"
    assert h.gateway_prefix("http://gw.test//") == "http://gw.test"


def test_an_answers_text_is_kept_only_when_every_character_is_printable():
    assert h.attribute_text(" \topenai\t ") == "openai", "HTTP's optional whitespace is stripped"
    assert h.attribute_text("Xopenai") == "Xopenai"
    assert h.attribute_text("open ai") == "open ai"
    for unprintable in ("openai\n", "\x0bopenai", "op\x7fenai", "op\x80enai", "op\x9fenai", "op\xa0enai"):
        assert h.attribute_text(unprintable) is None, repr(unprintable)
    assert h.attribute_text("é" * 256) == "é" * 256
    assert h.attribute_text("a" * 257) == "a" * 256
    assert h.attribute_text("") is None
    assert h.attribute_text(None) is None


def test_a_retry_count_is_read_between_spaces_and_tabs_only():
    for value, count in ((" 7\t", 7), ("\t-1 ", -1), ("1", 1)):
        assert h.answer_attributes({h.RETRY_ATTEMPT_COUNT: value}.get)[h.ATTR_RETRY_ATTEMPT_COUNT] == count
    for hostile in ("X7", "7X", "\n7"):
        assert h.ATTR_RETRY_ATTEMPT_COUNT not in h.answer_attributes({h.RETRY_ATTEMPT_COUNT: hostile}.get)


def test_only_a_text_event_stream_content_type_is_a_streamed_answer():
    for streamed in ("text/event-stream", "Text/Event-Stream", " text/event-stream ; charset=utf-8"):
        assert h.is_event_stream(streamed), streamed
    assert h.is_event_stream("text/event-stream;a=1;b=2")
    for other in (
        None,
        "",
        "application/json",
        "application/json; x=text/event-stream",
        "text/event-stream2",
    ):
        assert not h.is_event_stream(other), other
    assert not h.is_event_stream("text/event-stream x; charset=utf-8")


def test_a_trace_id_that_is_no_valid_text_is_one_replaced_character_of_the_link():
    link = planned_link("ab\ud800", "https://app.portkey.ai/logs?trace_id={trace_id}")
    assert link == "https://app.portkey.ai/logs?trace_id=ab%3F"
