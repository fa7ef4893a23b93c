"""``otel-portkey doctor``: it catches what breaks the path from the app to the Collector, the way
``opentelemetry-instrument`` and the SDK will resolve it, against real servers."""

import json
import os
import subprocess
import sys
import sysconfig
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.metrics._internal import _ProxyMeterProvider
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, PeriodicExportingMetricReader

from otel_portkey._cli import doctor
from otel_portkey._cli.doctor import diagnose, meter_provider_state, otlp_exports, sample_call_headers
from otel_portkey._cli.metrics_summary import OtlpMetricsReceiver
from otel_portkey.config import PortkeySettings
from otel_portkey.testing import OtlpReceiver, free_port

CLI = str(Path(sys.executable).with_name("otel-portkey"))
INSTRUMENT = str(Path(sys.executable).with_name("opentelemetry-instrument"))
HEALTHY = {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_METRICS_EXPORTER": "none"}


def clean_env(**env):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PORTKEY_"))}
    return {**base, **env}


class GrpcTraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def grpc_receiver():
    """A real OTLP/gRPC trace receiver on loopback (grpcio, the OTLP service stubs)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(GrpcTraceService(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop(None)


# ---- how the SDK resolves the OTLP exporter of each signal ---------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize("names", ["otlp", "otlp_proto_http", "otlp_proto_grpc", "console,otlp"])
@pytest.mark.parametrize("general", [None, "grpc", "http/protobuf"])
@pytest.mark.parametrize("own", [None, "grpc", "http/protobuf"])
@pytest.mark.parametrize("signal", ["traces", "metrics", "logs"])
def test_the_exporter_resolves_as_the_sdk_resolves_it(monkeypatch, names, general, own, signal):
    """Checked against the SDK configurator's own resolution (a private function: this test fails
    the day it changes, which is the day the doctor must change)."""
    from opentelemetry.sdk import _configuration

    env = {f"OTEL_{signal.upper()}_EXPORTER": names}
    if general:
        env["OTEL_EXPORTER_OTLP_PROTOCOL"] = general
    if own:
        env[f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL"] = own
    for key in list(os.environ):
        if key.startswith("OTEL_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    sdk = [n for n in _configuration._get_exporter_names(signal) if n.startswith("otlp")]
    assert [export.entry_point for export in otlp_exports(env, signal)] == sdk


@pytest.mark.unit
def test_endpoints_as_the_exporters_build_them():
    http = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    assert otlp_exports(http, "traces")[0].endpoint == "http://localhost:4318/v1/traces"
    based = {**http, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}
    assert otlp_exports(based, "traces")[0].endpoint == "http://collector:4318/v1/traces"
    own = {**based, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://elsewhere/traces"}
    assert otlp_exports(own, "traces")[0].endpoint == "http://elsewhere/traces"
    grpc_default = {"OTEL_TRACES_EXPORTER": "otlp"}
    assert otlp_exports(grpc_default, "traces")[0].endpoint == "http://localhost:4317"
    with pytest.raises(ValueError, match="http/json"):
        otlp_exports({**http, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "traces")


# ---- each misconfiguration the README path met, against real receivers -------------------------


GRPC_MISSING = (
    "traces, metrics and logs would go out as OTLP grpc (from opentelemetry-distro's default), but "
    "opentelemetry-exporter-otlp-proto-grpc is not installed: opentelemetry-instrument then logs two "
    "errors with tracebacks (Configuration of configurator failed, Failed to auto initialize "
    "OpenTelemetry) and runs the app without OpenTelemetry: no instrumentation loads (the bridge "
    "neither), nothing is traced or measured"
)
GRPC_MISSING_FIX = (
    "set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf (installed with otel-portkey), "
    "or pip install opentelemetry-exporter-otlp-proto-grpc"
)


@pytest.mark.unit
def test_the_distros_grpc_default_without_the_grpc_exporter(monkeypatch):
    """The README's old step 1: distro installed, no protocol set, only the HTTP exporter there: one
    problem for the three signals, saying what really happens (the app runs, untraced).
    (This virtualenv has the gRPC exporter; ``without_the_grpc_exporter`` below hides it for real.)"""
    real = doctor.has_entry_point
    monkeypatch.setattr(
        doctor, "has_entry_point", lambda group, name: name != "otlp_proto_grpc" and real(group, name)
    )
    with OtlpReceiver() as receiver:
        report = diagnose(clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint))
    assert report.problems == [(GRPC_MISSING, GRPC_MISSING_FIX)], report.text()
    lines = report.text().splitlines()
    assert "  the bridge (otel_portkey) would be active once the exporter problem below is fixed" in lines
    assert any(
        line.startswith("  instrumentations that would load: none, while an exporter") for line in lines
    )
    assert "    the bridge's portkey.gateway.* metrics are lost until the problem below is fixed" in lines


@pytest.mark.unit
def test_one_signal_without_its_exporter_stops_them_all(monkeypatch):
    """Traces over OTLP/HTTP, logs left on the distro's gRPC default: the SDK's configurator loads
    every signal's exporter before it sets anything up, so the missing one stops traces too."""
    real = doctor.has_entry_point
    monkeypatch.setattr(
        doctor, "has_entry_point", lambda group, name: name != "otlp_proto_grpc" and real(group, name)
    )
    report = diagnose(
        clean_env(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="http/protobuf", OTEL_METRICS_EXPORTER="none"),
        probe=lambda export: None,
    )
    ((what, _),) = report.problems
    assert what.startswith(
        "logs would go out as OTLP grpc (from opentelemetry-distro's default), but "
        "opentelemetry-exporter-otlp-proto-grpc is not installed: opentelemetry-instrument then logs"
    )


@pytest.fixture(scope="module")
def without_the_grpc_exporter(tmp_path_factory):
    """A virtualenv that is this one minus opentelemetry-exporter-otlp-proto-grpc: every entry of
    this one's site-packages linked in, except that distribution's metadata (its entry points,
    which the SDK and doctor look it up by); its ``bin`` has ``python``, ``opentelemetry-instrument``
    and ``otel-portkey``. Returns the ``bin`` directory."""
    root = tmp_path_factory.mktemp("no-grpc-exporter") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    ours = Path(sysconfig.get_paths()["purelib"])
    (theirs,) = root.glob("lib/python*/site-packages")
    for entry in ours.iterdir():
        if not entry.name.startswith("opentelemetry_exporter_otlp_proto_grpc-"):
            (theirs / entry.name).symlink_to(entry)
    for script in ("opentelemetry-instrument", "otel-portkey"):
        body = Path(sys.executable).with_name(script).read_text().split("\n", 1)[1]
        (root / "bin" / script).write_text(f"#!{root / 'bin' / 'python'}\n{body}")
        (root / "bin" / script).chmod(0o755)
    return root / "bin"


APP = """
from opentelemetry import metrics, trace
from otel_portkey import PortkeyInstrumentor
print("app ran")
print(type(trace.get_tracer_provider()).__name__, type(metrics.get_meter_provider()).__name__)
print("bridge instrumented:", PortkeyInstrumentor().is_instrumented_by_opentelemetry)
"""


@pytest.mark.integration
def test_without_the_grpc_exporter_the_app_runs_untraced_as_doctor_says(without_the_grpc_exporter):
    """What opentelemetry-instrument really does with the distro's defaults and no gRPC exporter,
    then what doctor says of it, in the same virtualenv."""
    bin_dir = without_the_grpc_exporter
    env = clean_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    env.pop("VIRTUAL_ENV", None)
    app = subprocess.run(
        [str(bin_dir / "opentelemetry-instrument"), "python", "-c", APP],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert app.returncode == 0, app.stderr[-3000:]
    assert app.stdout.splitlines() == [
        "app ran",
        "ProxyTracerProvider _ProxyMeterProvider",
        "bridge instrumented: False",
    ], app.stderr[-3000:]
    errors = [line for line in app.stderr.splitlines() if not line.startswith((" ", "Traceback", "During"))]
    assert "Configuration of configurator failed" in errors, app.stderr[-3000:]
    assert "Failed to auto initialize OpenTelemetry" in errors, app.stderr[-3000:]
    assert (
        "RuntimeError: Requested component 'otlp_proto_grpc' not found in entry point "
        "'opentelemetry_traces_exporter'"
    ) in errors

    report = subprocess.run(
        [str(bin_dir / "otel-portkey"), "doctor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert report.returncode == 1, report.stdout
    assert "  opentelemetry-exporter-otlp-proto-grpc (not installed)" in report.stdout.splitlines()
    assert f"  ✗ {GRPC_MISSING}" in report.stdout.splitlines(), report.stdout
    assert f"      fix: {GRPC_MISSING_FIX}" in report.stdout.splitlines()
    assert report.stdout.count("would go out as OTLP grpc") == 1, "one problem, not one per signal"


@pytest.mark.unit
def test_grpc_sent_to_an_otlp_http_port():
    """The README's old step 4 with ``opentelemetry-exporter-otlp`` installed: gRPC to 4318."""
    with OtlpReceiver() as receiver:
        report = diagnose(
            clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_METRICS_EXPORTER="none")
        )
    problems = dict(report.problems)
    assert list(problems) == [
        f"traces: {receiver.endpoint} does not answer OTLP grpc (it answers HTTP/1.1, not gRPC)"
    ], report.text()
    assert "set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf" in problems[next(iter(problems))]


@pytest.mark.unit
def test_http_sent_to_an_otlp_grpc_port(grpc_receiver):
    report = diagnose(clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=grpc_receiver, **HEALTHY))
    problems = dict(report.problems)
    assert len(problems) == 1, report.text()
    what, fix = next(iter(problems.items()))
    assert what.startswith(f"traces: {grpc_receiver}/v1/traces does not answer OTLP http/protobuf")
    assert "OTLP/gRPC port" in fix
    good = diagnose(
        clean_env(
            OTEL_EXPORTER_OTLP_ENDPOINT=grpc_receiver,
            OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
            OTEL_METRICS_EXPORTER="none",
        )
    )
    assert good.problems == [], good.text()
    assert "answers OTLP grpc" in good.text()


@pytest.mark.unit
def test_metrics_to_an_endpoint_that_takes_none():
    """The distro exports metrics too; a receiver of traces only answers 404 there."""
    with OtlpReceiver() as receiver:
        report = diagnose(
            clean_env(
                OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf"
            )
        )
    problems = dict(report.problems)
    what = (
        f"metrics: {receiver.endpoint}/v1/metrics does not answer OTLP http/protobuf (it answered HTTP 404)"
    )
    assert list(problems) == [what], report.text()
    assert problems[what].endswith("or set OTEL_METRICS_EXPORTER=none")
    assert "    the bridge's portkey.gateway.* metrics are lost until the problem below is fixed" in (
        report.lines
    )


@pytest.fixture
def receivers():
    """A trace receiver and a metrics receiver, as the SDK's variables name them."""
    with OtlpReceiver() as traces, OtlpMetricsReceiver() as metrics:
        yield {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": traces.endpoint,
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": metrics.endpoint,
        }


def metrics_block(report):
    """The lines of the metrics exporter, up to the logs' line."""
    start = report.lines.index(next(line for line in report.lines if line.startswith("  metrics: ")))
    end = report.lines.index(next(line for line in report.lines if line.startswith("  logs: ")))
    return report.lines[start:end]


@pytest.mark.unit
def test_the_metrics_line_says_whether_the_bridges_metrics_go_anywhere(receivers):
    exported = diagnose(clean_env(**receivers))
    assert exported.problems == [], exported.text()
    assert metrics_block(exported) == [
        "  metrics: otlp",
        "    OTLP http/protobuf (from OTEL_EXPORTER_OTLP_PROTOCOL) to "
        + receivers["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"],
        "    answers OTLP http/protobuf",
        "    the bridge's portkey.gateway.* metrics go there",
    ]
    nowhere = diagnose(clean_env(**receivers, OTEL_METRICS_EXPORTER="none"))
    assert metrics_block(nowhere) == [
        "  metrics: none",
        "    the bridge's portkey.gateway.* metrics go nowhere: "
        "set OTEL_METRICS_EXPORTER=otlp to export them",
    ]
    off = diagnose(clean_env(**receivers, OTEL_PORTKEY_METRICS="false"))
    assert off.problems == [], off.text()
    assert "  OTEL_PORTKEY_METRICS=false" in off.lines
    assert (
        metrics_block(off)[-1]
        == "    the bridge's portkey.gateway.* metrics are off (OTEL_PORTKEY_METRICS=false)"
    )
    typo = diagnose(clean_env(**receivers, OTEL_PORTKEY_METRICS="nope"))
    assert any("OTEL_PORTKEY_METRICS" in what for what, _ in typo.problems), typo.text()


@pytest.mark.unit
def test_the_meter_provider_of_this_process(monkeypatch):
    """``otel-portkey doctor`` reports its own process's global meter provider: under
    ``opentelemetry-instrument``, the one an app gets."""
    for name in [
        n for n in sys.modules if n.startswith("opentelemetry.instrumentation.auto_instrumentation")
    ]:
        monkeypatch.delitem(sys.modules, name)
    assert meter_provider_state(_ProxyMeterProvider()) == (
        "none (run `opentelemetry-instrument otel-portkey doctor` to see your app's)"
    )
    monkeypatch.setitem(sys.modules, "opentelemetry.instrumentation.auto_instrumentation", sys)
    assert meter_provider_state(_ProxyMeterProvider()) == "none set (the API's proxy: metrics are no-ops)"
    assert meter_provider_state(NoOpMeterProvider()) == "the API's NoOpMeterProvider: metrics are dropped"
    exporting = MeterProvider(
        metric_readers=[
            PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"http://127.0.0.1:{free_port()}")),
            InMemoryMetricReader(),
        ],
        shutdown_on_exit=False,
    )
    readerless = MeterProvider(shutdown_on_exit=False)
    try:
        assert meter_provider_state(exporting) == (
            "the SDK's MeterProvider, read by PeriodicExportingMetricReader(OTLPMetricExporter), "
            "InMemoryMetricReader"
        )
        assert meter_provider_state(readerless) == (
            "the SDK's MeterProvider without a metric reader: metrics go nowhere"
        )
        report = diagnose(clean_env(**HEALTHY), probe=lambda export: None, meter_provider=readerless)
        assert metrics_block(report)[-1] == (
            "    meter provider in this process: "
            "the SDK's MeterProvider without a metric reader: metrics go nowhere"
        )
    finally:
        exporting.shutdown()  # nothing recorded: nothing to send
        readerless.shutdown()
    unasked = diagnose(clean_env(**HEALTHY), probe=lambda export: None)
    assert not any("meter provider" in line for line in unasked.lines), "reported only when passed"


@pytest.mark.unit
def test_nothing_listening():
    dead = f"http://127.0.0.1:{free_port()}"
    report = diagnose(clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=dead, **HEALTHY))
    ((what, fix),) = report.problems
    assert what == f"traces: {dead}/v1/traces does not answer OTLP http/protobuf (Connection refused)"
    assert fix.startswith("start your Collector or Jaeger there")


@pytest.mark.unit
def test_a_gateway_that_is_down_gets_the_pinned_loopback_gateway_as_advice():
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with OtlpReceiver() as receiver:
        report = diagnose(
            clean_env(PORTKEY_GATEWAY_URL=dead, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, **HEALTHY)
        )
    fix = dict(report.problems)[f"gateway {dead} is not reachable (Connection refused)"]
    assert fix.startswith("start one on loopback: otel-portkey gateway")
    assert "npx" not in report.text()


@pytest.mark.unit
def test_only_instrumentations_whose_library_is_installed_are_listed(monkeypatch):
    """As ``opentelemetry-instrument`` does, one whose library is missing is not listed (the fresh
    virtualenv of ``test_readme.py`` checks this with httpx really absent)."""
    from opentelemetry.instrumentation import dependencies

    real = dependencies.get_dependency_conflicts

    def httpx_missing(deps):
        if any(dep.startswith("httpx ") or dep.startswith("httpx>") for dep in deps):
            return dependencies.DependencyConflict("httpx >= 0.18.0")
        return real(deps)

    monkeypatch.setattr(doctor, "get_dependency_conflicts", httpx_missing)
    with OtlpReceiver() as receiver:
        text = diagnose(clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, **HEALTHY)).text()
    loading = next(line for line in text.splitlines() if "instrumentations that would load" in line)
    assert "httpx2" in loading
    assert "httpx," not in loading


@pytest.mark.unit
def test_secrets_are_masked_and_urls_are_not():
    text = diagnose(
        clean_env(
            PORTKEY_API_KEY="pk-very-secret-value",
            PORTKEY_GATEWAY_URL="http://user:hunter2@127.0.0.1:9/v1",
            OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer abc",
            **HEALTHY,
        ),
        probe=lambda export: None,
    ).text()
    assert "PORTKEY_API_KEY=<set, 20 chars>" in text
    assert "PORTKEY_GATEWAY_URL=http://***@127.0.0.1:9/v1" in text
    assert "hunter2" not in text
    assert "Bearer" not in text


# ---- what was there before, with the protocol now said -----------------------------------------


@pytest.mark.integration
def test_doctor_all_good(oss_gateway):
    with OtlpReceiver() as collector:
        report = diagnose(
            clean_env(
                PORTKEY_GATEWAY_URL=oss_gateway.base_url,
                OTEL_TRACES_EXPORTER="otlp",
                OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
                PORTKEY_API_KEY="pk-very-secret-value",
                OTEL_PORTKEY_METADATA="team=search",
                **HEALTHY,
            )
        )
    text = report.text()
    assert report.problems == [], text
    assert "pk-very-secret-value" not in text
    assert "PORTKEY_API_KEY=<set, 20 chars>" in text
    assert f"gateway {oss_gateway.base_url}: reachable" in text
    assert "the bridge (otel_portkey) would be active" in text
    assert "x-portkey-trace-id: 4bf92f3577b34da6a3ce929d0e0e4736" in text
    assert 'x-portkey-metadata: {"team":"search"}' in text
    assert "All good" in text


@pytest.mark.unit
def test_doctor_names_each_problem_with_a_fix():
    dead = f"http://127.0.0.1:{free_port()}"
    report = diagnose(
        {
            "OTEL_PORTKEY_GATEWAY_URLS": f"{dead},ftp://nope",
            "OTEL_PORTKEY_TRACE_ID_POLICY": "clobber",
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "otel_portkey",
            "OTEL_TRACES_EXPORTER": "otlp,portkey",
            "OTEL_EXPORTER_OTLP_ENDPOINT": dead,
            "OTEL_EXPORTER_PORTKEY_ENDPOINT": dead,
            **HEALTHY,
        }
    )
    problems = dict(report.problems)
    assert any("ftp://nope" in what for what in problems)
    assert any("clobber" in what for what in problems)
    assert problems["the bridge is disabled by OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"].startswith(
        "remove otel_portkey"
    )
    assert problems[f"gateway {dead} is not reachable (Connection refused)"].startswith("start one")
    assert "PORTKEY_API_KEY is not set" in " ".join(problems)
    assert any(what.startswith(f"traces: {dead}/v1/traces does not answer") for what in problems)


@pytest.mark.unit
def test_a_gateway_url_that_is_not_a_url_is_reported_once_as_ignored():
    """Reported as ignored (with why and where to correct it), not also as unreachable."""
    dead = f"http://127.0.0.1:{free_port()}"
    report = diagnose(
        clean_env(OTEL_PORTKEY_GATEWAY_URLS=f"notaurl,{dead}", PORTKEY_BASE_URL="ftp://gw", **HEALTHY),
        probe=lambda export: None,
    )
    assert report.problems == [
        (
            "ignoring gateway URL 'ftp://gw': it must start with http:// or https://",
            "correct PORTKEY_BASE_URL: a gateway's base URL, e.g. http://localhost:8787 "
            "(calls to that gateway are not bridged meanwhile)",
        ),
        (
            "ignoring gateway URL 'notaurl': it must start with http:// or https://",
            "correct OTEL_PORTKEY_GATEWAY_URLS: a gateway's base URL, e.g. http://localhost:8787 "
            "(calls to that gateway are not bridged meanwhile)",
        ),
        (f"gateway {dead} is not reachable (Connection refused)", doctor.GATEWAY_FIX),
    ], report.text()
    lines = report.text().splitlines()
    assert "  gateway notaurl: ignored (not an http:// or https:// URL)" in lines
    assert "  gateway ftp://gw: ignored (not an http:// or https:// URL)" in lines
    assert report.text().count("notaurl") == 3, "its setting, its Reachability line and its one problem"


@pytest.mark.integration
def test_doctor_exit_codes():
    bad = subprocess.run(
        [CLI, "doctor"],
        env=clean_env(OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="*"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1
    assert "fix:" in bad.stdout
    with OtlpReceiver() as collector:
        good = subprocess.run(
            [CLI, "doctor"],
            env=clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint, **HEALTHY),
            capture_output=True,
            text=True,
            check=False,
        )
    assert good.returncode == 0, good.stdout
    assert (
        "    meter provider in this process: "
        "none (run `opentelemetry-instrument otel-portkey doctor` to see your app's)"
    ) in good.stdout.splitlines()


@pytest.mark.integration
def test_doctor_under_opentelemetry_instrument_reports_the_meter_provider_an_app_gets(receivers):
    def run(**env):
        return subprocess.run(
            [INSTRUMENT, CLI, "doctor"],
            env=clean_env(**receivers, **env),
            capture_output=True,
            text=True,
            check=False,
        )

    exporting, nowhere = run(), run(OTEL_METRICS_EXPORTER="none")
    assert exporting.returncode == 0, exporting.stdout + exporting.stderr
    assert (
        "    meter provider in this process: "
        "the SDK's MeterProvider, read by PeriodicExportingMetricReader(OTLPMetricExporter)"
    ) in exporting.stdout.splitlines()
    assert "    the bridge's portkey.gateway.* metrics go there" in exporting.stdout.splitlines()
    assert nowhere.returncode == 0, nowhere.stdout + nowhere.stderr
    assert (
        "    meter provider in this process: "
        "the SDK's MeterProvider without a metric reader: metrics go nowhere"
    ) in nowhere.stdout.splitlines()


@pytest.mark.integration
def test_against_the_real_collector(collector):
    """collector-config.yaml takes traces and metrics (its Prometheus pipeline) on both protocols."""
    grpc_endpoint = f"http://127.0.0.1:{collector.grpc_port}"
    for env, protocol in (
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http, **HEALTHY}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": grpc_endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "grpc"),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            },
            "http/protobuf",
        ),
    ):
        report = diagnose(clean_env(**env))
        assert report.problems == [], report.text()
        if protocol is not None:  # metrics exported (the distro's default): the Collector takes them
            assert metrics_block(report)[-2:] == [
                f"    answers OTLP {protocol}",
                "    the bridge's portkey.gateway.* metrics go there",
            ], report.text()
    wrong = diagnose(
        clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=collector.otlp_http, OTEL_EXPORTER_OTLP_PROTOCOL="grpc")
    )
    problems = [what for what, _ in wrong.problems]
    assert problems == [
        f"traces: {collector.otlp_http} does not answer OTLP grpc (it answers HTTP/1.1, not gRPC)",
        f"metrics: {collector.otlp_http} does not answer OTLP grpc (it answers HTTP/1.1, not gRPC)",
    ], wrong.text()


@pytest.mark.unit
def test_doctors_sample_is_made_by_the_code_that_makes_real_calls():
    """The sample carries what a real call would: the service and the Jaeger link too."""
    env = {
        "OTEL_SERVICE_NAME": "checkout",
        "OTEL_PORTKEY_JAEGER_UI_URL": "http://jaeger.test:16686",
        "OTEL_PORTKEY_METADATA": "team=search",
    }
    sample = sample_call_headers(PortkeySettings.from_env(env), env)
    assert sample["x-portkey-trace-id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert sample["x-portkey-span-name"] == "chat gpt-4o"
    assert len(sample["x-portkey-parent-span-id"]) == len(sample["x-portkey-span-id"]) == 16
    assert json.loads(sample["x-portkey-metadata"]) == {
        "team": "search",
        "service": "checkout",
        "jaeger_trace": "http://jaeger.test:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736",
    }


@pytest.mark.unit
def test_logs_are_checked_when_python_logging_goes_through_otel():
    with OtlpReceiver() as receiver:
        quiet = diagnose(clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, **HEALTHY))
        logging = diagnose(
            clean_env(
                OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
                OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED="true",
                **HEALTHY,
            )
        )
    assert quiet.problems == [], "no log is sent: nothing to check"
    ((what, fix),) = logging.problems
    assert (
        what == f"logs: {receiver.endpoint}/v1/logs does not answer OTLP http/protobuf (it answered HTTP 404)"
    )
    assert fix.endswith("or set OTEL_LOGS_EXPORTER=none")


@pytest.mark.unit
def test_a_bare_host_and_port_means_tls_to_the_grpc_exporter(grpc_receiver):
    """As the gRPC exporter: ``host:port`` (no scheme) is TLS unless OTEL_EXPORTER_OTLP_INSECURE=true."""
    bare = grpc_receiver.removeprefix("http://")
    env = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_METRICS_EXPORTER": "none"}
    tls = diagnose(clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=bare, **env))
    ((what, fix),) = tls.problems
    assert what == f"traces: {bare} does not answer OTLP grpc (the TLS handshake failed (TLS was tried))"
    assert "OTEL_EXPORTER_OTLP_INSECURE=true" in fix
    plain = diagnose(clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=bare, OTEL_EXPORTER_OTLP_INSECURE="true", **env))
    assert plain.problems == [], plain.text()


@pytest.mark.unit
def test_a_malformed_endpoint_or_an_unknown_exporter_is_a_problem_not_a_traceback():
    report = diagnose(clean_env(OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:43l7", **HEALTHY))
    ((what, fix),) = report.problems
    assert "malformed" in what
    assert fix.startswith("correct OTEL_EXPORTER_OTLP_ENDPOINT")
    typo = diagnose(clean_env(OTEL_TRACES_EXPORTER="otlp_http", **HEALTHY), probe=lambda export: None)
    ((what, _),) = typo.problems
    assert what.startswith("OTEL_TRACES_EXPORTER names 'otlp_http', which no installed package provides")


@pytest.mark.unit
def test_the_exporters_headers_go_with_the_probe_and_a_refusal_asks_for_credentials():
    with OtlpReceiver(required_headers={"authorization": "Bearer t0k"}) as receiver:
        without = diagnose(clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, **HEALTHY))
        with_headers = diagnose(
            clean_env(
                OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
                OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer%20t0k",
                **HEALTHY,
            )
        )
    ((what, fix),) = without.problems
    assert "HTTP 401" in what
    assert fix.startswith("it wants credentials")
    assert with_headers.problems == [], with_headers.text()
    assert "t0k" not in with_headers.text()


@pytest.mark.unit
def test_a_password_in_the_portkey_endpoint_is_never_printed():
    report = diagnose(
        clean_env(
            OTEL_TRACES_EXPORTER="portkey",
            OTEL_EXPORTER_PORTKEY_ENDPOINT=f"http://user:hunter2@127.0.0.1:{free_port()}/v1/otel",
            **HEALTHY,
        )
    )
    assert "hunter2" not in report.text()


# ---- hostile peers: a redirect, URLs with secrets, an endpoint that answers escapes ---------------


class Recorder:
    """A loopback HTTP server that answers every request with ``status`` (and ``headers``), and keeps
    what it received: (method, path, headers)."""

    def __init__(self, status=200, headers=()):
        from otel_portkey._peers.loopback import LoopbackHandler, LoopbackServer

        self.received = []
        recorder = self

        class Handler(LoopbackHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length") or 0))
                received = {k.lower(): v for k, v in self.headers.items()}
                recorder.received.append((self.command, self.path, received))
                self.reply(status, b"", "text/plain", headers)

            do_GET = do_POST

        self.server = LoopbackServer(Handler)
        self.server.start("doctor-peer")
        self.url = f"http://127.0.0.1:{self.server.port}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.stop()


def redirected(status, location):
    """doctor's report on an endpoint that answers ``status`` to ``location``, with the exporter's
    Authorization set; and what the endpoint received."""
    with Recorder(status, [("Location", location)]) as endpoint:
        report = diagnose(
            clean_env(
                OTEL_EXPORTER_OTLP_ENDPOINT=endpoint.url,
                OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer%20t0k-SECRET",
                **HEALTHY,
            )
        )
    assert [headers.get("authorization") for _, _, headers in endpoint.received] == ["Bearer t0k-SECRET"]
    return report, endpoint


@pytest.mark.unit
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_and_is_a_problem_with_its_fix(status):
    """An OTLP endpoint that redirects to another host: doctor's probe carries the exporter's
    Authorization nowhere but the configured endpoint, and says the redirect is the problem."""
    with Recorder() as elsewhere:
        report, endpoint = redirected(status, f"{elsewhere.url}/steal")
    assert elsewhere.received == [], "the redirect was followed"
    ((what, fix),) = report.problems
    assert what == (
        f"traces: {endpoint.url}/v1/traces does not answer OTLP http/protobuf "
        f"(it answered HTTP {status}, a redirect, not followed, to {elsewhere.url}/steal)"
    )
    assert "redirect would take the exporter's headers" in fix
    assert "SECRET" not in report.text()


@pytest.mark.unit
def test_a_redirects_location_is_printed_masked_and_without_escapes():
    with Recorder() as elsewhere:
        location = f"http://evil:pw-SECRET@127.0.0.1:{elsewhere.server.port}/x?token=SECRET-Q\x1b[31mRED"
        report, _ = redirected(302, location)
    assert elsewhere.received == []
    ((what, _),) = report.problems
    assert what.endswith(f"to http://***@127.0.0.1:{elsewhere.server.port}/x?token=***)")
    text = report.text()
    assert "SECRET" not in text
    assert "\x1b" not in text


@pytest.mark.unit
def test_every_url_doctor_prints_has_its_userinfo_and_query_values_masked():
    with OtlpReceiver() as receiver:
        host = receiver.endpoint.removeprefix("http://")
        report = diagnose(
            clean_env(
                PORTKEY_GATEWAY_URL="https://ghp_TOKEN-SECRET@127.0.0.1:9",
                OTEL_PORTKEY_GATEWAY_URLS=(
                    "http://127.0.0.1:9/v1?api_key=SECRET-1&x=SECRET-2,"
                    "http://proxyuser:pa@ss-SECRET-3@127.0.0.1:9,ftp://u:SECRET-4@127.0.0.1:9"
                ),
                OTEL_EXPORTER_OTLP_ENDPOINT=f"http://u:SECRET-5@{host}",
                OTEL_PORTKEY_JAEGER_UI_URL="http://j:SECRET-6@127.0.0.1:16686",
                OTEL_TRACES_EXPORTER="otlp,portkey",
                OTEL_EXPORTER_PORTKEY_ENDPOINT="http://127.0.0.1:9/v1/otel?key=SECRET-7#SECRET-8",
                **HEALTHY,
            )
        )
    text = report.text()
    assert "SECRET" not in text, text
    for shown in (
        "https://***@127.0.0.1:9",
        "http://127.0.0.1:9/v1?api_key=***&x=***",
        "http://***@127.0.0.1:9",
        "'ftp://***@127.0.0.1:9'",  # in the warning that the gateway URL is ignored
        f"OTLP http/protobuf (from OTEL_EXPORTER_OTLP_PROTOCOL) to http://***@{host}/v1/traces",
        "http://127.0.0.1:9/v1/otel?key=***#***",
        "http://***@127.0.0.1:16686/trace/",  # the sample call's jaeger_trace metadata
    ):
        assert shown in text, (shown, text)


class HostileTraceService(trace_service_pb2_grpc.TraceServiceServicer):
    """Answers every export with an error whose details would redraw the terminal: CR LF, a fake
    verdict, cursor movement and colour."""

    DETAILS = (
        "denied\r\n\nAll good: the bridge will join OTel traces and Portkey logs here.\n"
        "\x1b[2K\x1b[1A\x1b[32mgreen\x1b[0m \x1b]0;title\x07\u202eevil\x00"
    )

    def Export(self, request, context):
        context.abort(grpc.StatusCode.PERMISSION_DENIED, self.DETAILS)


@pytest.mark.unit
def test_what_a_hostile_grpc_endpoint_answers_reaches_the_terminal_without_control_characters():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(HostileTraceService(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        report = diagnose(
            clean_env(
                OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
                OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
                OTEL_METRICS_EXPORTER="none",
            )
        )
    finally:
        server.stop(None)
    ((what, fix),) = report.problems
    assert what.startswith(
        f"traces: http://127.0.0.1:{port} does not answer OTLP grpc (PERMISSION_DENIED: denied"
    )
    assert fix.startswith("it wants credentials")
    text = report.text()
    assert not [c for c in text if (ord(c) < 32 and c != "\n") or 0x7F <= ord(c) < 0xA0 or c == "\u202e"]
    assert [line for line in text.splitlines() if line.startswith("All good")] == []
    assert "green" in text, "the text itself is kept, without its escapes"


@pytest.mark.unit
def test_a_gateway_url_that_does_not_parse_is_a_problem_not_a_traceback():
    report = diagnose(
        clean_env(OTEL_PORTKEY_GATEWAY_URLS="http://[::1", **HEALTHY), probe=lambda export: None
    )
    assert report.problems == [
        (
            "gateway http://[::1: the URL is malformed (Invalid IPv6 URL)",
            "correct PORTKEY_GATEWAY_URL / OTEL_PORTKEY_GATEWAY_URLS: a gateway's base URL, e.g. "
            "http://localhost:8787",
        )
    ], report.text()


@pytest.mark.unit
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_an_endpoint_that_does_not_parse_asks_to_correct_the_endpoint(protocol):
    """Not "set OTEL_EXPORTER_OTLP_PROTOCOL": the protocol is fine, the URL is not."""
    report = diagnose(
        clean_env(
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
            OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
            OTEL_EXPORTER_OTLP_ENDPOINT="http://[::1",
        ),
        probe=lambda export: None,
    )
    ((what, fix),) = report.problems
    assert what == "traces: OTEL_EXPORTER_OTLP_ENDPOINT='http://[::1' is malformed (Invalid IPv6 URL)"
    assert fix == (
        "correct OTEL_EXPORTER_OTLP_ENDPOINT: e.g. http://localhost:4318 (OTLP/HTTP) or "
        "http://localhost:4317 (gRPC)"
    )


@pytest.mark.unit
@pytest.mark.parametrize("url", ["gw.corp/it's", "gw.corp/\\x", "gw.corp/'\""])
def test_an_ignored_gateway_url_names_its_variable_however_it_is_quoted(url):
    """The warning quotes the URL as Python's repr does: double quotes around one holding ``'``."""
    report = diagnose(clean_env(PORTKEY_BASE_URL=url, **HEALTHY), probe=lambda export: None)
    assert report.problems[0] == (
        f"ignoring gateway URL {url!r}: it must start with http:// or https://",
        "correct PORTKEY_BASE_URL: a gateway's base URL, e.g. http://localhost:8787 (calls to that "
        "gateway are not bridged meanwhile)",
    ), report.text()
