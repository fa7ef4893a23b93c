"""PortkeySpanExporter: configuration only; the sending is the OTLP exporter's (see test_export.py)."""

import logging

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from otel_portkey import PortkeySpanExporter
from otel_portkey.testing.otlp_receiver import OtlpReceiver


def finished_span():
    span = TracerProvider().get_tracer("t").start_span("exported")
    span.end()
    return span


def test_defaults_point_at_hosted_portkey(monkeypatch):
    monkeypatch.setenv("PORTKEY_API_KEY", "pk-1")
    monkeypatch.delenv("OTEL_EXPORTER_PORTKEY_ENDPOINT", raising=False)
    exporter = PortkeySpanExporter()
    assert exporter._endpoint == "https://api.portkey.ai/v1/otel/v1/traces"
    assert exporter._client._headers["x-portkey-api-key"] == "pk-1"
    assert "pk-1" not in repr(exporter)


def test_endpoint_and_key_from_arguments_win_and_collector_headers_stay_home(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_PORTKEY_ENDPOINT", "http://env.test/otel")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer collector-token")
    exporter = PortkeySpanExporter(endpoint="http://arg.test/v1/otel/", api_key="pk-2")
    assert exporter._endpoint == "http://arg.test/v1/otel/v1/traces"
    assert exporter._client._headers["x-portkey-api-key"] == "pk-2"
    assert "authorization" not in exporter._client._headers


def test_timeout_and_compression_follow_the_otlp_conventions(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "3")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    exporter = PortkeySpanExporter(api_key="pk")
    assert exporter._client._timeout == 3
    assert exporter._compression.value == "gzip"


def test_spans_reach_the_endpoint_with_the_key(monkeypatch):
    with OtlpReceiver(required_headers={"x-portkey-api-key": "pk-3"}, path="/v1/otel/v1/traces") as receiver:
        exporter = PortkeySpanExporter(endpoint=f"{receiver.endpoint}/v1/otel", api_key="pk-3")
        assert exporter.export([finished_span()]) == SpanExportResult.SUCCESS
    assert [s.name for s in receiver.spans] == ["exported"]


def test_without_a_key_it_warns_naming_the_variable_and_sends_nothing(monkeypatch, caplog):
    monkeypatch.delenv("PORTKEY_API_KEY", raising=False)
    with OtlpReceiver() as receiver:
        with caplog.at_level(logging.WARNING, logger="otel_portkey"):
            exporter = PortkeySpanExporter(endpoint=receiver.endpoint)
        assert exporter.export([finished_span()]) == SpanExportResult.FAILURE
    assert "set PORTKEY_API_KEY" in caplog.text
    assert receiver.exports == receiver.rejected == []


def test_an_unreachable_endpoint_fails_the_export_without_raising():
    exporter = PortkeySpanExporter(endpoint="http://127.0.0.1:9/v1/otel", api_key="pk", timeout=1)
    assert exporter.export([finished_span()]) == SpanExportResult.FAILURE


def test_a_key_read_from_a_file_is_stripped_and_a_broken_key_is_refused(monkeypatch, caplog):
    monkeypatch.setenv("PORTKEY_API_KEY", "  pk-from-file\n")
    assert PortkeySpanExporter()._client._headers["x-portkey-api-key"] == "pk-from-file"
    monkeypatch.setenv("PORTKEY_API_KEY", "pk-a\nb-secret")
    with caplog.at_level(logging.WARNING, logger="otel_portkey"):
        exporter = PortkeySpanExporter()
    assert exporter.export([finished_span()]) == SpanExportResult.FAILURE
    assert "b-secret" not in caplog.text
    assert "holds characters an HTTP header cannot carry" in caplog.text
