"""The gateway readings themselves, against Portkey's documented examples."""

from otel_portkey._peers.gateway_reading import (
    NEW_SPAN,
    GatewayReading,
    parse_baggage,
    parse_traceparent,
    read_as_hosted,
    read_as_oss,
)

DOCUMENTED_TRACEPARENT = "00-bad90143930ea019df8f681254fb2393-42df8ac2dde4ac52-00"


def test_hosted_reads_the_documented_traceparent():
    reading = read_as_hosted({"traceparent": DOCUMENTED_TRACEPARENT}, "POST", "/v1/chat/completions")
    assert reading.trace_id == "bad90143930ea019df8f681254fb2393"
    assert reading.parent_span_id == "42df8ac2dde4ac52"
    assert reading.span_id == NEW_SPAN
    assert reading.span_name == "POST /v1/chat/completions"
    assert read_as_oss({"traceparent": DOCUMENTED_TRACEPARENT}) == GatewayReading(None, None, None, None)


def test_portkey_headers_win_over_traceparent():
    headers = {
        "traceparent": DOCUMENTED_TRACEPARENT,
        "X-Portkey-Trace-Id": "my-trace",
        "x-portkey-span-id": "s1",
        "x-portkey-span-name": "chat gpt-4o",
    }
    reading = read_as_hosted(headers)
    assert (reading.trace_id, reading.span_id, reading.span_name) == ("my-trace", "s1", "chat gpt-4o")
    assert reading.parent_span_id == "42df8ac2dde4ac52", (
        "a field x-portkey-* leaves out comes from traceparent"
    )


def test_baggage_is_url_decoded_and_merged_with_portkey_metadata_winning():
    headers = {
        "baggage": "tenant.id=acme,_user=from%20baggage,note=a%2Cb;prop=1, plan=free",
        "x-portkey-metadata": '{"_user": "alice", "plan": "pro"}',
    }
    assert read_as_hosted(headers).metadata == {
        "tenant.id": "acme",
        "_user": "alice",
        "note": "a,b",
        "plan": "pro",
    }
    assert read_as_oss(headers).metadata == {"_user": "alice", "plan": "pro"}


def test_readings_of_odd_input():
    assert parse_traceparent("00-" + "0" * 32 + "-42df8ac2dde4ac52-01") is None
    assert parse_traceparent("garbage") is None
    assert parse_baggage("=x,novalue,k=v+w,%E2%82%AC=%zz") == {"k": "v+w", "€": "%zz"}
    assert read_as_oss({"x-portkey-metadata": "[1, 2]"}).metadata == {}
    assert read_as_oss({"x-portkey-metadata": "{not json"}).metadata == {}


def test_rule_breaks_name_each_entry_outside_portkeys_rules():
    reading = GatewayReading("t", None, None, None, {"ok": "v", "long": "x" * 129, "n": 5, "c": "a\nb"})
    assert reading.rule_breaks() == [
        "'long': 129 characters",
        "'n': not a string (int)",
        "'c': a control character",
    ]
    assert GatewayReading("t", None, None, None, {"ok": "x" * 128}).rule_breaks() == []
