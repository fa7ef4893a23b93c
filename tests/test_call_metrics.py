"""The pure rules of the bridge's metrics (``_contract/call_metrics``), property-tested."""

from __future__ import annotations

import json
import logging

from hypothesis import example, given
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader

from otel_portkey._contract import call as m
from otel_portkey._contract.call import (
    ATTR_CACHE_STATUS,
    ATTR_GATEWAY_EXCEPTION,
    ATTR_LAST_USED_OPTION_INDEX,
    ATTR_PROVIDER,
    ATTR_RETRY_ATTEMPT_COUNT,
    ATTR_TRACE_ID,
)

values = st.one_of(st.none(), st.text(max_size=200), st.integers(-5, 10**6), st.booleans())


def test_the_option_index_names_a_fallback_only_past_the_first_target():
    for index in ("config", "0", "config.targets[0]", "config.targets[0].targets[0]", "", " ", "targets[x]"):
        assert not m.is_fallback(index), index
    for index in ("1", "config.targets[1]", "config.targets[ 2 ]", "config.targets[0].targets[1]", 3):
        assert m.is_fallback(index), index
    for index in (None, True, 0):
        assert not m.is_fallback(index)


@given(st.text(max_size=100))
def test_is_fallback_never_raises_on_any_text(text):
    assert m.is_fallback(text) in (True, False)


@given(values)
def test_retries_add_only_a_positive_count(count):
    added = m.retry_count({ATTR_RETRY_ATTEMPT_COUNT: count})
    expected = count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 0
    assert added == expected


def test_error_type_prefers_the_exception_then_the_gateways_flag_then_the_status():
    assert m.error_type(200, False, None) is None
    assert m.error_type(404, False, None) == "404"
    assert m.error_type(500, True, None) == m.GATEWAY_EXCEPTION_ERROR
    assert m.error_type(None, True, "ConnectError") == "ConnectError"
    assert m.error_type(399, False, None) is None


@given(
    answer=st.dictionaries(
        st.sampled_from(
            [
                *(ATTR_PROVIDER, ATTR_CACHE_STATUS, ATTR_LAST_USED_OPTION_INDEX, ATTR_GATEWAY_EXCEPTION),
                *(ATTR_TRACE_ID, "portkey.metadata._user", "portkey.span_id", ATTR_RETRY_ATTEMPT_COUNT),
            ]
        ),
        values,
    ),
    status=st.none() | st.integers(100, 599),
    exception=st.none() | st.text(min_size=1, max_size=30),
    server=st.none() | st.text(max_size=30),
    operation=values,
    model=values,
)
def test_call_attributes_hold_only_the_documented_keys(answer, status, exception, server, operation, model):
    attributes = m.call_attributes(answer, status, exception, server, operation, model)
    assert set(attributes) <= {m.ATTR_FALLBACK, *m.BOUNDED}
    assert isinstance(attributes[m.ATTR_FALLBACK], bool)
    assert ("error.type" in attributes) == (
        bool(exception) or answer.get(ATTR_GATEWAY_EXCEPTION) is True or (status or 0) >= 400
    )
    for value in attributes.values():
        assert isinstance(value, (str, int, bool))


@given(st.lists(st.tuples(st.sampled_from(m.BOUNDED), st.text(max_size=150) | st.integers()), max_size=300))
def test_the_bound_holds_for_any_sequence_of_values(items):
    bound = m.AttributeBound(max_chars=16, max_distinct=5)
    kept: dict[str, set[object]] = {}
    for key, value in items:
        out = bound.bound({key: value, m.ATTR_FALLBACK: True})
        assert out[m.ATTR_FALLBACK] is True, "the derived bool is left alone"
        result = out[key]
        if result != m.OTHER:
            assert not isinstance(result, str) or len(result) <= 16
            if isinstance(value, str):
                assert result == value[:16]
            else:
                assert result == value
        kept.setdefault(key, set()).add(result)
    for key, results in kept.items():
        assert len(results - {m.OTHER}) <= 5
        assert bound.distinct(key) <= 5


def test_the_first_values_are_kept_and_later_ones_are_other():
    bound = m.AttributeBound(max_distinct=2)
    assert [bound.bound({"gen_ai.request.model": v})["gen_ai.request.model"] for v in "abcab"] == [
        "a",
        "b",
        m.OTHER,
        "a",
        "b",
    ]


def test_hostile_numbers_never_reach_a_counter_or_an_attribute():
    from otel_portkey._contract.call import answer_attributes

    huge = {
        "x-portkey-retry-attempt-count": "9" * 30,
        "x-portkey-last-used-option-index": "config.targets[²]",
    }
    attributes = answer_attributes(huge.get)
    assert ATTR_RETRY_ATTEMPT_COUNT not in attributes, "an int64 overflow would break every OTLP export"
    assert m.retry_count(attributes) == 0
    assert m.is_fallback("²") is False
    assert m.is_fallback(attributes[ATTR_LAST_USED_OPTION_INDEX]) is False


@given(st.lists(st.tuples(st.text(max_size=3), st.text(max_size=3), st.integers(200, 205)), max_size=200))
def test_distinct_attribute_sets_are_bounded_per_instrument(calls):
    bound = m.AttributeBound(max_sets=7)
    seen: list[tuple[object, ...]] = []
    for p, model, s in calls:
        attributes, new = bound.bound_series(
            {ATTR_PROVIDER: p, "gen_ai.request.model": model, m.ATTR_STATUS_CODE: s}
        )
        series = tuple(attributes.items())
        assert new == (series not in seen), "new exactly when the set was not seen before"
        seen.append(series)
    distinct = list(dict.fromkeys(seen))
    assert len(distinct) <= 7 + 1, "past the bound, every new set is the one all-_OTHER set"
    assert all(set(dict(series).values()) == {m.OTHER} for series in distinct[7:])
    assert bound.series == len(distinct)


def test_a_target_past_the_first_is_a_fallback_only_under_a_fallback_strategy():
    def config(mode, inner=None):
        targets = [{"provider": "openai"}, inner or {"provider": "openai"}]
        return {"strategy": {"mode": mode}, "targets": targets}

    assert m.is_fallback("config.targets[1]", config("fallback"))
    assert not m.is_fallback("config.targets[1]", config("loadbalance"))
    assert not m.is_fallback("config.targets[1]", config("conditional"))
    assert m.is_fallback("config.targets[1]", {"targets": []}), "no strategy known: the index decides"
    nested = config("loadbalance", config("fallback"))
    assert m.is_fallback("config.targets[1].targets[1]", nested), "a fallback inside a load balance"
    assert not m.is_fallback("config.targets[1].targets[0]", nested)
    balanced_first = {"strategy": {"mode": "fallback"}, "targets": [config("loadbalance"), {"provider": "x"}]}
    assert not m.is_fallback("config.targets[0].targets[1]", balanced_first), "the first target's pick"
    assert not m.is_fallback("1", config("loadbalance"))
    assert m.is_fallback("1", config("fallback"))


def test_only_an_inline_json_object_is_a_routing_config():
    assert m.routing_config('{"strategy": {"mode": "fallback"}}') == {"strategy": {"mode": "fallback"}}
    for text in (None, "", "pc-saved-config-id", "[1]", "{not json", "{" * 100_000):
        assert m.routing_config(text) is None, text[:10] if text else text


@given(
    st.text(max_size=200),
    st.recursive(
        st.none() | st.text(max_size=5) | st.integers(),
        lambda c: st.lists(c) | st.dictionaries(st.text(max_size=8), c),
        max_leaves=20,
    ),
)
def test_is_fallback_never_raises_whatever_the_config(index, config):
    assert m.is_fallback(index, config) in (True, False)


# ---- what a hostile answer (or a hostile model name) can do to a data point: nothing -------------

# Header bytes as clients hand them over: latin-1 (requests, urllib, urllib3, httpx's fallback) and
# UTF-8 with ``surrogateescape`` (aiohttp: invalid UTF-8 becomes lone surrogates).
DECODE = (lambda raw: raw.decode("latin-1"), lambda raw: raw.decode("utf-8", "surrogateescape"))
HOSTILE = [b"op\x01en\x7fai\x1b[31mRED", b"\x00abc", b"op\xffenai", b"\xed\xa0\x80", b"\xc2\x9b1", b"\x85"]
hostile_bytes = st.sampled_from(HOSTILE) | st.binary(max_size=80)
READER = InMemoryMetricReader(
    preferred_temporality={Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA}
)
METER = MeterProvider(metric_readers=[READER]).get_meter("hostile")
DURATION = METER.create_histogram(m.METRIC_REQUEST_DURATION, unit="s")
RETRIES = METER.create_counter(m.METRIC_RETRIES, unit="{retry}")


class OtelErrors(logging.Handler):
    """Keeps the ERROR records of OpenTelemetry's loggers (the OTLP encoders among them)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records = []

    def emit(self, record):
        self.records.append(record)

    def __enter__(self):
        logging.getLogger("opentelemetry").addHandler(self)
        return self.records

    def __exit__(self, *exc):
        logging.getLogger("opentelemetry").removeHandler(self)


def printable_or_other(attributes):
    """Every text value printable, and valid UTF-8 (``encode`` raises on a lone surrogate)."""
    return all(
        not isinstance(v, str) or (v.isprintable() and v.encode() is not None) for v in attributes.values()
    )


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "x-portkey-provider",
                "x-portkey-cache-status",
                "x-portkey-last-used-option-index",
                "x-portkey-retry-attempt-count",
                "x-portkey-trace-id",
            ]
        ),
        hostile_bytes,
    ),
    st.sampled_from(DECODE),
    st.none() | hostile_bytes,
)
@example(
    {"x-portkey-provider": HOSTILE[2], "x-portkey-retry-attempt-count": b"+99999"}, DECODE[1], HOSTILE[3]
)
def test_a_hostile_answer_gives_a_point_every_otlp_encoder_takes(raw, decode, model):
    """The whole way of one call's point: the answer's headers as a client decodes them, the
    answer's attributes, the point's attributes within their bound, the SDK, the OTLP encoder."""
    answer = m.answer_attributes({name: decode(value) for name, value in raw.items()}.get)
    model_name = None if model is None else decode(model)
    attributes = m.AttributeBound().bound(
        m.call_attributes(answer, 200, None, "gw.test", "chat", model_name, None)
    )
    assert printable_or_other(attributes)
    assert 0 <= m.retry_count(answer) <= m.MAX_RETRY_COUNT
    DURATION.record(0.5, attributes)
    RETRIES.add(m.retry_count(answer), attributes)
    with OtelErrors() as errors:
        request = encode_metrics(READER.get_metrics_data())
        request.SerializeToString()
    assert errors == []
    encoded = [
        point
        for resource in request.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in (*metric.histogram.data_points, *metric.sum.data_points)
    ]
    assert encoded
    assert all(len(point.attributes) == len(attributes) for point in encoded), "nothing left out"


@given(st.lists(st.tuples(st.sampled_from(m.BOUNDED), st.text(max_size=100)), max_size=50))
def test_the_bound_lets_no_unprintable_text_through(items):
    bound = m.AttributeBound(max_distinct=5)
    for key, value in items:
        result = bound.bound({key: value})[key]
        if value.isprintable():
            assert result in (value[: bound.max_chars], m.OTHER)
        else:
            assert result == m.OTHER, "dropped whole, never repaired"
    assert all(
        value.isprintable() for values in bound._seen.values() for value in values if isinstance(value, str)
    )


def test_the_issues_values_become_other_in_a_point():
    bound = m.AttributeBound()
    for hostile in ("op\x01en\x7fai\x1b[31mRED", "\x00abc", "op\udcffenai", "gpt\u202e4o"):
        assert bound.bound({m.ATTR_MODEL: hostile, m.ATTR_PROVIDER: hostile}) == {
            m.ATTR_MODEL: m.OTHER,
            m.ATTR_PROVIDER: m.OTHER,
        }
    assert bound.distinct(m.ATTR_MODEL) == 0, "nothing hostile is kept in the bound's memory either"


# ---- what a data point says: each attribute from what the answer said -----------------------------


def test_a_calls_data_point_says_what_the_answer_said():
    answer = {
        ATTR_PROVIDER: "openai",
        ATTR_CACHE_STATUS: "HIT",
        ATTR_LAST_USED_OPTION_INDEX: "config.targets[1]",
        ATTR_GATEWAY_EXCEPTION: True,
        ATTR_TRACE_ID: "c" * 32,
        ATTR_RETRY_ATTEMPT_COUNT: 2,
        "portkey.metadata._user": "alice",
    }
    assert m.call_attributes(answer, 502, None, "gw.test", "chat", "gpt-4o") == {
        "portkey.fallback": True,
        "portkey.provider": "openai",
        "portkey.cache.status": "HIT",
        "http.response.status_code": 502,
        "error.type": "portkey.gateway_exception",
        "server.address": "gw.test",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o",
    }


def test_the_routing_config_decides_whether_a_target_past_the_first_is_a_fallback():
    answer = {ATTR_LAST_USED_OPTION_INDEX: "config.targets[1]"}
    balanced = {"strategy": {"mode": "loadbalance"}, "targets": [{}, {}]}
    assert m.call_attributes(answer, 200, None, None, config=balanced) == {
        "portkey.fallback": False,
        "http.response.status_code": 200,
    }
    assert m.call_attributes(answer, 200, None, None)[m.ATTR_FALLBACK] is True


def test_a_gateways_own_failure_is_the_error_even_with_a_success_status():
    flagged = {ATTR_GATEWAY_EXCEPTION: True}
    assert m.call_attributes(flagged, 200, None, None)[m.ATTR_ERROR_TYPE] == "portkey.gateway_exception"
    assert m.call_attributes(flagged, None, "ReadTimeout", None)[m.ATTR_ERROR_TYPE] == "ReadTimeout"


def test_empty_or_non_text_values_are_left_out_of_a_data_point():
    answer = {ATTR_PROVIDER: "", ATTR_CACHE_STATUS: 3, ATTR_LAST_USED_OPTION_INDEX: None}
    assert m.call_attributes(answer, None, None, "", operation=7, model="") == {"portkey.fallback": False}
    assert m.call_attributes({}, None, None, None, operation="", model=["gpt"]) == {"portkey.fallback": False}


def test_an_error_status_starts_at_400():
    assert m.error_type(399, False, None) is None
    assert m.error_type(400, False, None) == "400"
    assert m.error_type(401, False, None) == "401"
    assert m.error_type(None, False, None) is None
    assert m.error_type(None, False, "") is None


def test_the_second_target_is_the_first_fallback():
    assert m.is_fallback(1)
    assert m.is_fallback("1")
    assert m.is_fallback(" 01 ")
    assert not m.is_fallback(0)
    assert not m.is_fallback(-1)
    fallback = {"strategy": {"mode": "fallback"}, "targets": [{}, {}]}
    balanced = {"strategy": {"mode": "loadbalance"}, "targets": [{}, {}]}
    assert m.is_fallback(1, fallback)
    assert not m.is_fallback(1, balanced)
    assert m.is_fallback(1, {"strategy": {"mode": " Fallback "}})


def test_a_path_past_the_configs_targets_is_decided_by_its_index_alone():
    balanced = {"strategy": {"mode": "loadbalance"}, "targets": [{}, {}]}
    assert m.is_fallback("config.targets[2].targets[1]", balanced), "no such target: its strategy is unknown"
    assert not m.is_fallback("config.targets[2].targets[0]", balanced)


def test_retries_count_from_one():
    assert m.retry_count({ATTR_RETRY_ATTEMPT_COUNT: 1}) == 1
    assert m.retry_count({ATTR_RETRY_ATTEMPT_COUNT: 0}) == 0
    assert m.retry_count({ATTR_RETRY_ATTEMPT_COUNT: -1}) == 0
    assert m.retry_count({ATTR_RETRY_ATTEMPT_COUNT: True}) == 0
    assert m.retry_count({}) == 0


def test_a_routing_config_keeps_strategies_and_targets_at_any_depth_to_16():
    config = '  {"strategy": {"mode": "Fallback"}, "api_key": "sk-x", "targets": [{"provider": "a"}, "b"]}'
    assert m.routing_config(config) == {"strategy": {"mode": "fallback"}, "targets": [{}, None]}
    deep = {"strategy": {"mode": "fallback"}}
    for _ in range(17):  # levels 0 to 17
        deep = {"targets": [deep]}
    skeleton = m.routing_config(json.dumps(deep))
    for _ in range(16):  # levels 0 to 16 are kept
        assert skeleton is not None
        skeleton = skeleton["targets"][0]
    assert skeleton == {"targets": [None]}, "level 17 is not"
    assert m.routing_config('{"targets": 3}') == {}


# ---- the bound on a data point's values, at its limits ----------------------------------------------


def test_the_bound_cuts_long_text_and_keeps_a_cut_value_already_kept():
    bound = m.AttributeBound(max_chars=4, max_distinct=1)
    assert bound.bound({ATTR_PROVIDER: "openai", m.ATTR_MODEL: "gpt-4o"}) == {
        ATTR_PROVIDER: "open",
        m.ATTR_MODEL: "gpt-",
    }
    assert bound.bound({ATTR_PROVIDER: "openai-eu", m.ATTR_MODEL: "gpt-4o-mini"}) == {
        ATTR_PROVIDER: "open",
        m.ATTR_MODEL: "gpt-",
    }, "cut to a value already kept: that value, even with no room for another"
    assert bound.bound({ATTR_PROVIDER: "azure", m.ATTR_MODEL: "o1-preview"}) == {
        ATTR_PROVIDER: m.OTHER,
        m.ATTR_MODEL: m.OTHER,
    }
    assert bound.distinct(ATTR_PROVIDER) == bound.distinct(m.ATTR_MODEL) == 1
    exact = m.AttributeBound(max_chars=4)
    assert exact.bound({m.ATTR_MODEL: "abcd"}) == {m.ATTR_MODEL: "abcd"}


def test_what_is_neither_text_nor_a_number_becomes_other_and_the_rest_is_still_bounded():
    bound = m.AttributeBound(max_chars=4)
    assert bound.bound({ATTR_PROVIDER: True, m.ATTR_MODEL: "gpt-4o"}) == {
        ATTR_PROVIDER: m.OTHER,
        m.ATTR_MODEL: "gpt-",
    }
    assert bound.bound({ATTR_PROVIDER: 1.5, m.ATTR_MODEL: "gpt-4o"}) == {
        ATTR_PROVIDER: m.OTHER,
        m.ATTR_MODEL: "gpt-",
    }
    assert bound.distinct(ATTR_PROVIDER) == 0


def test_true_is_no_status_code_even_after_status_1():
    bound = m.AttributeBound()
    assert bound.bound({m.ATTR_STATUS_CODE: 1}) == {m.ATTR_STATUS_CODE: 1}
    assert bound.bound({m.ATTR_STATUS_CODE: True}) == {m.ATTR_STATUS_CODE: m.OTHER}


def test_each_distinct_attribute_set_is_a_new_series_once():
    bound = m.AttributeBound()
    assert bound.bound_series({ATTR_PROVIDER: "a"}) == ({ATTR_PROVIDER: "a"}, True)
    assert bound.bound_series({ATTR_PROVIDER: "b"}) == ({ATTR_PROVIDER: "b"}, True)
    assert bound.bound_series({ATTR_PROVIDER: "a"}) == ({ATTR_PROVIDER: "a"}, False)
    assert bound.series == 2


def test_past_the_bound_each_shape_of_attribute_set_is_one_all_other_series():
    bound = m.AttributeBound(max_sets=1)
    assert bound.bound_series({ATTR_PROVIDER: "a"}) == ({ATTR_PROVIDER: "a"}, True)
    assert bound.bound_series({ATTR_PROVIDER: "b"}) == ({ATTR_PROVIDER: m.OTHER}, True)
    assert bound.bound_series({ATTR_PROVIDER: "c"}) == ({ATTR_PROVIDER: m.OTHER}, False)
    assert bound.bound_series({m.ATTR_MODEL: "x"}) == ({m.ATTR_MODEL: m.OTHER}, True), "another shape"
    assert bound.bound_series({m.ATTR_MODEL: "y"}) == ({m.ATTR_MODEL: m.OTHER}, False)
    assert bound.series == 3
