"""Shared fixtures: one SDK tracer provider with an in-memory exporter, the scripted model, the
real OSS Portkey gateway, and the bridge itself.

Components the machine cannot provide are skipped with the reason, except under
``OTEL_PORTKEY_REQUIRE_REAL=1`` (set by ``.ci/run``), where such a skip is a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import pytest
from hypothesis import settings
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_portkey import PortkeyInstrumentor
from otel_portkey._otel import diagnostics
from otel_portkey._otel.client_hooks import CLIENTS
from otel_portkey.testing import GatewayUnavailable, OssGateway, RecordingProxy, ScriptedModelServer

REQUIRE_REAL = os.environ.get("OTEL_PORTKEY_REQUIRE_REAL") == "1"

# Property tests check what the pure contract answers, never how fast: Hypothesis' default 200 ms
# deadline per example would make a loaded CI machine fail them. Speed is benchmarks/' job.
settings.register_profile("otel-portkey", deadline=None)
settings.load_profile("otel-portkey")

EXPORTER = InMemorySpanExporter()
SERVICE_NAME = "otel-portkey-tests"
PROVIDER = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))
trace.set_tracer_provider(PROVIDER)


def skip_or_fail(reason: str) -> None:
    """Skip for a missing real component, or fail when the run requires real components."""
    if REQUIRE_REAL:
        pytest.fail(f"OTEL_PORTKEY_REQUIRE_REAL=1 but {reason}")
    pytest.skip(reason)


class Spans:
    """The finished spans of the current test."""

    def all(self) -> list[ReadableSpan]:
        return list(EXPORTER.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.all() if s.name == name]

    def http(self) -> list[ReadableSpan]:
        return [
            s
            for s in self.all()
            if s.kind == trace.SpanKind.CLIENT and s.attributes and "portkey.span_id" in s.attributes
        ]

    def clear(self) -> None:
        EXPORTER.clear()


@pytest.fixture
def spans() -> Iterator[Spans]:
    EXPORTER.clear()
    yield Spans()
    EXPORTER.clear()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test is ``unit`` unless marked ``integration`` (real components, child processes)."""
    for item in items:
        if item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.unit)
        elif item.get_closest_marker("unit") is not None:
            raise pytest.UsageError(f"{item.nodeid} is marked both unit and integration")


@pytest.fixture(autouse=True)
def _unit_tests_start_no_process(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``unit`` means, enforced: such a test starts no child process (no component, no CLI)."""
    if request.node.get_closest_marker("unit") is None:
        return

    def refuse(self: object, *args: object, **kwargs: object) -> None:
        raise AssertionError(f"{request.node.nodeid} is a unit test and started a child process")

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse)


def _context_variables() -> list[ContextVar[Any]]:
    """The module-level context variables of the bridge's modules (the request's decision, ...),
    wherever they live."""
    found: dict[int, ContextVar[Any]] = {}
    for name, module in list(sys.modules.items()):
        if name.startswith("otel_portkey") and module is not None:
            for value in list(vars(module).values()):
                if isinstance(value, ContextVar):
                    found[id(value)] = value
    return list(found.values())


@pytest.fixture(autouse=True)
def _bridge_globals_restored() -> Iterator[None]:
    """Module globals a test may change are put back after it, whether it passed or not:
    ``opentelemetry-instrument``'s in-progress flag (``instrumentor._auto_instrumenting``), the
    global propagator, and the bridge's context variables (the request's decision).

    Named to sort before ``_clean_instrumentation``: pytest sets a file's autouse fixtures up in name
    order, so this one is torn down last, after the bridge is uninstrumented."""
    from otel_portkey._otel import instrumentor

    missing = object()
    auto_instrumenting = getattr(instrumentor, "_auto_instrumenting", missing)
    textmap = propagate.get_global_textmap()
    unset = object()
    variables = [(variable, variable.get(unset)) for variable in _context_variables()]
    try:
        yield
    finally:
        if auto_instrumenting is not missing and hasattr(instrumentor, "_auto_instrumenting"):
            instrumentor._auto_instrumenting = auto_instrumenting
        propagate.set_global_textmap(textmap)
        for variable, value in variables:
            if value is not unset:
                variable.set(value)


@pytest.fixture(autouse=True)
def _clean_instrumentation(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts and ends with nothing instrumented, and with no warning already given
    (the bridge warns once per kind of problem: a test must see its own warning)."""
    monkeypatch.setattr(diagnostics, "_reported", set())
    yield
    classes = [cls for cls in (client.instrumentor_class() for client in CLIENTS) if cls is not None]
    for instrumentor in [PortkeyInstrumentor(), *(cls() for cls in classes)]:
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()


@pytest.fixture(scope="session")
def model_server() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer() as server:
        yield server


@pytest.fixture
def model(model_server: ScriptedModelServer) -> Iterator[ScriptedModelServer]:
    model_server.clear()
    yield model_server
    model_server.clear()


@pytest.fixture(scope="session")
def oss_gateway() -> Iterator[OssGateway]:
    try:
        gateway = OssGateway().start(install=False)  # `make components` installs it
    except GatewayUnavailable as error:
        skip_or_fail(f"the OSS Portkey gateway is not available: {error}")
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def hop(oss_gateway: OssGateway, model: ScriptedModelServer) -> Iterator[RecordingProxy]:
    """A recording hop in front of the real gateway: what it received, and what it answered."""
    with RecordingProxy(oss_gateway.url) as proxy:
        yield proxy


@pytest.fixture
def every_client_instrumented() -> None:
    """Every OTel HTTP client instrumentation on, as ``opentelemetry-bootstrap`` sets them up
    (instrument the bridge first; ``_clean_instrumentation`` takes them off again)."""
    for client in CLIENTS:
        cls = client.instrumentor_class()
        if cls is not None and not cls().is_instrumented_by_opentelemetry:
            cls().instrument()


@pytest.fixture
def bridge(model_server: ScriptedModelServer) -> Iterator[PortkeyInstrumentor]:
    """The bridge, treating the scripted model's URL as a gateway (in-process tests)."""
    instrumentor = PortkeyInstrumentor()
    instrumentor.instrument(gateway_urls=[f"http://127.0.0.1:{model_server.port}"])
    yield instrumentor
    instrumentor.uninstrument()


PORTKEY_STANDIN_KEY = "pk-standin-0123456789"


@pytest.fixture(scope="session")
def go_binaries() -> dict[str, str]:
    from components import ComponentUnavailable, built_components

    try:
        return built_components()
    except ComponentUnavailable as error:
        skip_or_fail(str(error))
        raise


@pytest.fixture(scope="session")
def jaeger(go_binaries):
    from components import Jaeger

    server = Jaeger(go_binaries["JAEGER"])
    yield server
    server.stop()


@pytest.fixture(scope="session")
def portkey_standin():
    """Stands in for Portkey's OTLP endpoint: checks the path, the API key and the protobuf payload."""
    from otel_portkey.testing import OtlpReceiver

    with OtlpReceiver(
        required_headers={"x-portkey-api-key": PORTKEY_STANDIN_KEY}, path="/v1/otel/v1/traces"
    ) as receiver:
        yield receiver


@pytest.fixture(scope="session")
def collector(go_binaries, jaeger, portkey_standin):
    from components import Collector

    server = Collector(
        go_binaries["OTELCOL"], jaeger.otlp_grpc, f"{portkey_standin.endpoint}/v1/otel", PORTKEY_STANDIN_KEY
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def prometheus_binary() -> dict[str, str]:
    """The installed Prometheus: {"PROMETHEUS": path, "PROMTOOL": path} (``make components`` installs
    Debian's package)."""
    from components import ComponentUnavailable, prometheus_binaries

    try:
        return prometheus_binaries()
    except ComponentUnavailable as error:
        skip_or_fail(str(error))
        raise
