"""``PortkeySpanExporter``: the OTLP/HTTP span exporter, configured for Portkey's OTLP endpoint.

Entry point ``portkey`` (group ``opentelemetry_traces_exporter``), so
``OTEL_TRACES_EXPORTER=otlp,portkey`` sends every span to a collector and to Portkey.

Keeping the collector's credentials home
----------------------------------------
The OTLP exporter merges ``OTEL_EXPORTER_OTLP_HEADERS`` / ``OTEL_EXPORTER_OTLP_TRACES_HEADERS``
into the headers of every instance. Under ``otlp,portkey`` those are the collector's credentials,
and they must never reach Portkey. The OTLP exporter offers no public way to say "not the
environment's headers", so two layers keep them out:

1. After construction, the names from those variables (minus headers we set ourselves) are
   removed from the dict the OTLP client sends from (``_client._headers`` in
   opentelemetry-exporter-otlp-proto-http 1.4x), and the removal is checked (including any
   ``_headers`` copy on the exporter). This is the exporter's one private-layout dependency (the
   bridge's others are in ``_otel/headers.py`` and ``_otel/sdk_internals.py``, each probed and tested).
2. The exporter is given its own ``requests.Session`` through the public ``session=`` argument,
   and that session removes those names from every prepared request just before it goes on the
   wire, whatever copy of the headers the OTLP exporter built the request from. (It also means
   a credential-provider session, ``OTEL_PYTHON_EXPORTER_OTLP_HTTP_(TRACES_)CREDENTIAL_PROVIDER``,
   meant for the collector is not used for Portkey either; pass ``session=`` to use your own.)

Layer 2 alone is not trusted, because nothing public tells us the OTLP exporter really sends
through the session it was given (older and future versions differ). So the exporter FAILS
CLOSED: when the variables name headers to strip and layer 1 cannot verify they are gone (the
layout is not there, is not a dict, or a header survives removal), it warns once, naming the
variables and never their values, and drops every span meant for Portkey (``export`` returns
FAILURE, ``dropped_spans`` counts them); nothing is sent. With no such headers in the
environment there is nothing to strip, and the exporter works normally whatever the layout.

TLS: Portkey's own settings only
--------------------------------
The OTLP exporter also takes its CA file and client certificate from ``OTEL_EXPORTER_OTLP_CERTIFICATE``,
``OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`` and ``OTEL_EXPORTER_OTLP_CLIENT_KEY`` (and their ``_TRACES_``
forms) when none is passed. Those are the collector's: its private CA would replace the trust store
for Portkey, and its client certificate would be presented to whoever answers at Portkey's address.
``PortkeySpanExporter`` reads only ``OTEL_EXPORTER_PORTKEY_CERTIFICATE``,
``OTEL_EXPORTER_PORTKEY_CLIENT_CERTIFICATE`` and ``OTEL_EXPORTER_PORTKEY_CLIENT_KEY`` (or the
``certificate_file=``, ``client_certificate_file=``, ``client_key_file=`` arguments); without them
Portkey is checked against the default trust store of ``requests`` (certifi's bundle, or
``REQUESTS_CA_BUNDLE``) and no client certificate is presented. Its session keeps these settings
whatever the OTLP exporter assigns to it (the environment's values it falls back to are ignored,
through the public ``session=`` argument only); a session you pass gets them put back after
construction. ``tests/test_exporter.py`` proves it against a TLS server on loopback, and fails the
day the OTLP exporter stops sending through the session it is given.

Redirects
---------
Nothing is ever sent to another address than the endpoint: redirects are not followed (the OTLP
exporter asks for none, and the exporter's own session refuses them whatever it is asked), and a
3xx answer is a failed export (the OTLP exporter alone counts it a success, and the spans would be
lost unseen): ``export`` returns FAILURE, ``dropped_spans`` counts the spans, and one warning says
so (a ``requests`` response hook notes the status; a session you pass gets the hook too).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Final

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_HEADERS,
    OTEL_EXPORTER_OTLP_TRACES_HEADERS,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.util.re import parse_env_headers

from ._otel.diagnostics import warn_once
from .config import usable_api_key
from .environment_variables import (
    OTEL_EXPORTER_PORTKEY_CERTIFICATE,
    OTEL_EXPORTER_PORTKEY_CLIENT_CERTIFICATE,
    OTEL_EXPORTER_PORTKEY_CLIENT_KEY,
    OTEL_EXPORTER_PORTKEY_ENDPOINT,
    PORTKEY_API_KEY,
)

DEFAULT_ENDPOINT: Final = "https://api.portkey.ai/v1/otel"
API_KEY_HEADER: Final = "x-portkey-api-key"
TRACES_PATH: Final = "/v1/traces"

_log = logging.getLogger(__name__)


def traces_url(base: str) -> str:
    """``<base>/v1/traces`` (a base that already ends with it is kept)."""
    base = base.strip().rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


def collector_header_names(ours: Mapping[str, str]) -> frozenset[str]:
    """Lowercased names of the headers the OTLP exporter takes from the environment (read as it
    reads them), minus the ones in ``ours``, which win over the environment's."""
    from_env = parse_env_headers(
        os.environ.get(OTEL_EXPORTER_OTLP_TRACES_HEADERS) or os.environ.get(OTEL_EXPORTER_OTLP_HEADERS, ""),
        liberal=True,
    )
    return frozenset(name.lower() for name in from_env) - {name.lower() for name in ours}


Verify = bool | str  # requests' ``verify``: True (the default trust store) or a CA file
Cert = str | tuple[str, str] | None  # requests' ``cert``: a PEM file, (certificate, key), or none


def tls_settings(
    certificate_file: str | None = None,
    client_certificate_file: str | None = None,
    client_key_file: str | None = None,
) -> tuple[Verify, Cert]:
    """``(verify, cert)`` for Portkey's endpoint from the arguments, else Portkey's own variables
    (never the collector's ``OTEL_EXPORTER_OTLP_*`` ones), as the OTLP exporter pairs them."""
    ca = certificate_file or os.environ.get(OTEL_EXPORTER_PORTKEY_CERTIFICATE) or None
    client = client_certificate_file or os.environ.get(OTEL_EXPORTER_PORTKEY_CLIENT_CERTIFICATE) or None
    key = client_key_file or os.environ.get(OTEL_EXPORTER_PORTKEY_CLIENT_KEY) or None
    if key and not client:
        warn_once(
            "portkey client key without certificate",
            f"otel-portkey: {OTEL_EXPORTER_PORTKEY_CLIENT_KEY} is set without "
            f"{OTEL_EXPORTER_PORTKEY_CLIENT_CERTIFICATE}: no client certificate is presented to Portkey",
        )
    return ca or True, ((client, key) if client and key else client)


# The 3xx status the Portkey endpoint answered in this thread's export, if any (the OTLP transport
# sends synchronously, so the export and its requests share a thread).
_answered = threading.local()


def _note_redirect(response: Any, *args: Any, **kwargs: Any) -> None:
    """A ``requests`` response hook: remember a 3xx answer (it is never followed)."""
    status = getattr(response, "status_code", None)
    if isinstance(status, int) and 300 <= status < 400:
        _answered.redirect = status


@functools.cache
def _session_class() -> Any:
    """The ``requests.Session`` the exporter sends through (made once, ``requests`` imported late)."""
    import requests

    class PortkeySession(requests.Session):
        """Removes the collector's headers from every request it sends, follows no redirect, and
        keeps Portkey's TLS settings: what the OTLP exporter assigns to ``verify`` and ``cert``
        (the collector's CA and client certificate, from the environment) is ignored."""

        def __init__(self, strip: frozenset[str], verify: Verify, cert: Cert) -> None:
            self._portkey_tls = (verify, cert)  # before Session.__init__ assigns its defaults
            super().__init__()
            self._strip = strip
            self.max_redirects = 0
            self.hooks["response"].append(_note_redirect)

        @property
        def verify(self) -> Verify:
            return self._portkey_tls[0]

        @verify.setter
        def verify(self, value: object) -> None:
            pass

        @property
        def cert(self) -> Cert:
            return self._portkey_tls[1]

        @cert.setter
        def cert(self, value: object) -> None:
            pass

        def merge_environment_settings(
            self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
        ) -> Any:
            """requests lets ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` win over a session's
            ``verify``: a CA set for Portkey (``OTEL_EXPORTER_PORTKEY_CERTIFICATE``) wins here."""
            settings = dict(super().merge_environment_settings(url, proxies, stream, verify, cert))
            portkey_verify, portkey_cert = self._portkey_tls
            if isinstance(portkey_verify, str):
                settings["verify"] = portkey_verify
            if portkey_cert is not None:
                settings["cert"] = portkey_cert
            return settings

        def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
            for name in self._strip:
                if name in request.headers:  # case-insensitive
                    del request.headers[name]
                    _log.debug("otel-portkey: removed a collector header at send time")
            kwargs["allow_redirects"] = False
            return super().send(request, **kwargs)

    return PortkeySession


class PortkeySpanExporter(OTLPSpanExporter):
    """OTLP/HTTP protobuf to Portkey's ``<endpoint>/v1/traces``, authenticated by ``x-portkey-api-key``.

    ``endpoint`` defaults to ``OTEL_EXPORTER_PORTKEY_ENDPOINT`` or ``https://api.portkey.ai/v1/otel``,
    ``api_key`` to ``PORTKEY_API_KEY``; timeout and compression follow ``OTEL_EXPORTER_OTLP_TRACES_*``
    and ``OTEL_EXPORTER_OTLP_*`` as for any OTLP exporter. Headers meant for your collector
    (``OTEL_EXPORTER_OTLP_HEADERS``) are not sent to Portkey; when that cannot be verified it
    fails closed (see the module docstring). TLS takes ``certificate_file``,
    ``client_certificate_file`` and ``client_key_file``, else ``OTEL_EXPORTER_PORTKEY_CERTIFICATE``,
    ``_CLIENT_CERTIFICATE`` and ``_CLIENT_KEY``, never the collector's variables. A redirect is
    not followed and fails the export. Without an API key it warns once, naming the variable, and
    drops spans instead of sending them; the application runs on.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        self._api_key = usable_api_key(api_key or os.environ.get(PORTKEY_API_KEY))
        self.dropped_spans = 0  # spans Portkey did not accept: no key, endpoint down or refusing
        base = endpoint or os.environ.get(OTEL_EXPORTER_PORTKEY_ENDPOINT) or DEFAULT_ENDPOINT
        sent_headers = dict(headers or {})
        if self._api_key is not None:
            sent_headers[API_KEY_HEADER] = self._api_key
        else:
            _log.warning(
                "otel-portkey: PortkeySpanExporter has no API key: set %s; spans for Portkey are dropped",
                PORTKEY_API_KEY,
            )
        strip = collector_header_names(sent_headers)
        verify, cert = tls_settings(
            kwargs.pop("certificate_file", None),
            kwargs.pop("client_certificate_file", None),
            kwargs.pop("client_key_file", None),
        )
        session = kwargs.get("session")
        if session is None:
            session = kwargs["session"] = _session_class()(strip, verify, cert)
            own_cert = None
        else:  # yours: it gets Portkey's TLS settings back after construction, and a 3xx is noted
            own_cert = getattr(session, "cert", None)
            session.hooks["response"].append(_note_redirect)
        super().__init__(
            endpoint=traces_url(base),
            headers=sent_headers,
            certificate_file=verify if isinstance(verify, str) else None,
            client_certificate_file=cert[0] if isinstance(cert, tuple) else cert,
            client_key_file=cert[1] if isinstance(cert, tuple) else None,
            **kwargs,
        )
        if not isinstance(session, _session_class()):
            session.verify, session.cert = verify, cert if cert is not None else own_cert
        self._collector_headers_kept_home = self._keep_collector_headers_home(strip)
        if not self._collector_headers_kept_home:
            _log.warning(
                "otel-portkey: PortkeySpanExporter cannot verify that the headers from %s / %s "
                "(meant for your collector) are kept away from Portkey: this version of "
                "opentelemetry-exporter-otlp-proto-http keeps its headers differently; spans for "
                "Portkey are dropped. Unset those variables for this process, or use a collector "
                "to reach Portkey.",
                OTEL_EXPORTER_OTLP_HEADERS,
                OTEL_EXPORTER_OTLP_TRACES_HEADERS,
            )

    def _keep_collector_headers_home(self, strip: frozenset[str]) -> bool:
        """Remove ``strip`` from the headers the OTLP client sends; True when verifiably gone
        (or when there is nothing to remove)."""
        if not strip:
            return True
        sent = getattr(getattr(self, "_client", None), "_headers", None)
        if not isinstance(sent, dict):
            return False
        copies = [sent]
        copy = getattr(self, "_headers", None)  # older exporters kept one on the instance
        if copy is not None:
            if not isinstance(copy, dict):
                return False
            copies.append(copy)
        for held in copies:
            for name in [name for name in held if name.lower() in strip]:
                del held[name]
        return not any(name.lower() in strip for held in copies for name in held)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Send ``spans``; a failure (no key, collector headers not verifiably stripped, endpoint
        down or refusing) is counted, never raised."""
        if self._api_key is None or not self._collector_headers_kept_home:
            result = SpanExportResult.FAILURE
        else:
            _answered.redirect = None
            result = super().export(spans)
            redirect, _answered.redirect = _answered.redirect, None
            if redirect is not None:  # the OTLP exporter counts a 3xx a success: it is not one
                result = SpanExportResult.FAILURE
                warn_once(
                    "portkey endpoint redirected",
                    f"otel-portkey: Portkey's OTLP endpoint answered a redirect (HTTP {redirect}); "
                    "it is not followed and the spans are dropped. Set "
                    f"{OTEL_EXPORTER_PORTKEY_ENDPOINT} to the address that takes them.",
                )
        if result is not SpanExportResult.SUCCESS:
            self.dropped_spans += len(spans)
        return result

    def __repr__(self) -> str:  # never show the key
        key = "set" if self._api_key else "missing"
        return f"PortkeySpanExporter(endpoint={self._endpoint!r}, api_key={key})"
