"""PortkeySpanExporter: configuration only; the sending is the OTLP exporter's (see test_export.py)."""

import logging
import shutil
import ssl
import subprocess
from types import MappingProxyType

import pytest
import requests
from opentelemetry.exporter.otlp.common import http as otlp_http
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from otel_portkey import PortkeySpanExporter
from otel_portkey._peers.loopback import LoopbackHandler, LoopbackServer, LoopbackService
from otel_portkey.exporter import tls_settings
from otel_portkey.testing import OtlpReceiver

from conftest import skip_or_fail


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


# ---- redirects: never followed, a failed export, counted and said once ------------------------------


class Redirecting(LoopbackService):
    """A Portkey endpoint that answers every export with ``status``, pointing to ``/elsewhere``,
    where it counts every request that arrives (none may)."""

    thread_name = "redirecting-endpoint"

    def __init__(self, status):
        self.answered = 0
        self.hits = 0
        endpoint = self

        class Handler(LoopbackHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path.startswith("/elsewhere"):
                    endpoint.hits += 1
                    self.reply(200)
                    return
                endpoint.answered += 1
                self.reply(
                    status, headers=[("location", f"{endpoint.url}/elsewhere?token=sentinel-in-location")]
                )

        self._server = LoopbackServer(Handler)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_failed_export_counted_said_once_and_never_followed(caplog, status):
    with Redirecting(status) as endpoint:
        exporter = PortkeySpanExporter(endpoint=f"{endpoint.url}/v1/otel", api_key="pk-5")
        with caplog.at_level(logging.WARNING):
            assert exporter.export([finished_span()]) == SpanExportResult.FAILURE
            assert exporter.export([finished_span(), finished_span()]) == SpanExportResult.FAILURE
        # The OTLP exporter alone takes the same answer for a success: the spans would be lost unseen.
        assert (
            OTLPSpanExporter(f"{endpoint.url}/v1/traces").export([finished_span()])
            == SpanExportResult.SUCCESS
        )
    assert endpoint.answered == 3
    assert endpoint.hits == 0, "nothing followed the redirect"
    assert exporter.dropped_spans == 3
    [warning] = [
        r for r in caplog.records if r.name.startswith("otel_portkey") and r.levelno >= logging.WARNING
    ]
    assert f"redirect (HTTP {status})" in warning.getMessage()
    assert "OTEL_EXPORTER_PORTKEY_ENDPOINT" in warning.getMessage()
    assert "sentinel-in-location" not in caplog.text
    assert "pk-5" not in caplog.text


def test_a_session_you_pass_gets_portkeys_tls_and_a_redirect_fails_the_export(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", "/collector/ca.pem")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "/collector/client.pem")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "/collector/client.key")
    monkeypatch.delenv("OTEL_EXPORTER_PORTKEY_CERTIFICATE", raising=False)
    session = requests.Session()
    with Redirecting(302) as endpoint:
        exporter = PortkeySpanExporter(endpoint=endpoint.url, api_key="pk-6", session=session)
        assert (session.verify, session.cert) == (True, None), "not the collector's CA and certificate"
        assert exporter.export([finished_span()]) == SpanExportResult.FAILURE
    assert endpoint.answered == 1
    assert endpoint.hits == 0
    yours = requests.Session()
    yours.cert = "/yours/client.pem"
    monkeypatch.setenv("OTEL_EXPORTER_PORTKEY_CERTIFICATE", "/portkey/ca.pem")
    PortkeySpanExporter(api_key="pk-6", session=yours)
    assert (yours.verify, yours.cert) == ("/portkey/ca.pem", "/yours/client.pem"), "your certificate is kept"


def test_tls_settings_come_from_the_arguments_then_portkeys_variables_never_the_collectors(
    monkeypatch, caplog
):
    for variable in TLS_VARIABLES:
        monkeypatch.setenv(variable, f"/collector/{variable.lower()}")
    for variable in ("OTEL_EXPORTER_PORTKEY_CERTIFICATE", *PORTKEY_CLIENT):
        monkeypatch.delenv(variable, raising=False)
    assert tls_settings() == (True, None)
    monkeypatch.setenv("OTEL_EXPORTER_PORTKEY_CERTIFICATE", "/p/ca.pem")
    monkeypatch.setenv("OTEL_EXPORTER_PORTKEY_CLIENT_CERTIFICATE", "/p/client.pem")
    assert tls_settings() == ("/p/ca.pem", "/p/client.pem")
    monkeypatch.setenv("OTEL_EXPORTER_PORTKEY_CLIENT_KEY", "/p/client.key")
    assert tls_settings() == ("/p/ca.pem", ("/p/client.pem", "/p/client.key"))
    assert tls_settings("/a/ca.pem", "/a/c.pem", "/a/k.pem") == ("/a/ca.pem", ("/a/c.pem", "/a/k.pem"))
    monkeypatch.delenv("OTEL_EXPORTER_PORTKEY_CLIENT_CERTIFICATE")
    with caplog.at_level(logging.WARNING, logger="otel_portkey"):
        assert tls_settings() == ("/p/ca.pem", None)
    assert "OTEL_EXPORTER_PORTKEY_CLIENT_KEY is set without" in caplog.text


# ---- TLS against a real server on loopback: a throwaway CA, a server and two client certificates -----

TLS_VARIABLES = (
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
)
PORTKEY_CLIENT = ("OTEL_EXPORTER_PORTKEY_CLIENT_CERTIFICATE", "OTEL_EXPORTER_PORTKEY_CLIENT_KEY")
COLLECTOR_CLIENT_CN = "app-42.prod.corp"
PORTKEY_CLIENT_CN = "portkey-client.test"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A throwaway CA and certificates it signs, made with the ``openssl`` command (``cryptography``
    is not among the test dependencies): the server's for 127.0.0.1, the collector's client
    certificate and one meant for Portkey."""
    openssl = shutil.which("openssl")
    if openssl is None:
        skip_or_fail("the openssl command is needed to make throwaway certificates")
    base = tmp_path_factory.mktemp("pki")

    def run(*args):
        subprocess.run([openssl, *args], cwd=base, check=True, capture_output=True)

    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    ca = ("-subj", "/CN=throwaway collector CA", "-addext", "basicConstraints=critical,CA:TRUE")
    ca += ("-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", *ca)
    leaves = {"server": ("127.0.0.1", "serverAuth", "subjectAltName=IP:127.0.0.1\n")}
    leaves["collector-client"] = (COLLECTOR_CLIENT_CN, "clientAuth", "")
    leaves["portkey-client"] = (PORTKEY_CLIENT_CN, "clientAuth", "")
    for name, (cn, usage, extra) in leaves.items():
        (base / f"{name}.ext").write_text(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            f"extendedKeyUsage={usage}\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n{extra}"
        )
        run("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        sign = (
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            f"{name}.ext",
        )
        run("x509", "-req", "-in", f"{name}.csr", "-out", f"{name}.pem", *sign)
    return base


class TlsEndpoint(LoopbackService):
    """An OTLP/HTTPS endpoint posing as Portkey with a certificate from the collector's CA. It asks
    for a client certificate (optional) and records, per export, the CN of the one presented."""

    thread_name = "tls-endpoint"

    def __init__(self, pki):
        self.presented = []
        endpoint = self

        class Handler(LoopbackHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length") or 0))
                peer = self.connection.getpeercert()
                subject = dict(item for rdn in peer["subject"] for item in rdn) if peer else {}
                endpoint.presented.append(subject.get("commonName"))
                self.reply(200, b"", "application/x-protobuf")

        self._server = LoopbackServer(Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki / "server.pem", pki / "server.key")
        context.load_verify_locations(pki / "ca.pem")
        context.verify_mode = ssl.CERT_OPTIONAL
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}"


@pytest.fixture
def clean_tls_env(monkeypatch):
    for variable in (*TLS_VARIABLES, "OTEL_EXPORTER_PORTKEY_CERTIFICATE", *PORTKEY_CLIENT):
        monkeypatch.delenv(variable, raising=False)
    for variable in (
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    ):
        monkeypatch.delenv(variable, raising=False)


def collector_client_certificate(monkeypatch, pki, form):
    monkeypatch.setenv(f"OTEL_EXPORTER_OTLP{form}_CLIENT_CERTIFICATE", str(pki / "collector-client.pem"))
    monkeypatch.setenv(f"OTEL_EXPORTER_OTLP{form}_CLIENT_KEY", str(pki / "collector-client.key"))


@pytest.mark.integration
@pytest.mark.parametrize("form", ["", "_TRACES"])
def test_the_collectors_client_certificate_is_never_presented_to_portkey(
    monkeypatch, pki, clean_tls_env, form
):
    monkeypatch.setenv(f"OTEL_EXPORTER_OTLP{form}_CERTIFICATE", str(pki / "ca.pem"))
    collector_client_certificate(monkeypatch, pki, form)
    monkeypatch.setenv("OTEL_EXPORTER_PORTKEY_CERTIFICATE", str(pki / "ca.pem"))  # so the handshake succeeds
    with TlsEndpoint(pki) as endpoint:
        # Witness: the OTLP exporter alone presents the collector's certificate to this endpoint.
        assert (
            OTLPSpanExporter(f"{endpoint.url}/v1/traces").export([finished_span()])
            == SpanExportResult.SUCCESS
        )
        exporter = PortkeySpanExporter(endpoint=endpoint.url, api_key="pk-7")
        assert exporter.export([finished_span()]) == SpanExportResult.SUCCESS
        monkeypatch.setenv("OTEL_EXPORTER_PORTKEY_CLIENT_CERTIFICATE", str(pki / "portkey-client.pem"))
        monkeypatch.setenv("OTEL_EXPORTER_PORTKEY_CLIENT_KEY", str(pki / "portkey-client.key"))
        ours = PortkeySpanExporter(endpoint=endpoint.url, api_key="pk-7")
        assert ours.export([finished_span()]) == SpanExportResult.SUCCESS
    assert endpoint.presented == [COLLECTOR_CLIENT_CN, None, PORTKEY_CLIENT_CN]


@pytest.mark.integration
@pytest.mark.parametrize("form", ["", "_TRACES"])
def test_the_collectors_ca_does_not_replace_the_trust_store_for_portkey(
    monkeypatch, pki, clean_tls_env, form
):
    monkeypatch.setenv(f"OTEL_EXPORTER_OTLP{form}_CERTIFICATE", str(pki / "ca.pem"))
    collector_client_certificate(monkeypatch, pki, form)
    with TlsEndpoint(pki) as endpoint:
        # Witness: the OTLP exporter alone trusts the endpoint because the collector's CA signed it.
        assert (
            OTLPSpanExporter(f"{endpoint.url}/v1/traces").export([finished_span()])
            == SpanExportResult.SUCCESS
        )
        exporter = PortkeySpanExporter(endpoint=endpoint.url, api_key="pk-8", timeout=1)
        assert exporter.export([finished_span()]) == SpanExportResult.FAILURE, (
            "the certificate is not trusted"
        )
        assert exporter.dropped_spans == 1
        # Portkey's own CA setting is what makes it trusted.
        monkeypatch.setenv("OTEL_EXPORTER_PORTKEY_CERTIFICATE", str(pki / "ca.pem"))
        trusted = PortkeySpanExporter(endpoint=endpoint.url, api_key="pk-8")
        assert trusted.export([finished_span()]) == SpanExportResult.SUCCESS
    assert endpoint.presented == [COLLECTOR_CLIENT_CN, None], "one export from the OTLP exporter, one trusted"


def test_a_ca_set_for_portkey_wins_over_requests_ca_bundle(monkeypatch):
    """requests lets ``REQUESTS_CA_BUNDLE`` replace a session's ``verify``; the CA set for Portkey
    (``OTEL_EXPORTER_PORTKEY_CERTIFICATE``) stays. Without one, requests' own environment applies."""
    from otel_portkey import exporter as exporter_module

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/corp/ca.pem")
    url = "https://api.portkey.ai/v1/otel/v1/traces"
    pinned = exporter_module._session_class()(frozenset(), "/portkey/ca.pem", "/portkey/client.pem")
    settings = pinned.merge_environment_settings(url, {}, None, True, None)
    assert (settings["verify"], settings["cert"]) == ("/portkey/ca.pem", "/portkey/client.pem")
    system = exporter_module._session_class()(frozenset(), True, None)
    assert system.merge_environment_settings(url, {}, None, True, None)["verify"] == "/corp/ca.pem"
