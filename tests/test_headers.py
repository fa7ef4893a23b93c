import httpx
import httpx2
from hypothesis import given
from hypothesis import strategies as st

from otel_portkey import headers as h
from otel_portkey.ids import is_span_id, is_trace_id

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


def test_raw_portkey_headers_are_found_in_one_pass_case_insensitively():
    raw = [
        (b"Content-Type", b"application/json"),
        (b"X-Portkey-Provider", b"openai"),
        (b"x-portkeyish", b"no"),
    ]
    raw += [(b"x-portkey-trace-id", b"a"), (b"X-PORTKEY-TRACE-ID", b"b")]
    assert h.portkey_headers(raw) == {"x-portkey-provider": "openai", "x-portkey-trace-id": "a, b"}
    assert h.portkey_headers(raw, also=(b"content-type",))["content-type"] == "application/json"


def test_response_attributes_from_a_gateway_answer():
    answer = {
        h.TRACE_ID: "c" * 32,
        h.CACHE_STATUS: "SEMANTIC HIT",
        h.RETRY_ATTEMPT_COUNT: "-1",
        h.PROVIDER: "openai",
        h.LAST_USED_OPTION_INDEX: "config",
        h.GATEWAY_EXCEPTION: "true",
    }
    assert h.response_attributes(answer.get) == {
        "portkey.trace_id": "c" * 32,
        "portkey.cache.status": "SEMANTIC HIT",
        "portkey.retry.attempt_count": -1,
        "portkey.provider": "openai",
        "portkey.last_used_option_index": "config",
        "portkey.gateway.exception": True,
    }
    # The OSS gateway echoes an empty value when no trace id was sent: the one sent stays.
    assert "portkey.trace_id" not in h.response_attributes({h.TRACE_ID: "  "}.get)


@given(
    st.dictionaries(
        st.sampled_from(
            [
                h.TRACE_ID,
                h.CACHE_STATUS,
                h.RETRY_ATTEMPT_COUNT,
                h.PROVIDER,
                h.LAST_USED_OPTION_INDEX,
                h.GATEWAY_EXCEPTION,
            ]
        ),
        st.text(max_size=5000),
    )
)
def test_response_attributes_never_raise_and_stay_bounded(answer):
    attributes = h.response_attributes(answer.get)
    for value in attributes.values():
        if isinstance(value, str):
            assert len(value) <= h.MAX_ATTRIBUTE_CHARS
    # The retry count is the header's integer when it holds one, else absent (never a string).
    retries = answer.get(h.RETRY_ATTEMPT_COUNT)
    try:
        expected = int(retries.strip()) if retries is not None else None
    except ValueError:
        expected = None
    assert attributes.get(h.ATTR_RETRY_ATTEMPT_COUNT) == expected


def test_a_non_integer_retry_count_is_ignored():
    assert "portkey.retry.attempt_count" not in h.response_attributes({h.RETRY_ATTEMPT_COUNT: "two"}.get)
