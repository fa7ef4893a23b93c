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


# ---- Portkey's length rules: at the limit, one below, one above ------------------------------


def test_a_value_of_exactly_128_characters_is_kept_whole_and_one_more_is_cut_visibly():
    assert md.clean_value("v" * 127) == "v" * 127
    assert md.clean_value("v" * 128) == "v" * 128
    assert md.clean_value("v" * 129) == "v" * 127 + "…"
    assert len(md.clean_value("v" * 129)) == 128


def test_a_key_of_exactly_128_characters_is_kept_whole_and_one_more_is_cut_visibly():
    assert md.clean_key("k" * 127) == "k" * 127
    assert md.clean_key("k" * 128) == "k" * 128
    assert md.clean_key("k" * 129) == "k" * 127 + "…"
    assert md.sanitise({"k" * 129: "v"}) == {"k" * 127 + "…": "v"}


def test_keys_are_text_trimmed_and_never_empty():
    assert md.clean_key(" team ") == "team"
    assert md.clean_key(42) == "42"
    assert md.clean_key("") is None
    assert md.clean_key(" \t ") is None
    assert md.clean_key("\x00\n") is None
    assert md.sanitise({7: "x", "": "empty", "  ": "blank", "ok": "y"}) == {"7": "x", "ok": "y"}


def test_a_key_that_is_text_keeps_its_text_even_when_its_str_says_otherwise():
    from enum import Enum

    class Key(str, Enum):  # str(Key.TEAM) is "Key.TEAM"; the key is the text "team"
        TEAM = "team"

    assert md.clean_key(Key.TEAM) == "team"
    assert md.sanitise({Key.TEAM: "ml"}) == {"team": "ml"}


def test_every_kind_of_value_becomes_its_text():
    from decimal import Decimal

    assert md.clean_value(True) == "true"
    assert md.clean_value(False) == "false"
    assert md.clean_value(0) == "0"
    assert md.clean_value(1.5) == "1.5"
    assert md.clean_value("") == ""
    # inside an object, what JSON cannot write is written as its text
    assert md.clean_value({"price": Decimal("1.50")}) == '{"price":"1.50"}'
    # what JSON cannot write at all (a list that holds itself) is the value's own text
    loop: list[object] = []
    loop.append(loop)
    assert md.clean_value(loop) == "[[...]]"


def test_sanitise_keeps_the_first_64_entries():
    entries = {f"k{i}": i for i in range(65)}
    assert list(md.sanitise(entries)) == [f"k{i}" for i in range(64)]
    assert list(md.sanitise(entries, limit=None)) == [f"k{i}" for i in range(65)]
    assert md.sanitise({f"k{i}": "v" for i in range(64)}) == {f"k{i}": "v" for i in range(64)}


def test_a_key_that_cleans_to_one_already_kept_is_skipped_and_does_not_count():
    assert md.sanitise({"a": 1, "a\n": 2, " a": 3, "b": 4}) == {"a": "1", "b": "4"}
    entries = {"k0": "first", "k0\t": "again", **{f"k{i}": "v" for i in range(1, 64)}}
    kept = md.sanitise(entries)
    assert len(kept) == 64
    assert kept["k0"] == "first"
    assert kept["k63"] == "v"


def test_key_value_lists_skip_blank_items_and_split_at_the_first_equals_sign():
    assert md.parse_key_values("a=1,,b=2, ,c=3") == ({"a": "1", "b": "2", "c": "3"}, [])
    assert md.parse_key_values("query=a=b") == ({"query": "a=b"}, [])


# ---- the byte budget of x-portkey-metadata, byte for byte ------------------------------------


def written(*pairs):
    """An ``x-portkey-metadata`` value written out by hand (ASCII keys and values, no escapes):
    ``{"key":"value",...}``, no spaces."""
    return "{" + ",".join(f'"{key}":"{value}"' for key, value in pairs) + "}"


def test_the_largest_metadata_that_fits_a_budget_is_sent_and_one_byte_more_is_not():
    a, b = ("a", "x" * 100), ("b", "y" * 50)
    both, only_a = written(a, b), written(a)
    assert len(both) == 2 + (3 + 1 + 102) + 1 + (3 + 1 + 52) == 165  # braces, "a":"x…", comma, "b":"y…"
    assert len(only_a) == 108
    assert md.merge(None, dict([a, b]), budget=165) == md.MergedMetadata(both, dict([a, b]))
    assert md.merge(None, dict([a, b]), budget=164) == md.MergedMetadata(only_a, dict([a]), dropped=1)
    assert md.merge(None, dict([a, b]), budget=108) == md.MergedMetadata(only_a, dict([a]), dropped=1)
    assert md.merge(None, dict([a, b]), budget=107) == md.MergedMetadata(None, {}, dropped=2)


# 30 entries that take exactly 4096 bytes: 2 braces, 29 commas, 29 x "k00":"v…" (5 + 1 + 130 bytes)
# and "k29":"v…" with 113 v's (5 + 1 + 115).
FULL_ENTRIES = [(f"k{i:02d}", "v" * 128) for i in range(29)]
FITS_4096 = [*FULL_ENTRIES, ("k29", "v" * 113)]


def test_the_default_budget_is_4096_bytes_exactly():
    assert len(written(*FITS_4096)) == 2 + 29 + 29 * 136 + 121 == 4096
    assert md.merge(None, dict(FITS_4096)) == md.MergedMetadata(written(*FITS_4096), dict(FITS_4096))
    one_more = [*FULL_ENTRIES, ("k29", "v" * 114)]
    assert len(written(*one_more)) == 4097
    assert md.merge(None, dict(one_more)) == md.MergedMetadata(
        written(*FULL_ENTRIES), dict(FULL_ENTRIES), dropped=1
    )


def test_escaped_characters_count_as_the_bytes_they_take_on_the_wire():
    quoted = md.merge(None, {"q": 'say "hi"'}, budget=18)
    assert quoted.header == '{"q":"say \\"hi\\""}'  # each " is written as two bytes
    assert len(quoted.header) == 18
    assert md.merge(None, {"q": 'say "hi"'}, budget=17) == md.MergedMetadata(None, {}, dropped=1)
    accented = md.merge(None, {"c": "café"}, budget=17)
    assert accented.header == '{"c":"caf\\u00e9"}'  # é is written as six
    assert len(accented.header) == 17
    assert md.merge(None, {"c": "café"}, budget=16) == md.MergedMetadata(None, {}, dropped=1)
    key = md.merge(None, {"é": "v"}, budget=14)
    assert key.header == '{"\\u00e9":"v"}'
    assert len(key.header) == 14
    assert md.merge(None, {"é": "v"}, budget=13).header is None


def test_the_callers_entries_take_their_bytes_first_and_the_context_gets_what_is_left():
    caller = '{"team": "ml"}'  # as the caller wrote it; re-encoded, {"team":"ml"} takes 13 bytes
    a = ("a", "x" * 100)
    merged_header = '{"team":"ml","a":"' + "x" * 100 + '"}'
    assert len(merged_header) == 13 + 1 + 106 == 120
    assert md.merge(caller, dict([a]), budget=120) == md.MergedMetadata(
        merged_header, {"team": "ml", **dict([a])}
    )
    assert md.merge(caller, dict([a]), budget=119) == md.MergedMetadata(None, {"team": "ml"}, dropped=1)


def test_once_an_entry_does_not_fit_every_less_specific_one_is_left_out_too_and_counted():
    context = {"a": "x", "big": "y" * 128, "s": "z", "t": "w"}
    # {"a":"x"} takes 9 bytes and ,"s":"z" would take 8 more: "s" alone would fit in 17, but "big"
    # did not, and what comes after it is less specific
    assert md.merge(None, context, budget=17) == md.MergedMetadata('{"a":"x"}', {"a": "x"}, dropped=3)


def test_a_context_key_the_caller_used_is_skipped_and_the_entries_after_it_still_merge():
    merged = md.merge('{"a":"caller"}', {"a": "context", "b": "2", "c": "3"})
    assert merged == md.MergedMetadata('{"a":"caller","b":"2","c":"3"}', {"a": "caller", "b": "2", "c": "3"})


def test_the_callers_own_entries_are_never_cut_to_64():
    caller = {f"c{i:03d}": "x" for i in range(100)}
    merged = md.merge(json.dumps(caller), {"_user": "u1"})
    assert merged.entries == {**caller, "_user": "u1"}
    assert merged.header == written(*caller.items(), ("_user", "u1"))
    kept = md.merge(json.dumps(caller), {})
    assert kept == md.MergedMetadata(None, caller)


def test_context_made_safe_is_reported_even_when_none_of_it_is_sent():
    assert md.merge('{"n":"caller"}', {"n": 5}) == md.MergedMetadata(None, {"n": "caller"}, made_safe=True)
    assert md.merge('{"n":"caller"}', {"n": "context"}) == md.MergedMetadata(None, {"n": "caller"})


def test_a_caller_header_that_is_no_json_object_is_reported_and_nothing_merged():
    invalid = md.MergedMetadata(None, {}, caller_header_invalid=True)
    for garbage in ("not json", "[1, 2]", '"text"', "7", ""):
        assert md.merge(garbage, {"session": "s1"}) == invalid, garbage
