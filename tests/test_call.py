import re

import httpx
import httpx2
from hypothesis import example, given
from hypothesis import strategies as st

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
# does not), up to 8 characters (the bridge takes at most 6), the edge cases by name, any text.
RETRY_EDGE_CASES = [
    *("0", "3", "-1", "+2", "007", "123456", "-12345", "+12345"),
    *("1234567", "-123456", "99999999", "\u0661", "\u0661\u0662", "\u0663", "\uff11", "\u00b2", "1\u0661"),
    *("1_0", "_1", "1_", "1__0", " 7 ", "\u20037", "7\n", "", "  ", "two", "0x1", "1e3", "3.0"),
]
digits = st.sampled_from("0123456789") | st.characters(categories=["Nd"])
retry_values = st.one_of(
    st.sampled_from(RETRY_EDGE_CASES),
    st.tuples(st.sampled_from(["", "-", "+", " "]), st.text(digits, min_size=1, max_size=8)).map("".join),
    st.text(max_size=5000),
)


def retry_count(value):
    """The retry count a header stands for: a decimal integer written in ASCII (a sign, digits, single
    underscores between digits: Python's syntax) of at most 6 characters once surrounding whitespace
    is stripped, so that an OTLP int64 always holds it; None for anything else."""
    if value is None:
        return None
    text = value.strip()
    if len(text) > 6 or not re.fullmatch(r"[+-]?[0-9](?:_?[0-9])*", text):
        return None
    return int(text.replace("_", ""))


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
def test_response_attributes_never_raise_and_stay_bounded(answer, retries):
    if retries is not None:
        answer = {**answer, h.RETRY_ATTEMPT_COUNT: retries}
    attributes = h.answer_attributes(answer.get)
    for value in attributes.values():
        if isinstance(value, str):
            assert len(value) <= h.MAX_ATTRIBUTE_CHARS
    # The retry count is the header's small ASCII integer when it holds one, else absent (never a string).
    assert attributes.get(h.ATTR_RETRY_ATTEMPT_COUNT) == retry_count(retries)


def test_a_non_integer_retry_count_is_ignored():
    assert "portkey.retry.attempt_count" not in h.answer_attributes({h.RETRY_ATTEMPT_COUNT: "two"}.get)


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
    assert plan.attributes[h.ATTR_TRACE_ID] == plan.portkey_trace_id
    sent_span_id = facts.present.get(h.SPAN_ID, facts.gateway_span_id)
    assert plan.attributes[h.ATTR_SPAN_ID] == sent_span_id[: h.MAX_ATTRIBUTE_CHARS]
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
    facts = h.RequestFacts(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        gateway_span_id="cb01d5e57be3d309",
        present={},
        header_bytes=200,
        method="POST",
        url="http://gw.test/v1/chat/completions",
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
