"""``otel-portkey doctor``: what is configured, what is reachable, what a call would carry."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from importlib import metadata
from typing import Final
from urllib.parse import urlsplit

from opentelemetry.environment_variables import OTEL_TRACES_EXPORTER
from opentelemetry.propagators.textmap import default_setter
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_RESOURCE_ATTRIBUTES,
    OTEL_SERVICE_NAME,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, set_span_in_context

from . import environment_variables as ev
from .config import PortkeySettings
from .hooks import PortkeyHooks
from .metadata import parse_key_values
from .processor import PortkeySpanProcessor

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
    "opentelemetry-instrumentation-genai-langchain",
    "opentelemetry-instrumentation-genai-openai",
    "opentelemetry-instrumentation-genai-portkey",
)
SECRET_WORDS: Final = ("KEY", "TOKEN", "SECRET", "PASSWORD", "AUTHORIZATION")
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
        out = list(self.lines)
        if self.problems:
            out.append("")
            out.append(f"{len(self.problems)} problem(s):")
            out += [f"  ✗ {what}\n      fix: {fix}" for what, fix in self.problems]
        else:
            out += ["", "All good: the bridge will join OTel traces and Portkey logs here."]
        return "\n".join(out)


def mask(name: str, value: str) -> str:
    """Secrets shown by length only: ``PORTKEY_API_KEY=<set, 32 chars>``."""
    if any(word in name.upper() for word in SECRET_WORDS):
        return f"<set, {len(value)} chars>"
    return value


def reachable(url: str, timeout: float = 1.5) -> str | None:
    """None if a TCP connection to the URL's host and port opens, else the reason."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
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


def diagnose(env: dict[str, str] | None = None) -> Report:
    """Check this environment; pure apart from reading package metadata and opening sockets."""
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
        report.problem(
            message.removeprefix("otel-portkey: "), "correct the variable; the default is used meanwhile"
        )

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
    report.add(f"  gateways: {', '.join(settings.gateway_prefixes)}")
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

    _instrumentations(report, env)
    _reachability(report, env, settings)

    report.add("")
    report.add("A sample call to a gateway, made by `chat gpt-4o` in trace 4bf9…4736, would carry:")
    for name, value in sample_call_headers(settings, env).items():
        report.add(f"  {name}: {value}")
    return report


def sample_call_headers(settings: PortkeySettings, env: dict[str, str]) -> dict[str, str]:
    """The Portkey headers one call would carry, made by the bridge's own request code (the same
    that runs on real calls) on sample spans with this environment's resource."""
    attributes, _ = parse_key_values(env.get(OTEL_RESOURCE_ATTRIBUTES, ""))
    if env.get(OTEL_SERVICE_NAME):
        attributes["service.name"] = env[OTEL_SERVICE_NAME]
    provider = TracerProvider(resource=Resource(attributes))
    processor = PortkeySpanProcessor(baggage_trust=settings.baggage_trust)
    provider.add_span_processor(processor)
    hooks = PortkeyHooks(settings, processor.caller_name)
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
        hooks.on_portkey_request(span, carrier, default_setter)
    provider.shutdown()
    return carrier


def _installed(package: str) -> bool:
    try:
        metadata.version(package)
    except metadata.PackageNotFoundError:
        return False
    return True


def _instrumentations(report: Report, env: dict[str, str]) -> None:
    disabled = {
        name.strip()
        for name in env.get(ev.OTEL_PYTHON_DISABLED_INSTRUMENTATIONS, "").split(",")
        if name.strip()
    }
    names = sorted({ep.name for ep in metadata.entry_points(group="opentelemetry_instrumentor")})
    loading = [name for name in names if name not in disabled and "*" not in disabled]
    report.add("")
    report.add("Under opentelemetry-instrument")
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
    else:
        report.add("  the bridge (otel_portkey) would be active")


def _state(reason: str | None) -> str:
    return "reachable" if reason is None else f"NOT reachable ({reason})"


def _reachability(report: Report, env: dict[str, str], settings: PortkeySettings) -> None:
    report.add("")
    report.add("Reachability")
    configured = [env[name] for name in ev.PORTKEY_SDK_GATEWAY_URLS if env.get(name)]
    configured += [u.strip() for u in env.get(ev.OTEL_PORTKEY_GATEWAY_URLS, "").split(",") if u.strip()]
    for url in configured:
        reason = reachable(url)
        report.add(f"  gateway {url}: {_state(reason)}")
        if reason is not None:
            report.problem(
                f"gateway {url} is not reachable ({reason})",
                "start it (npx @portkey-ai/gateway) or fix the URL",
            )
    if not configured:
        reason = reachable("http://localhost:8787")
        report.add(
            f"  no gateway URL configured; local gateway http://localhost:8787: {reason or 'reachable'}"
        )
    exporters = [e.strip() for e in env.get(OTEL_TRACES_EXPORTER, "otlp").split(",")]
    if "otlp" in exporters:
        grpc = env.get(OTEL_EXPORTER_OTLP_PROTOCOL, "http/protobuf") == "grpc"
        default = "http://localhost:4317" if grpc else "http://localhost:4318"
        endpoint = (
            env.get(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) or env.get(OTEL_EXPORTER_OTLP_ENDPOINT) or default
        )
        reason = reachable(endpoint)
        report.add(f"  OTLP endpoint {endpoint}: {_state(reason)}")
        if reason is not None:
            report.problem(
                f"the OTLP endpoint {endpoint} is not reachable ({reason})",
                "start your Collector or Jaeger, or set OTEL_EXPORTER_OTLP_ENDPOINT",
            )
    if "portkey" in exporters:
        endpoint = env.get(ev.OTEL_EXPORTER_PORTKEY_ENDPOINT) or "https://api.portkey.ai/v1/otel"
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
