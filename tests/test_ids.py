from hypothesis import given
from hypothesis import strategies as st

from otel_portkey._contract.ids import format_span_id, format_trace_id, is_span_id, is_trace_id


@given(st.integers(min_value=1, max_value=2**128 - 1))
def test_trace_ids_are_32_lowercase_hex_and_round_trip(trace_id):
    text = format_trace_id(trace_id)
    assert is_trace_id(text)
    assert int(text, 16) == trace_id


@given(st.integers(min_value=1, max_value=2**64 - 1))
def test_span_ids_are_16_lowercase_hex_and_round_trip(span_id):
    text = format_span_id(span_id)
    assert is_span_id(text)
    assert int(text, 16) == span_id


def test_validators_reject_wrong_shapes():
    assert not is_trace_id("0" * 32)
    assert not is_trace_id("A" * 32)
    assert not is_trace_id("a" * 31)
    assert not is_span_id("0" * 16)
    assert not is_span_id("g" * 16)


def test_ids_are_exactly_w3c_shaped():
    assert format_trace_id(1) == "0" * 31 + "1"
    assert format_span_id(2**64 - 1) == "f" * 16
    assert is_trace_id("0" * 31 + "1")
    assert is_span_id("0123456789abcdef")
    assert not is_trace_id("1" * 33)
    assert not is_span_id("1" * 15)
    assert not is_span_id("1" * 17)
    assert not is_trace_id("X" * 31 + "1"), "hex digits only"
    assert not is_span_id("0" * 15 + "X")
