"""PortkeySpanExporter: configuration only; the sending is the OTLP exporter's (see test_export.py)."""

import logging
from types import MappingProxyType

import pytest
from opentelemetry.exporter.otlp.common import http as otlp_http
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from otel_portkey import PortkeySpanExporter
from otel_portkey.testing import OtlpReceiver


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


COLLECTOR_HEADERS = "authorization=Bearer sentinel-collector-secret,x-collector-token=sentinel2"
SENTINELS = ("authorization", "x-collector-token", "sentinel-collector-secret", "sentinel2")


def set_collector_headers(monkeypatch, variable="OTEL_EXPORTER_OTLP_HEADERS"):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_HEADERS", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", raising=False)
    monkeypatch.setenv(variable, COLLECTOR_HEADERS)


def portkey_standin():
    return OtlpReceiver(required_headers={"x-portkey-api-key": "pk-4"}, path="/v1/otel/v1/traces")


def assert_no_collector_header(received_headers):
    assert received_headers["x-portkey-api-key"] == "pk-4"
    assert "authorization" not in received_headers
    assert "x-collector-token" not in received_headers
    sent = repr(received_headers).lower()
    assert not [s for s in SENTINELS if s in sent]


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"])
def test_collector_headers_from_the_environment_never_reach_portkey(monkeypatch, variable):
    set_collector_headers(monkeypatch, variable)
    with portkey_standin() as receiver:
        exporter = PortkeySpanExporter(endpoint=f"{receiver.endpoint}/v1/otel", api_key="pk-4")
        assert exporter.export([finished_span()]) == SpanExportResult.SUCCESS
    assert receiver.rejected == []
    [export] = receiver.exports
    assert [s.name for s in export.spans] == ["exported"]
    assert_no_collector_header(export.headers)


def test_a_collector_header_the_removal_missed_is_removed_on_the_wire(monkeypatch):
    """The session the exporter sends through drops collector headers whatever copy they came from."""
    set_collector_headers(monkeypatch)
    with portkey_standin() as receiver:
        exporter = PortkeySpanExporter(endpoint=f"{receiver.endpoint}/v1/otel", api_key="pk-4")
        exporter._client._headers.update({"Authorization": "Bearer sentinel-collector-secret"})
        assert exporter.export([finished_span()]) == SpanExportResult.SUCCESS
    [export] = receiver.exports
    assert_no_collector_header(export.headers)


class ReadOnlyHeaders(otlp_http._OTLPHTTPClient):
    """Another layout: the client keeps its headers in a read-only view, not a dict."""

    @property
    def _headers(self):
        return self._view

    @_headers.setter
    def _headers(self, value):
        self._view = MappingProxyType(dict(value))


class StickyDict(dict):
    def __delitem__(self, key):
        pass

    def pop(self, key, *default):
        return self[key]


class HeadersSurviveRemoval(otlp_http._OTLPHTTPClient):
    """Another layout: a dict that ignores removals (a header from the environment survives)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._headers = StickyDict(self._headers)


@pytest.mark.parametrize("client_class", [ReadOnlyHeaders, HeadersSurviveRemoval])
def test_when_collector_headers_cannot_be_verifiably_removed_nothing_is_sent(
    monkeypatch, caplog, client_class
):
    monkeypatch.setattr(otlp_http, "_OTLPHTTPClient", client_class)
    set_collector_headers(monkeypatch)
    with portkey_standin() as receiver, caplog.at_level(logging.WARNING, logger="otel_portkey"):
        exporter = PortkeySpanExporter(endpoint=f"{receiver.endpoint}/v1/otel", api_key="pk-4")
        assert isinstance(exporter._client, client_class)
        assert exporter.export([finished_span()]) == SpanExportResult.FAILURE
        assert exporter.export([finished_span(), finished_span()]) == SpanExportResult.FAILURE
    assert receiver.exports == receiver.rejected == []
    assert exporter.dropped_spans == 3
    [warning] = [
        r for r in caplog.records if r.name.startswith("otel_portkey") and r.levelno >= logging.WARNING
    ]
    assert "OTEL_EXPORTER_OTLP_HEADERS" in warning.getMessage()
    assert not [s for s in SENTINELS[2:] if s in caplog.text]


def test_without_collector_headers_another_layout_still_exports(monkeypatch, caplog):
    """Nothing to strip, nothing to verify: the exporter works whatever the OTLP client's layout."""
    monkeypatch.setattr(otlp_http, "_OTLPHTTPClient", ReadOnlyHeaders)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_HEADERS", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", raising=False)
    with portkey_standin() as receiver, caplog.at_level(logging.WARNING, logger="otel_portkey"):
        exporter = PortkeySpanExporter(endpoint=f"{receiver.endpoint}/v1/otel", api_key="pk-4")
        assert exporter.export([finished_span()]) == SpanExportResult.SUCCESS
    assert [s.name for s in receiver.spans] == ["exported"]
    assert "OTEL_EXPORTER_OTLP_HEADERS" not in caplog.text
