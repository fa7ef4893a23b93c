import random

from hypothesis import given
from hypothesis import strategies as st

from otel_portkey._contract.ids import format_span_id, format_trace_id, is_span_id, is_trace_id, new_span_id


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


@given(st.integers(min_value=0, max_value=2**32))
def test_new_span_ids_are_valid_for_any_seed(seed):
    assert is_span_id(new_span_id(random.Random(seed)))


def test_new_span_id_never_returns_the_all_zero_id():
    class ZeroFirst(random.Random):
        draws = 0

        def getrandbits(self, k):
            self.draws += 1
            return 0 if self.draws == 1 else 0xABC

    rng = ZeroFirst()
    assert new_span_id(rng) == "0000000000000abc"
    assert rng.draws == 2


def test_validators_reject_wrong_shapes():
    assert not is_trace_id("0" * 32)
    assert not is_trace_id("A" * 32)
    assert not is_trace_id("a" * 31)
    assert not is_span_id("0" * 16)
    assert not is_span_id("g" * 16)
