"""``otel-portkey doctor``: what is configured, what is reachable, what a call would carry."""

from __future__ import annotations

import http.client
import importlib
import logging
import os
import re
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any, Final
from urllib.parse import urlsplit

from opentelemetry import metrics
from opentelemetry.environment_variables import (
    OTEL_LOGS_EXPORTER,
    OTEL_METRICS_EXPORTER,
    OTEL_TRACES_EXPORTER,
)
from opentelemetry.instrumentation.dependencies import (
    get_dependency_conflicts,
    get_dist_dependency_conflicts,
)
from opentelemetry.propagators.textmap import default_setter
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_HEADERS,
    OTEL_EXPORTER_OTLP_INSECURE,
    OTEL_EXPORTER_OTLP_LOGS_ENDPOINT,
    OTEL_EXPORTER_OTLP_LOGS_PROTOCOL,
    OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
    OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_RESOURCE_ATTRIBUTES,
    OTEL_SERVICE_NAME,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, set_span_in_context
from opentelemetry.util.re import parse_env_headers

from .. import environment_variables as ev
from .._contract.call import gateway_prefix
from .._contract.metadata import parse_key_values
from .._otel.bridge import Bridge
from .._otel.processor import PortkeySpanProcessor
from ..config import PortkeySettings

PACKAGES: Final = (
    "otel-portkey",
    "httpx",
    "httpx2",
    "openai",
    "portkey-ai",
    "langchain",
    "langchain-openai",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation",
    "opentelemetry-instrumentation-httpx",
    "opentelemetry-exporter-otlp-proto-http",
    "opentelemetry-exporter-otlp-proto-grpc",
    "opentelemetry-distro",
    "opentelemetry-instrumentation-genai-langchain",
    "opentelemetry-instrumentation-genai-openai",
    "opentelemetry-instrumentation-genai-portkey",
)
SECRET_WORDS: Final = ("KEY", "TOKEN", "SECRET", "PASSWORD", "AUTHORIZATION", "CREDENTIALS", "HEADERS")
SECRET_WORDS_SET: Final = frozenset(SECRET_WORDS)
SAMPLE_TRACE_ID: Final = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SAMPLE_SPAN_ID: Final = 0x00F067AA0BA902B7


@dataclass
class Report:
    """Lines to show and problems found, each problem with its fix."""

    lines: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)

    def add(self, line: str = "") -> None:
        self.lines.append(line)

    def problem(self, what: str, fix: str) -> None:
        self.problems.append((what, fix))

    def text(self) -> str:
        """The report for a terminal: each line and problem made :func:`printable` (whatever came from
        a remote endpoint or the environment cannot move the cursor, colour or forge a line)."""
        out = [printable(line) for line in self.lines]
        if self.problems:
            out.append("")
            out.append(f"{len(self.problems)} problem(s):")
            out += [f"  ✗ {printable(what)}\n      fix: {printable(fix)}" for what, fix in self.problems]
        else:
            out += ["", "All good: the bridge will join OTel traces and Portkey logs here."]
        return "\n".join(out)


def mask(name: str, value: str) -> str:
    """Secrets shown by length only: ``PORTKEY_API_KEY=<set, 32 chars>`` (a word of the name is
    KEY, TOKEN, ...; ``PORTKEY`` alone is not); a password inside a URL is replaced by ``***``."""
    if SECRET_WORDS_SET & set(name.upper().split("_")):
        return f"<set, {len(value)} chars>"
    return redact_url(value)


# A URL in free text: its scheme, then everything up to white space or a quote (a query may hold commas).
_URL: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*")
# ``user:password@host`` without a scheme (as a setting's warning may quote it).
_BARE_USERINFO: Final = re.compile(r"(?<![\w.+-])[^\s'\"<>/@:=,]+:[^\s'\"<>/@,]*@")


def _redact_one(url: str) -> str:
    scheme, _, rest = url.partition("://")
    end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    head, tail = rest[:end], rest[end:]
    if "@" in head:  # userinfo is everything up to the last @ (a password may hold @ and /)
        head = "***@" + head.rsplit("@", 1)[1]
    query, hash_mark, fragment = tail.partition("#")
    if query:
        items = re.split(r"([&;])", query[1:])
        query = "?" + "".join(
            item if item in ("&", ";", "") else (item.split("=", 1)[0] + "=***" if "=" in item else "***")
            for item in items
        )
    return f"{scheme}://{head}{query}{hash_mark}{'***' if fragment else ''}"


def redact_url(text: str) -> str:
    """``text`` with the userinfo, query values and fragment of every URL in it replaced by ``***``:
    ``https://***@gw.corp:8787``, ``?api_key=***``."""
    return _BARE_USERINFO.sub("***@", _URL.sub(lambda match: _redact_one(match.group()), text))


# ANSI escape sequences (CSI, OSC, and two-character ones), then any other control or format
# character (C0, DEL, C1, bidirectional overrides, zero-width characters).
_ANSI: Final = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-_])")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: escape sequences removed, any other control character
    shown as ``?`` (what a remote endpoint answers can hold CR, LF and ANSI escapes)."""
    return _CONTROL.sub("?", _ANSI.sub("", text))


def _port(url: str) -> int | None:
    try:
        return urlsplit(url if "://" in url else f"http://{url}").port
    except ValueError:  # not a number, or out of range
        return None


MALFORMED: Final = "the URL is malformed"


def reachable(url: str, timeout: float = 1.5) -> str | None:
    """None if a TCP connection to the URL's host and port opens, else the reason."""
    try:
        parts = urlsplit(url if "://" in url else f"http://{url}")
    except ValueError as error:  # an unclosed IPv6 bracket
        return f"{MALFORMED} ({error})"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "the URL's port is not a port number"
    try:
        with socket.create_connection((parts.hostname or "localhost", port), timeout=timeout):
            return None
    except OSError as error:
        return error.strerror or type(error).__name__


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def diagnose(
    env: dict[str, str] | None = None,
    probe: _Probe | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> Report:
    """Check this environment; pure apart from reading package metadata and opening sockets
    (``probe`` tries one OTLP export against its endpoint; the default sends an empty one).
    ``meter_provider``: this process's global one, to report as well (``otel-portkey doctor``
    passes it: under ``opentelemetry-instrument`` it is the one an app gets)."""
    env = dict(os.environ if env is None else env)
    report = Report()
    capture = _Warnings()
    logger = logging.getLogger("otel_portkey")
    logger.addHandler(capture)
    try:
        settings = PortkeySettings.from_env(env)
    finally:
        logger.removeHandler(capture)
    for message in capture.messages:
        report.problem(redact_url(message.removeprefix("otel-portkey: ")), _setting_fix(message, env))

    report.add("Settings")
    names = sorted(
        k
        for k in env
        if k.startswith(("OTEL_PORTKEY_", "OTEL_EXPORTER_PORTKEY_")) or k in ev.PORTKEY_SDK_GATEWAY_URLS
    )
    names += [
        k
        for k in (ev.PORTKEY_API_KEY, OTEL_TRACES_EXPORTER, ev.OTEL_PYTHON_DISABLED_INSTRUMENTATIONS)
        if k in env
    ]
    for name in names or []:
        report.add(f"  {name}={mask(name, env[name])}")
    if not names:
        report.add("  (no OTEL_PORTKEY_* or PORTKEY_* variable set: defaults)")
    report.add(f"  gateways: {redact_url(', '.join(settings.gateway_prefixes))}")
    report.add(f"  trace id policy: {settings.trace_id_policy}")

    report.add("")
    report.add("Packages")
    for package in PACKAGES:
        try:
            report.add(f"  {package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            report.add(f"  {package} (not installed)")
    if not any(_installed(p) for p in ("httpx", "httpx2")):
        report.problem(
            "neither httpx nor httpx2 is installed: no LLM client to bridge",
            "pip install openai or portkey-ai",
        )

    plans = _signal_plans(env)
    _instrumentations(report, env, _unloadable(plans))
    _exporters(report, env, plans, probe or _probe, settings.metrics, meter_provider)
    _reachability(report, env, settings)

    report.add("")
    report.add("A sample call to a gateway, made by `chat gpt-4o` in trace 4bf9…4736, would carry:")
    for name, value in sample_call_headers(settings, env).items():
        report.add(f"  {name}: {redact_url(value)}")
    return report


def _setting_fix(message: str, env: Mapping[str, str]) -> str:
    """The fix for a setting the bridge warned about: an ignored gateway URL names the variable
    that holds it (nothing else is used in its place); any other falls back to its default. The
    ignored URL is found by writing each configured one as the warning writes it (its ``repr``,
    in single or double quotes), never by parsing the warning back."""
    if not message.startswith(IGNORED_GATEWAY):
        return "correct the variable; the default is used meanwhile"
    holders = [
        name
        for name in (*ev.PORTKEY_SDK_GATEWAY_URLS, ev.OTEL_PORTKEY_GATEWAY_URLS)
        if any(message.startswith(f"{IGNORED_GATEWAY}{u.strip()!r}:") for u in env.get(name, "").split(","))
    ]
    where = " / ".join(holders) or ev.OTEL_PORTKEY_GATEWAY_URLS
    return (
        f"correct {where}: a gateway's base URL, e.g. http://localhost:8787 (calls to that gateway are "
        "not bridged meanwhile)"
    )


IGNORED_GATEWAY: Final = "otel-portkey: ignoring gateway URL "  # how the settings' warning begins


def sample_call_headers(settings: PortkeySettings, env: dict[str, str]) -> dict[str, str]:
    """The Portkey headers one call would carry, made by the bridge's own request code (the same
    that runs on real calls) on sample spans with this environment's resource."""
    attributes, _ = parse_key_values(env.get(OTEL_RESOURCE_ATTRIBUTES, ""))
    if env.get(OTEL_SERVICE_NAME):
        attributes["service.name"] = env[OTEL_SERVICE_NAME]
    provider = TracerProvider(resource=Resource(attributes))
    processor = PortkeySpanProcessor(baggage_trust=settings.baggage_trust)
    provider.add_span_processor(processor)
    bridge = Bridge(settings)
    tracer = provider.get_tracer("opentelemetry.instrumentation.doctor")
    upstream = SpanContext(SAMPLE_TRACE_ID, SAMPLE_SPAN_ID, is_remote=True, trace_flags=TraceFlags(1))
    gateway = settings.gateway_prefixes[0] if settings.gateway_prefixes else "http://localhost:8787"
    carrier: dict[str, str] = {}
    with (
        tracer.start_as_current_span("chat gpt-4o", context=set_span_in_context(NonRecordingSpan(upstream))),
        tracer.start_as_current_span(
            "POST", kind=SpanKind.CLIENT, attributes={"url.full": f"{gateway}/v1/chat/completions"}
        ) as span,
    ):
        bridge.on_inject(span, carrier, default_setter)
    provider.shutdown()
    return carrier


def _installed(package: str) -> bool:
    try:
        metadata.version(package)
    except metadata.PackageNotFoundError:
        return False
    return True


def _would_instrument(entry_point: metadata.EntryPoint) -> bool:
    """Whether ``opentelemetry-instrument`` would instrument with this entry point: its package's
    declared libraries are installed, and so are the instrumentor's own (one package can serve
    several libraries: opentelemetry-instrumentation-httpx serves httpx and httpx2)."""
    try:
        if entry_point.dist is not None and get_dist_dependency_conflicts(entry_point.dist) is not None:
            return False
        instrumentor = entry_point.load()
        dependencies = getattr(instrumentor(), "instrumentation_dependencies", lambda: ())()
        return get_dependency_conflicts(dependencies) is None
    except Exception:  # it would fail to load there too
        return False


def _instrumentations(report: Report, env: dict[str, str], setup_fails: bool = False) -> None:
    """Which instrumentations ``opentelemetry-instrument`` would load; with ``setup_fails`` (an
    exporter it cannot load), none: it gives up before loading them."""
    disabled = {
        name.strip()
        for name in env.get(ev.OTEL_PYTHON_DISABLED_INSTRUMENTATIONS, "").split(",")
        if name.strip()
    }
    entry_points = metadata.entry_points(group="opentelemetry_instrumentor")
    names = sorted({ep.name for ep in entry_points})
    usable = {ep.name for ep in entry_points if _would_instrument(ep)}
    loading = [name for name in names if name in usable and name not in disabled and "*" not in disabled]
    report.add("")
    report.add("Under opentelemetry-instrument")
    if setup_fails:
        report.add(
            "  instrumentations that would load: none, while an exporter below cannot be loaded"
            f" (then: {', '.join(loading) or 'none'})"
        )
    else:
        report.add(f"  instrumentations that would load: {', '.join(loading) or 'none'}")
    if "otel_portkey" not in names:
        report.problem(
            "the otel_portkey entry point is not registered", "reinstall: pip install otel-portkey"
        )
    elif "otel_portkey" not in loading:
        report.problem(
            "the bridge is disabled by OTEL_PYTHON_DISABLED_INSTRUMENTATIONS",
            "remove otel_portkey (or *) from OTEL_PYTHON_DISABLED_INSTRUMENTATIONS",
        )
    elif setup_fails:
        report.add("  the bridge (otel_portkey) would be active once the exporter problem below is fixed")
    else:
        report.add("  the bridge (otel_portkey) would be active")


def _state(reason: str | None) -> str:
    return "reachable" if reason is None else f"NOT reachable ({reason})"


# ---- OTLP: what opentelemetry-instrument will export, resolved as the SDK resolves it -------------

SIGNALS: Final = ("traces", "metrics", "logs")
_EXPORTER_ENV: Final = {
    "traces": OTEL_TRACES_EXPORTER,
    "metrics": OTEL_METRICS_EXPORTER,
    "logs": OTEL_LOGS_EXPORTER,
}
_PROTOCOL_ENV: Final = {
    "traces": OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    "metrics": OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
    "logs": OTEL_EXPORTER_OTLP_LOGS_PROTOCOL,
}
_ENDPOINT_ENV: Final = {
    "traces": OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    "metrics": OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
    "logs": OTEL_EXPORTER_OTLP_LOGS_ENDPOINT,
}
GRPC: Final = "grpc"
HTTP_PROTOBUF: Final = "http/protobuf"
_ENTRY_POINT_BY_PROTOCOL: Final = {GRPC: "otlp_proto_grpc", HTTP_PROTOBUF: "otlp_proto_http"}
_PACKAGE_BY_ENTRY_POINT: Final = {
    "otlp_proto_grpc": "opentelemetry-exporter-otlp-proto-grpc",
    "otlp_proto_http": "opentelemetry-exporter-otlp-proto-http",
}
DISTRO_DEFAULTS: Final = {  # what opentelemetry-distro sets when the variable is unset
    OTEL_TRACES_EXPORTER: "otlp",
    OTEL_METRICS_EXPORTER: "otlp",
    OTEL_LOGS_EXPORTER: "otlp",
    OTEL_EXPORTER_OTLP_PROTOCOL: GRPC,
}


@dataclass(frozen=True)
class OtlpExport:
    """One signal's OTLP exporter as ``opentelemetry-instrument`` will make it."""

    signal: str  # traces, metrics or logs
    entry_point: str  # otlp_proto_grpc or otlp_proto_http (group opentelemetry_<signal>_exporter)
    protocol: str  # grpc or http/protobuf
    endpoint: str  # http/protobuf: the full URL posted to; grpc: the target URL
    protocol_source: str  # the variable that chose the protocol, or the default that did
    # What the exporter sends along (OTEL_EXPORTER_OTLP[_<SIGNAL>]_HEADERS): never shown.
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    secure: bool = False  # gRPC: TLS, as the gRPC exporter decides it

    @property
    def package(self) -> str:
        return _PACKAGE_BY_ENTRY_POINT[self.entry_point]


def effective_environment(env: Mapping[str, str], distro: bool) -> dict[str, str]:
    """``env`` as the SDK will read it: with opentelemetry-distro, its defaults filled in."""
    return {**DISTRO_DEFAULTS, **env} if distro else dict(env)


def otlp_exports(env: Mapping[str, str], signal: str) -> list[OtlpExport]:
    """The OTLP exporters of ``signal`` in ``env`` (an :func:`effective_environment`), resolved as the
    SDK's configurator does: ``otlp`` is gRPC unless ``OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL`` or
    ``OTEL_EXPORTER_OTLP_PROTOCOL`` says ``http/protobuf``; ``otlp_proto_http`` / ``otlp_proto_grpc``
    name the protocol themselves. Raises ``ValueError`` for a protocol the SDK refuses."""
    names = [n.strip() for n in (env.get(_EXPORTER_ENV[signal]) or "").split(",") if n.strip()]
    exports = []
    for name in names:
        if name == "otlp":
            source = _PROTOCOL_ENV[signal] if env.get(_PROTOCOL_ENV[signal]) else OTEL_EXPORTER_OTLP_PROTOCOL
            protocol = (env.get(source) or GRPC).strip()
            if not env.get(source):
                source = "the SDK's default"
            if protocol not in _ENTRY_POINT_BY_PROTOCOL:
                raise ValueError(f"{source}={protocol!r} is not grpc or http/protobuf")
        elif name in _PACKAGE_BY_ENTRY_POINT:
            protocol = next(p for p, e in _ENTRY_POINT_BY_PROTOCOL.items() if e == name)
            source = _EXPORTER_ENV[signal]
        else:  # console, portkey, a vendor's: checked by name in ``_exporters``
            continue
        endpoint = _endpoint(env, signal, protocol)
        _check_endpoint(env, signal, endpoint)
        exports.append(
            OtlpExport(
                signal,
                _ENTRY_POINT_BY_PROTOCOL[protocol],
                protocol,
                endpoint,
                source,
                _headers(env, signal),
                protocol == GRPC and _grpc_secure(env, signal, endpoint),
            )
        )
    return exports


ENDPOINT_EXAMPLES: Final = "e.g. http://localhost:4318 (OTLP/HTTP) or http://localhost:4317 (gRPC)"


class MalformedEndpoint(ValueError):
    """An OTLP endpoint that is no URL at all (an unclosed IPv6 bracket); ``variable`` holds it."""

    def __init__(self, message: str, variable: str) -> None:
        super().__init__(message)
        self.variable = variable


def _check_endpoint(env: Mapping[str, str], signal: str, endpoint: str) -> None:
    """:class:`MalformedEndpoint` when ``endpoint`` cannot be parsed as a URL (a bad port is left
    to the probe, which says so of the URL it tries)."""
    try:
        urlsplit(endpoint)
    except ValueError as error:
        own = _ENDPOINT_ENV[signal]
        variable = own if env.get(own) else OTEL_EXPORTER_OTLP_ENDPOINT
        raise MalformedEndpoint(
            f"{variable}={redact_url(env.get(variable, endpoint))!r} is malformed ({error})", variable
        ) from error


def _headers(env: Mapping[str, str], signal: str) -> tuple[tuple[str, str], ...]:
    own = env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_HEADERS")
    return tuple(parse_env_headers(own or env.get(OTEL_EXPORTER_OTLP_HEADERS) or "", liberal=True).items())


def _grpc_secure(env: Mapping[str, str], signal: str, endpoint: str) -> bool:
    """TLS or not, as the gRPC exporter decides: ``https`` always; else the ``..._INSECURE``
    variable (the signal's, then the general one); else plaintext only for an ``http`` scheme (a
    bare ``host:port`` means TLS)."""
    scheme = urlsplit(endpoint).scheme
    if scheme == "https":
        return True
    insecure = env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_INSECURE") or env.get(
        OTEL_EXPORTER_OTLP_INSECURE
    )
    if insecure is not None:
        return insecure.strip().lower() != "true"
    return scheme != "http"


def _endpoint(env: Mapping[str, str], signal: str, protocol: str) -> str:
    own = env.get(_ENDPOINT_ENV[signal])
    if own:
        return own
    if protocol == GRPC:
        return env.get(OTEL_EXPORTER_OTLP_ENDPOINT) or "http://localhost:4317"
    base = env.get(OTEL_EXPORTER_OTLP_ENDPOINT) or "http://localhost:4318"
    return f"{base.removesuffix('/')}/v1/{signal}"


def has_entry_point(group: str, name: str) -> bool:
    return any(ep.name == name for ep in metadata.entry_points(group=group))


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, never followed: following it would send the exporter's headers
    (its ``Authorization``) wherever the endpoint points."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises the 3xx as an HTTPError


_OPENER: Final = urllib.request.build_opener(_NoRedirects)
REDIRECT: Final = "a redirect, not followed"


def probe_http(export: OtlpExport, timeout: float = 3.0) -> str | None:
    """None when the endpoint takes an (empty) OTLP/HTTP protobuf export with the exporter's
    headers, else what went wrong (a redirect is not followed: it is what went wrong)."""
    headers = {**dict(export.headers), "Content-Type": "application/x-protobuf"}
    try:
        request = urllib.request.Request(export.endpoint, data=b"", method="POST", headers=headers)
        with _OPENER.open(request, timeout=timeout):
            return None
    except urllib.error.HTTPError as error:
        answer = f"it answered HTTP {error.code}"
        if 300 <= error.code < 400:
            location = printable(error.headers.get("Location") or "")[:200]
            return f"{answer}, {REDIRECT}" + (f", to {redact_url(location)}" if location else "")
        return answer
    except urllib.error.URLError as error:
        reason = error.reason
        return getattr(reason, "strerror", None) or str(reason)
    except http.client.InvalidURL as error:
        return f"the URL is malformed ({error})"
    except (http.client.HTTPException, ConnectionError) as error:
        return f"it does not answer HTTP/1.1 ({type(error).__name__}): is it a gRPC port?"
    except OSError as error:
        return error.strerror or type(error).__name__
    except ValueError as error:  # a URL that cannot be parsed (a bad port, no scheme)
        return f"the URL is malformed ({error})"


_GRPC_SERVICES: Final = {  # signal -> (package, service stub, request message)
    "traces": ("trace", "TraceServiceStub", "ExportTraceServiceRequest"),
    "metrics": ("metrics", "MetricsServiceStub", "ExportMetricsServiceRequest"),
    "logs": ("logs", "LogsServiceStub", "ExportLogsServiceRequest"),
}


def probe_grpc(export: OtlpExport, timeout: float = 3.0) -> str | None:
    """None when the endpoint takes an (empty) OTLP/gRPC export of the signal, over TLS or not as
    the exporter will, with its headers; else what went wrong. Uses grpcio and the OTLP stubs,
    which the gRPC exporter brings."""
    import grpc  # type: ignore[import-untyped,unused-ignore]

    package, stub, message = _GRPC_SERVICES[export.signal]
    base = f"opentelemetry.proto.collector.{package}.v1.{package}_service_pb2"
    services: Any = importlib.import_module(f"{base}_grpc")
    request = getattr(importlib.import_module(base), message)()
    target = urlsplit(export.endpoint).netloc or export.endpoint  # a bare host:port is used as it is
    channel = (
        grpc.secure_channel(target, grpc.ssl_channel_credentials())
        if export.secure
        else grpc.insecure_channel(target)
    )
    try:
        getattr(services, stub)(channel).Export(request, timeout=timeout, metadata=export.headers or None)
        return None
    except grpc.RpcError as error:
        details = str(error.details())
        if "Failed parsing HTTP/2" in details:  # what grpcio says of an HTTP/1.1 server
            return "it answers HTTP/1.1, not gRPC"
        if "Connection refused" in details:
            return "Connection refused"
        if "ssl" in details.lower() or "handshake" in details.lower():
            return f"the TLS handshake failed ({'TLS' if export.secure else 'plaintext'} was tried)"
        return f"{error.code().name}: {details[-200:]}"
    finally:
        channel.close()


_Probe = Callable[[OtlpExport], "str | None"]


def _probe(export: OtlpExport) -> str | None:
    try:
        return probe_grpc(export) if export.protocol == GRPC else probe_http(export)
    except Exception as error:  # doctor reports; it never ends in a traceback
        return f"the check itself failed, the endpoint may be malformed ({type(error).__name__})"


def _shown(reason: str) -> str:
    """A probe's reason as doctor prints it: no URL's secrets, no control character (it can quote
    what the endpoint answered)."""
    return printable(redact_url(reason))


def _otlp_fix(export: OtlpExport, reason: str) -> str:
    """One sentence: what to change so that this export works."""
    port = _port(export.endpoint)
    if "malformed" in reason:
        return f"correct {OTEL_EXPORTER_OTLP_ENDPOINT} (or {_ENDPOINT_ENV[export.signal]}): e.g. http://localhost:4318"
    if REDIRECT in reason:
        return (
            f"set {OTEL_EXPORTER_OTLP_ENDPOINT} (or {_ENDPOINT_ENV[export.signal]}) to the URL that takes "
            "OTLP itself, if you trust where the redirect points: a redirect would take the exporter's "
            "headers (and their credentials) there"
        )
    if export.protocol == GRPC and "TLS handshake" in reason:
        return (
            "say how to connect: an http:// endpoint (or OTEL_EXPORTER_OTLP_INSECURE=true) for plaintext, "
            "https:// for TLS"
        )
    if any(code in reason for code in ("401", "403", "UNAUTHENTICATED", "PERMISSION_DENIED")):
        return "it wants credentials: set them in OTEL_EXPORTER_OTLP_HEADERS (or the signal's own variable)"
    if export.protocol == GRPC and (port == 4318 or "HTTP/1.1" in reason):
        return (
            "that is an OTLP/HTTP port (4318 by convention): set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf, "
            "or send gRPC to the gRPC port (4317)"
        )
    if export.protocol == HTTP_PROTOBUF and (port == 4317 or "gRPC port" in reason):
        return (
            "that is an OTLP/gRPC port (4317 by convention): point OTEL_EXPORTER_OTLP_ENDPOINT at the "
            "OTLP/HTTP port (4318), or set OTEL_EXPORTER_OTLP_PROTOCOL=grpc"
        )
    if "404" in reason or "UNIMPLEMENTED" in reason:
        return (
            f"the endpoint takes no {export.signal}: add a {export.signal} pipeline to the Collector, "
            f"or set {_EXPORTER_ENV[export.signal]}=none"
        )
    return (
        f"start your Collector or Jaeger there, or correct {OTEL_EXPORTER_OTLP_ENDPOINT} "
        f"(or {_ENDPOINT_ENV[export.signal]})"
    )


# What opentelemetry-instrument does when its configurator cannot load an exporter of any signal
# (an exporter name nothing provides, an OTLP protocol whose package is missing): it logs the
# configurator's failure and its own, each with a traceback, and skips the rest of its set-up, so
# the app runs with no tracer or meter provider and no instrumentation (the bridge neither).
WITHOUT_OTEL: Final = (
    "opentelemetry-instrument then logs two errors with tracebacks (Configuration of configurator "
    "failed, Failed to auto initialize OpenTelemetry) and runs the app without OpenTelemetry: no "
    "instrumentation loads (the bridge neither), nothing is traced or measured"
)


@dataclass(frozen=True)
class _SignalPlan:
    """One signal's exporters as ``opentelemetry-instrument`` will resolve them, and what of it
    cannot be loaded."""

    signal: str
    names: str  # the exporter names as the SDK reads them ("none" when unset)
    exports: tuple[OtlpExport, ...] = ()
    unknown: tuple[str, ...] = ()  # names no installed package provides
    missing: tuple[OtlpExport, ...] = ()  # OTLP exports whose package is not installed
    error: str | None = None  # a protocol the SDK refuses, or an endpoint that is no URL
    fix: str = ""  # what to change for ``error``


def _signal_plans(env: dict[str, str]) -> list[_SignalPlan] | None:
    """Each signal's :class:`_SignalPlan`; None when no configurator is installed (then
    ``opentelemetry-instrument`` sets up no exporter at all)."""
    if not list(metadata.entry_points(group="opentelemetry_configurator")):
        return None
    distro = bool(list(metadata.entry_points(group="opentelemetry_distro")))
    effective = effective_environment(env, distro)
    plans = []
    for signal in SIGNALS:
        names = effective.get(_EXPORTER_ENV[signal]) or "none"
        try:
            exports = otlp_exports(effective, signal)
        except MalformedEndpoint as error:
            fix = f"correct {error.variable}: {ENDPOINT_EXAMPLES}"
            plans.append(_SignalPlan(signal, names, error=str(error), fix=fix))
            continue
        except ValueError as error:
            fix = f"set {OTEL_EXPORTER_OTLP_PROTOCOL}=http/protobuf or grpc"
            plans.append(_SignalPlan(signal, names, error=str(error), fix=fix))
            continue
        exports = [
            replace(export, protocol_source="opentelemetry-distro's default")
            if export.protocol_source == OTEL_EXPORTER_OTLP_PROTOCOL and export.protocol_source not in env
            else export
            for export in exports
        ]
        group = f"opentelemetry_{signal}_exporter"
        unknown = [
            name
            for name in (n.strip() for n in names.split(","))
            if name
            and name not in ("none", "otlp", *_PACKAGE_BY_ENTRY_POINT)
            and not has_entry_point(group, name)
        ]
        missing = [export for export in exports if not has_entry_point(group, export.entry_point)]
        plans.append(_SignalPlan(signal, names, tuple(exports), tuple(unknown), tuple(missing)))
    return plans


def _unloadable(plans: list[_SignalPlan] | None) -> bool:
    """Whether ``opentelemetry-instrument`` cannot load an exporter it is asked for (and so runs the
    app without OpenTelemetry: see :data:`WITHOUT_OTEL`)."""
    return any(plan.unknown or plan.missing for plan in plans or [])


def _would_go_out(exports: list[OtlpExport]) -> str:
    """``traces, metrics and logs would go out as OTLP grpc (from opentelemetry-distro's default)``,
    or with a source per group of signals when different variables chose their protocol."""

    def listed(items: list[str]) -> str:
        return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"

    by_source: dict[str, list[str]] = {}
    for export in exports:
        by_source.setdefault(export.protocol_source, []).append(export.signal)
    protocol = exports[0].protocol
    if len(by_source) == 1:
        ((source, signals),) = by_source.items()
        return f"{listed(signals)} would go out as OTLP {protocol} (from {source})"
    groups = [f"{listed(signals)} (from {source})" for source, signals in by_source.items()]
    return f"{listed(groups)} would go out as OTLP {protocol}"


def _exporters(
    report: Report,
    env: dict[str, str],
    plans: list[_SignalPlan] | None,
    probe: _Probe,
    bridge_metrics: bool = True,
    meter_provider: metrics.MeterProvider | None = None,
) -> None:
    """What each signal exports to under ``opentelemetry-instrument``, whether that exporter is
    installed, and whether its endpoint answers its protocol; for metrics, whether the bridge's
    go anywhere, and the meter provider of this process when one is given. An exporter that cannot
    be loaded is one problem for all signals, saying what ``opentelemetry-instrument`` then does."""
    report.add("")
    report.add("Exporters under opentelemetry-instrument")
    if plans is None:
        report.add("  no configurator installed: opentelemetry-instrument sets up no tracer provider")
        report.problem(
            "opentelemetry-instrument would export nothing: no configurator is installed",
            "pip install opentelemetry-distro",
        )
        return
    setup_fails = _unloadable(plans)
    effective = effective_environment(env, bool(list(metadata.entry_points(group="opentelemetry_distro"))))
    logging_setting = effective.get(ev.OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED, "")
    logging_on = logging_setting.strip().lower() == "true"
    missing: dict[str, list[OtlpExport]] = {}  # package -> the exports that need it
    for plan in plans:
        signal = plan.signal
        if plan.error is not None:
            report.problem(f"{signal}: {plan.error}", plan.fix)
            continue
        report.add(f"  {signal}: {plan.names}")
        problems_before = len(report.problems)
        for name in plan.unknown:
            report.problem(
                f"{_EXPORTER_ENV[signal]} names {name!r}, which no installed package provides: "
                + WITHOUT_OTEL,
                f"correct {_EXPORTER_ENV[signal]} (otlp, console, none, ...) or install that exporter",
            )
        for export in plan.exports:
            report.add(
                f"    OTLP {export.protocol} (from {export.protocol_source}) to {redact_url(export.endpoint)}"
            )
            if export in plan.missing:
                report.add(f"    {export.package} is NOT installed")
                missing.setdefault(export.package, []).append(export)
                continue
            if signal == "logs" and not logging_on:
                continue  # nothing is logged through OTel, so nothing is sent
            reason = probe(export)
            reason = None if reason is None else _shown(reason)
            shown = redact_url(export.endpoint)
            report.add(
                f"    {'answers' if reason is None else 'does NOT answer'} OTLP {export.protocol}"
                + ("" if reason is None else f" ({reason})")
            )
            if reason is not None:
                report.problem(
                    f"{signal}: {shown} does not answer OTLP {export.protocol} ({reason})",
                    _otlp_fix(export, reason),
                )
        if signal == "metrics":
            failing = setup_fails or len(report.problems) > problems_before
            report.add(f"    {bridge_metrics_verdict(plan.names, bridge_metrics, failing)}")
            if meter_provider is not None:
                report.add(f"    meter provider in this process: {meter_provider_state(meter_provider)}")
    for package, exports in missing.items():
        fix = f"pip install {package}"
        if exports[0].protocol == GRPC:
            fix = f"set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf (installed with otel-portkey), or {fix}"
        report.problem(
            f"{_would_go_out(exports)}, but {package} is not installed: {WITHOUT_OTEL}",
            fix,
        )


BRIDGE_METRICS: Final = "the bridge's portkey.gateway.* metrics"


def bridge_metrics_verdict(exporters: str, enabled: bool, failing: bool) -> str:
    """Whether the bridge's metrics go anywhere under ``opentelemetry-instrument``, given the
    metrics exporters (``OTEL_METRICS_EXPORTER`` as the SDK will read it), ``OTEL_PORTKEY_METRICS``
    and whether the export was found broken."""
    if not enabled:
        return f"{BRIDGE_METRICS} are off ({ev.OTEL_PORTKEY_METRICS}=false)"
    names = [name.strip() for name in exporters.split(",") if name.strip() and name.strip() != "none"]
    if not names:
        return f"{BRIDGE_METRICS} go nowhere: set {OTEL_METRICS_EXPORTER}=otlp to export them"
    if failing:
        return f"{BRIDGE_METRICS} are lost until the problem below is fixed"
    return f"{BRIDGE_METRICS} go there"


def meter_provider_state(provider: metrics.MeterProvider) -> str:
    """What ``provider`` (a process's global one) does with the bridge's metrics: none set (the
    API's proxy), the API's no-op, or the SDK's with the readers and exporters it has."""
    kind = type(provider)
    if kind.__name__ == "_ProxyMeterProvider":
        if "opentelemetry.instrumentation.auto_instrumentation" in sys.modules:
            return "none set (the API's proxy: metrics are no-ops)"
        return "none (run `opentelemetry-instrument otel-portkey doctor` to see your app's)"
    if isinstance(provider, metrics.NoOpMeterProvider):
        return "the API's NoOpMeterProvider: metrics are dropped"
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider

    if not isinstance(provider, SdkMeterProvider):
        return f"{kind.__module__}.{kind.__qualname__}"
    if getattr(provider, "_disabled", False):
        return "the SDK's MeterProvider, disabled by OTEL_SDK_DISABLED=true: metrics are dropped"
    readers = list(getattr(provider, "_metric_readers", ()))
    if not readers:
        return "the SDK's MeterProvider without a metric reader: metrics go nowhere"
    shown = []
    for reader in readers:
        exporter = getattr(reader, "_exporter", None)
        name = type(reader).__name__
        shown.append(f"{name}({type(exporter).__name__})" if exporter is not None else name)
    return f"the SDK's MeterProvider, read by {', '.join(shown)}"


def _reachability(report: Report, env: dict[str, str], settings: PortkeySettings) -> None:
    report.add("")
    report.add("Reachability")
    configured = [env[name] for name in ev.PORTKEY_SDK_GATEWAY_URLS if env.get(name)]
    configured += [u.strip() for u in env.get(ev.OTEL_PORTKEY_GATEWAY_URLS, "").split(",") if u.strip()]
    for url in map(redact_url, configured):
        if not gateway_prefix(url).startswith(("http://", "https://")):
            # the settings ignore it, and it was reported as such (once): nothing to reach
            report.add(f"  gateway {url}: ignored (not an http:// or https:// URL)")
            continue
        reason = reachable(url)
        report.add(f"  gateway {url}: {_state(reason)}")
        if reason is not None and reason.startswith(MALFORMED):
            report.problem(f"gateway {url}: {reason}", MALFORMED_GATEWAY_FIX)
        elif reason is not None:
            report.problem(f"gateway {url} is not reachable ({reason})", GATEWAY_FIX)
    if not configured:
        reason = reachable("http://localhost:8787")
        report.add(
            f"  no gateway URL configured; local gateway http://localhost:8787: {reason or 'reachable'}"
        )
    exporters = [e.strip() for e in env.get(OTEL_TRACES_EXPORTER, "").split(",")]
    if "portkey" in exporters:
        endpoint = redact_url(env.get(ev.OTEL_EXPORTER_PORTKEY_ENDPOINT) or "https://api.portkey.ai/v1/otel")
        reason = reachable(endpoint)
        report.add(f"  Portkey OTLP endpoint {endpoint}: {_state(reason)}")
        if not env.get(ev.PORTKEY_API_KEY):
            report.problem(
                "OTEL_TRACES_EXPORTER has portkey but PORTKEY_API_KEY is not set",
                "export PORTKEY_API_KEY=...",
            )
        if reason is not None:
            report.problem(
                f"the Portkey OTLP endpoint {endpoint} is not reachable ({reason})",
                "check the network, or OTEL_EXPORTER_PORTKEY_ENDPOINT",
            )


GATEWAY_FIX: Final = (
    "start one on loopback: otel-portkey gateway (the pinned OSS gateway with a scripted model), "
    "or correct PORTKEY_GATEWAY_URL / OTEL_PORTKEY_GATEWAY_URLS"
)
MALFORMED_GATEWAY_FIX: Final = (
    "correct PORTKEY_GATEWAY_URL / OTEL_PORTKEY_GATEWAY_URLS: a gateway's base URL, e.g. "
    "http://localhost:8787"
)
