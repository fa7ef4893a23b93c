import json

import httpx
import httpx2
from hypothesis import given
from hypothesis import strategies as st

from otel_portkey._contract import metadata as md

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
entries = st.dictionaries(st.text(max_size=300), json_values, max_size=80)


def assert_follows_portkey_rules(header, caller=None):
    assert all(" " <= c <= "~" for c in header), "printable ASCII only: no CR, LF, NUL"
    parsed = json.loads(header)
    assert isinstance(parsed, dict)
    callers_own = len(md.encode(md.sanitise(caller or {}, limit=None)))
    assert len(header) <= max(md.MAX_HEADER_BYTES, callers_own), "the bridge adds within its budget"
    for key, value in parsed.items():
        assert isinstance(value, str)
        assert len(value) <= md.MAX_VALUE_CHARS
        assert 0 < len(key) <= md.MAX_KEY_CHARS
        assert all(c >= " " for c in key + value)
    for module in (httpx, httpx2):
        assert (
            module.Request("POST", "http://gw.test/", headers={"x-portkey-metadata": header}).headers[
                "x-portkey-metadata"
            ]
            == header
        )
    return parsed


@given(entries, entries)
def test_any_merge_obeys_the_rules_and_the_caller_wins(caller, context):
    caller_header = json.dumps(caller)
    merged = md.merge(caller_header, md.sanitise(context))
    clean_caller = md.sanitise(caller, limit=None)
    if not md.sanitise(context) and clean_caller == caller:
        assert merged.header is None  # nothing to merge, nothing to fix: left byte for byte
        return
    if merged.header is None:  # nothing of the context to add, or none of it fitted: sent as written
        assert clean_caller == caller
        assert merged.dropped > 0 or set(md.sanitise(context)) <= set(clean_caller)
        return
    parsed = assert_follows_portkey_rules(merged.header, caller)
    assert parsed == merged.entries
    assert clean_caller.items() <= parsed.items(), "every entry of the caller's, unchanged"


@given(entries)
def test_context_alone_obeys_the_rules(context):
    merged = md.merge(None, context)
    if merged.header is not None:
        assert_follows_portkey_rules(merged.header)


@given(st.text())
def test_a_caller_header_that_is_not_a_json_object_is_left_as_sent(garbage):
    try:
        if isinstance(json.loads(garbage), dict):
            return
    except ValueError:
        pass
    merged = md.merge(garbage, {"session": "s1"})
    assert merged.header is None
    assert merged.caller_header_invalid


def test_values_are_made_safe_visibly():
    clean = md.sanitise(
        {"n": 3, "b": True, "none": None, "obj": {"b": 1, "a": [1]}, "long": "x" * 500, "crlf": "a\r\nb\x00c"}
    )
    assert clean["n"] == "3"
    assert clean["b"] == "true"
    assert clean["none"] == ""
    assert clean["obj"] == '{"a":[1],"b":1}'
    assert clean["long"] == "x" * 127 + "…"
    assert clean["crlf"] == "abc"


def test_what_no_exporter_can_encode_or_a_terminal_should_print_is_left_out():
    """Lone surrogates (invalid UTF-8 read with ``surrogateescape``), bidi overrides, DEL and C1
    controls: out of keys and values alike; letters of any script stay."""
    clean = md.sanitise({"k\ud800ey": "x\udcffy\u202ez\x7f\x85", "naïve": "東京 café"})
    assert clean == {"key": "xyz", "naïve": "東京 café"}
    for text in (*clean, *clean.values()):
        text.encode("utf-8")  # what the OTLP encoder does with every attribute


def test_merge_without_a_caller_header_encodes_the_context():
    merged = md.merge(None, {"_user": "u1", "session": "s1"})
    assert merged.header == '{"_user":"u1","session":"s1"}'
    assert md.merge(None, {}).header is None


def test_key_value_lists_are_parsed_like_otel_resource_attributes():
    entries, malformed = md.parse_key_values("team=ml,app%3Dname=a%2Cb, broken ,=x,empty=")
    assert entries == {"team": "ml", "app=name": "a,b", "empty": ""}
    assert malformed == ["broken", "=x"]


def test_resource_attributes_map_to_portkey_names():
    assert md.from_resource(
        {"deployment.environment.name": "prod", "deployment.environment": "old", "service.name": "api"}
    ) == {
        "_environment": "prod",
        "service": "api",
    }
    assert md.from_resource({"deployment.environment": "staging"}) == {"_environment": "staging"}


def test_made_safe_is_reported():
    assert md.merge(None, {"n": 1}).made_safe
    assert md.merge('{"k": "x"}', {"a": "b"}).made_safe is False
    assert md.merge('{"k": 7}', {"a": "b"}).made_safe
    assert md.merge('{"k": "' + "y" * 200 + '"}', {}).made_safe


def test_the_caller_wins_even_against_a_full_context_or_a_colliding_key():
    context = {f"c{i}": "x" for i in range(64)}
    merged = md.merge('{"mine": "1"}', context)
    assert merged.entries["mine"] == "1"
    assert len(merged.entries) == 65, "Portkey sets no limit on the number of keys"
    assert md.merge('{"a": "caller"}', {"a\n": "context"}).entries == {"a": "caller"}


def test_context_metadata_beyond_the_byte_budget_is_dropped_least_specific_first():
    context = {f"key{i:02d}-" + "k" * 55: "v" * 128 for i in range(64)}  # 12.7 KB encoded
    merged = md.merge(None, context)
    assert len(merged.header) <= md.MAX_HEADER_BYTES
    kept = list(merged.entries)
    assert kept == list(context)[: len(kept)], "the most specific (first) entries are the ones kept"
    assert merged.dropped == 64 - len(kept) > 0
    small = md.merge(None, context, budget=300)
    assert list(small.entries) == list(context)[:1]
    assert md.merge(None, {"a": "b"}, budget=5) == md.MergedMetadata(None, {}, dropped=1)


def test_the_callers_own_entries_are_never_dropped_for_the_budget():
    caller = json.dumps({f"c{i}": "x" * 100 for i in range(60)})  # over the budget on its own
    merged = md.merge(caller, {"_user": "u1"})
    assert merged.header is None, "the caller's header is sent exactly as the caller wrote it"
    assert merged.dropped == 1
    assert len(merged.entries) == 60


def test_a_rule_breaking_caller_header_is_re_encoded_even_with_nothing_to_merge():
    merged = md.merge('{"n": 5, "long": "' + "z" * 200 + '"}', {})
    assert json.loads(merged.header) == {"n": "5", "long": "z" * 127 + "…"}
    assert md.merge('{"ok": "yes"}', {}).header is None
