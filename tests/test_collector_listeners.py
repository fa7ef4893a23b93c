"""Who can write into the Collectors (issue 29, item 1), proved with the real Collector binary.

- collector-config.yaml and the tier's configs (examples/scale-out/) listen on loopback when their
  variables are unset: the effective config the binary resolves (``print-config``) and, for
  collector-config.yaml, the sockets the running process opened (in a private network namespace, so
  the default ports cannot clash with anything on the machine).
- The tier's receivers (load balancer, samplers) require the bearer token: a push without it, with a
  wrong one, over OTLP/HTTP or gRPC, to the load balancer or straight to a sampler, is refused (401 /
  UNAUTHENTICATED) and nothing of it reaches Jaeger or the Portkey stand-in; with it, everything does,
  the load balancer passing the token on to the sampler.
- With OTELCOL_BEARER_TOKEN unset or empty a tier Collector refuses to start, saying why.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from otel_portkey.testing import OtlpReceiver

from components import COLLECTOR_CONFIG, Jaeger
from conftest import PORTKEY_STANDIN_KEY
from scale_out import LOADBALANCER_CONFIG, SAMPLER_CONFIG, Otelcol, Tier, wait_until

pytestmark = pytest.mark.integration

LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any Collector variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTELCOL_", "JAEGER_", "PORTKEY_"))}
    return {**env, **extra}


def host_of(endpoint: str) -> str:
    return endpoint.rsplit(":", 1)[0]


def listeners(config: dict[str, Any]) -> dict[str, str]:
    """Every address the resolved ``config`` listens on: {where: host}."""
    found = {}
    for kind in ("receivers", "extensions", "exporters"):
        for name, component in (config.get(kind) or {}).items():
            component = component or {}
            if kind == "exporters" and not name.startswith("prometheus"):
                continue  # the other exporters connect out
            if "endpoint" in component:
                found[f"{kind}::{name}"] = host_of(component["endpoint"])
            for protocol, settings in (component.get("protocols") or {}).items():
                found[f"{kind}::{name}::{protocol}"] = host_of(settings["endpoint"])
    for number, reader in enumerate(config["service"]["telemetry"]["metrics"].get("readers") or []):
        found[f"service::telemetry::metrics::readers[{number}]"] = reader["pull"]["exporter"]["prometheus"][
            "host"
        ]
    return found


def print_config(binary: str, config: Path, env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run(
        [binary, "print-config", f"--config={config}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded: dict[str, Any] = yaml.safe_load(result.stdout)
    return loaded


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            COLLECTOR_CONFIG,
            {
                "receivers::otlp::grpc",
                "receivers::otlp::http",
                "extensions::health_check",
                "exporters::prometheus",
                "service::telemetry::metrics::readers[0]",
            },
        ),
        (
            LOADBALANCER_CONFIG,
            {
                "receivers::otlp::grpc",
                "receivers::otlp::http",
                "extensions::health_check",
                "exporters::prometheus",
                "service::telemetry::metrics::readers[0]",
            },
        ),
        (
            SAMPLER_CONFIG,
            {
                "receivers::otlp::grpc",
                "receivers::otlp::http",
                "extensions::health_check",
                "service::telemetry::metrics::readers[0]",
            },
        ),
    ],
    ids=["collector-config", "loadbalancer", "sampler"],
)
def test_with_its_variables_unset_every_listener_is_on_loopback(
    go_binaries: dict[str, str], config: Path, expected: set[str]
) -> None:
    resolved = print_config(go_binaries["OTELCOL"], config, clean_env(OTELCOL_BEARER_TOKEN="t"))
    found = listeners(resolved)
    assert set(found) == expected
    assert {where: host for where, host in found.items() if host not in LOOPBACK_HOSTS} == {}


def test_the_tiers_receivers_require_the_bearer_token(go_binaries: dict[str, str]) -> None:
    for config in (LOADBALANCER_CONFIG, SAMPLER_CONFIG):
        resolved = print_config(go_binaries["OTELCOL"], config, clean_env(OTELCOL_BEARER_TOKEN="t"))
        for protocol in ("grpc", "http"):
            settings = resolved["receivers"]["otlp"]["protocols"][protocol]
            assert settings["auth"]["authenticator"] == "bearertokenauth", (config.name, protocol)
        assert "bearertokenauth" in resolved["service"]["extensions"]


def listening_sockets(pid: int) -> set[tuple[str, int]]:
    """(address in /proc's hex form, port) of every TCP socket listening in ``pid``'s network namespace."""
    found = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                address, port = fields[1].split(":")
                found.add((address, int(port, 16)))
    return found


def is_loopback(hex_address: str) -> bool:
    if len(hex_address) == 8:  # IPv4, little-endian: 0100007F is 127.0.0.1
        return hex_address.endswith("7F")
    return hex_address == "00000000000000000000000001000000"  # ::1


def test_collector_config_run_with_its_variables_unset_accepts_on_loopback_only(
    go_binaries: dict[str, str], tmp_path: Path
) -> None:
    """The running process, not only its config: every socket it listens on is a loopback one."""
    unshare = shutil.which("unshare")
    probe = (
        subprocess.run([unshare, "--net", "--map-root-user", "true"], capture_output=True, check=False)
        if unshare
        else None
    )
    if probe is None or probe.returncode != 0:
        pytest.skip("needs unshare --net --map-root-user (a private network namespace for the default ports)")
    assert unshare is not None
    env = clean_env(OTELCOL_STORAGE_DIR=str(tmp_path / "storage"))
    log = tmp_path / "otelcol.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [
                unshare,
                "--net",
                "--map-root-user",
                "--",
                go_binaries["OTELCOL"],
                f"--config={COLLECTOR_CONFIG}",
            ],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        default_ports = {4317, 4318, 13133, 8889, 8888}

        def all_listening() -> bool:
            assert process.poll() is None, log.read_text()[-3000:]
            return {port for _, port in listening_sockets(process.pid)} >= default_ports

        assert wait_until(all_listening, timeout=60, interval=0.1), log.read_text()[-3000:]
        sockets = listening_sockets(process.pid)
        assert {port for _, port in sockets} == default_ports
        assert [s for s in sockets if not is_loopback(s[0])] == []
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.parametrize("token", [None, ""], ids=["unset", "empty"])
@pytest.mark.parametrize("config", [LOADBALANCER_CONFIG, SAMPLER_CONFIG], ids=["loadbalancer", "sampler"])
def test_a_tier_collector_without_a_token_refuses_to_start(
    go_binaries: dict[str, str], config: Path, token: str | None, tmp_path: Path
) -> None:
    env = clean_env(OTELCOL_STORAGE_DIR=str(tmp_path))
    if token is not None:
        env["OTELCOL_BEARER_TOKEN"] = token
    result = subprocess.run(
        [go_binaries["OTELCOL"], f"--config={config}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "extensions::bearertokenauth: no bearer token provided" in result.stderr


# --- pushes to the running tier ------------------------------------------------------------------


def export_request(service: str, trace_id: str) -> ExportTraceServiceRequest:
    """One span of ``service`` in trace ``trace_id``, as an app would export it."""
    now = time.time_ns()
    span = Span(
        trace_id=bytes.fromhex(trace_id),
        span_id=secrets.token_bytes(8),
        name="pushed",
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=now - 1_000_000,
        end_time_unix_nano=now,
    )
    resource = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))])
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=[span])])]
    )


def post(collector: Otelcol, request: ExportTraceServiceRequest, headers: dict[str, str]) -> int:
    """POST to the Collector's OTLP/HTTP receiver; the status it answered."""
    http_request = urllib.request.Request(
        f"{collector.otlp_http}/v1/traces",
        data=request.SerializeToString(),
        headers={"content-type": "application/x-protobuf", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(http_request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def push_grpc(
    collector: Otelcol, request: ExportTraceServiceRequest, headers: dict[str, str]
) -> grpc.StatusCode:
    """Export over OTLP/gRPC; the status code it answered."""
    with grpc.insecure_channel(collector.otlp_grpc) as channel:
        try:
            TraceServiceStub(channel).Export(request, metadata=tuple(headers.items()), timeout=30)
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()
            return code
    return grpc.StatusCode.OK


@pytest.fixture
def tier(
    go_binaries: dict[str, str], jaeger: Jaeger, portkey_standin: OtlpReceiver, tmp_path: Path
) -> Iterator[Tier]:
    tier = Tier(
        go_binaries["OTELCOL"],
        tmp_path,
        jaeger.otlp_grpc,
        f"{portkey_standin.endpoint}/v1/otel",
        PORTKEY_STANDIN_KEY,
        samplers=1,
        sampler_env={"OTELCOL_KEEP_PERCENT": "100", "OTELCOL_DECISION_WAIT": "1s"},
        sampler_overlays=(),
    )
    yield tier
    tier.stop()


def test_a_push_without_the_token_is_refused_and_reaches_nothing_with_it_everything_does(
    tier: Tier, jaeger: Jaeger, portkey_standin: OtlpReceiver
) -> None:
    service = f"pusher-{uuid.uuid4().hex[:8]}"
    balancer, sampler = tier.entry, tier.samplers[0]
    token = {"authorization": f"Bearer {tier.token}"}
    refused: dict[str, object] = {}
    attempts = {
        "http, no token": (post, balancer, {}),
        "http, wrong token": (post, balancer, {"authorization": "Bearer not-the-token"}),
        "http, token without its scheme": (post, balancer, {"authorization": tier.token}),
        "grpc, no token": (push_grpc, balancer, {}),
        "grpc, wrong token": (push_grpc, balancer, {"authorization": "Bearer not-the-token"}),
        "http to a sampler, no token": (post, sampler, {}),
        "grpc to a sampler, no token": (push_grpc, sampler, {}),
    }
    for attempt, (send, collector, headers) in attempts.items():
        trace_id = secrets.token_hex(16)
        refused[trace_id] = (attempt, send(collector, export_request(service, trace_id), headers))
    answers = {attempt: answer for attempt, answer in refused.values()}
    assert answers == {
        "http, no token": 401,
        "http, wrong token": 401,
        "http, token without its scheme": 401,
        "grpc, no token": grpc.StatusCode.UNAUTHENTICATED,
        "grpc, wrong token": grpc.StatusCode.UNAUTHENTICATED,
        "http to a sampler, no token": 401,
        "grpc to a sampler, no token": grpc.StatusCode.UNAUTHENTICATED,
    }

    accepted = {secrets.token_hex(16): "http", secrets.token_hex(16): "grpc"}
    for trace_id, protocol in accepted.items():
        request = export_request(service, trace_id)
        answer = post(balancer, request, token) if protocol == "http" else push_grpc(balancer, request, token)
        assert answer in (200, grpc.StatusCode.OK), (protocol, answer)

    # Through the load balancer (which sends the token on) and the sampler, to both backends.
    for trace_id in accepted:
        assert len(jaeger.trace(trace_id, timeout=60)) == 1, f"trace {trace_id} did not reach Jaeger"
    delivered = portkey_standin.wait_for(
        lambda spans: set(accepted) <= {s.trace_id for s in spans}, timeout=60
    )
    assert set(accepted) <= {s.trace_id for s in delivered}
    # The refused pushes came first on the same path: none of them is anywhere.
    assert {t for t in refused if jaeger.trace(t, timeout=0)} == set()
    assert {s.trace_id for s in portkey_standin.spans} & set(refused) == set()
    assert set(jaeger.search(service, timeout=0)) == set(accepted)
