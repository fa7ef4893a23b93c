"""``otel-portkey gateway``: the pinned OSS gateway and the scripted model on loopback, reached by an
unchanged OpenAI app, and nothing left listening after Ctrl-C, SIGTERM or SIGHUP. Traced
(``--otlp-endpoint``), its node process gets the OpenTelemetry preload and an ``OTEL_*``
environment of its own (the end-to-end proof is tests/test_gateway_tracing.py); the pinned npm
install fails in one sentence and leaves nothing half-installed."""

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import pytest
from openai import OpenAI

from otel_portkey import _cli
from otel_portkey._cli import gateway as gateway_command
from otel_portkey._peers import oss_gateway
from otel_portkey._peers.oss_gateway import (
    NODE_OTEL_PACKAGES,
    GatewayUnavailable,
    OssGateway,
    gateway_preload,
    install_directory,
    install_gateway,
    installed_gateway,
    npm_manifest,
)
from otel_portkey.environment_variables import OTEL_PORTKEY_CACHE
from otel_portkey.testing import free_port
from test_readme import alive, descendants, exports_in, listening, wait_for_gateway

CLI = str(Path(sys.executable).with_name("otel-portkey"))


def start(port, env=None, preexec_fn=None):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PORTKEY_", "OPENAI_"))}
    return subprocess.Popen(
        [CLI, "gateway", "--port", str(port)],
        env={**clean, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec_fn,
    )


def ignoring_sigint_and_sighup():
    """What a script's ``command &`` (under ``nohup``) hands its child: SIGINT and SIGHUP ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def stopped_by(process, stop_signal):
    """Send ``stop_signal`` to the command and wait for it to end; its stderr."""
    process.send_signal(stop_signal)
    return process.communicate(timeout=30)[1]


def assert_stopped_whole(process, stderr, below):
    """The command ended cleanly, said so, and left none of the processes it started running."""
    assert process.returncode == 0, stderr
    assert stderr.strip().endswith("otel-portkey gateway: stopped (gateway, hop and model server)")
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in below) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in below if alive(pid)] == []


@pytest.mark.integration
def test_ctrl_c_stops_the_gateway_even_when_started_with_sigint_ignored(oss_gateway):
    """Started in a script's background, the command inherits SIGINT ignored (Python then raises no
    KeyboardInterrupt); the command still stops everything on SIGINT, as it says."""
    process = start(free_port(), preexec_fn=ignoring_sigint_and_sighup)
    try:
        wait_for_gateway(process)
        below = descendants(process.pid)
    finally:
        stderr = stopped_by(process, signal.SIGINT)
    assert_stopped_whole(process, stderr, below)


@pytest.mark.integration
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_an_unchanged_openai_app_reaches_the_model_through_the_real_gateway(oss_gateway, stop_signal):
    port = free_port()
    process = start(port)
    try:
        printed = wait_for_gateway(process)
        env = exports_in(printed)
        assert env["PORTKEY_GATEWAY_URL"] == env["OPENAI_BASE_URL"] == f"http://127.0.0.1:{port}/v1"
        model_port = int(re.search(r"x-portkey-custom-host: http://127\.0\.0\.1:(\d+)/v1", printed)[1])
        client = OpenAI(base_url=env["OPENAI_BASE_URL"], api_key=env["OPENAI_API_KEY"], max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "ping"}]
        )
        assert raw.parse().choices[0].message.content == "echo: ping"  # the scripted model answered
        # ... through the OSS gateway, which answered with its own headers
        assert raw.headers["x-portkey-provider"] == "openai"
        assert raw.headers["x-portkey-last-used-option-index"] == "config"
        below = descendants(process.pid)
        assert below, "the gateway runs as a child process"
        gateway_ports = {int(p) for p in re.findall(r"--port=(\d+)", " ".join(cmdline(pid) for pid in below))}
        assert gateway_ports
    finally:
        stderr = stopped_by(process, stop_signal)
    assert_stopped_whole(process, stderr, below)
    for listened in (port, model_port, *gateway_ports):
        assert not listening(listened), f"port {listened} still listening"


def cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.integration
def test_a_busy_port_is_one_sentence_and_starts_nothing(oss_gateway):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        before = set(
            subprocess.run(["pgrep", "-f", "start-server.js"], capture_output=True, text=True).stdout.split()
        )
        process = start(port)
        _, stderr = process.communicate(timeout=30)
        after = set(
            subprocess.run(["pgrep", "-f", "start-server.js"], capture_output=True, text=True).stdout.split()
        )
    assert process.returncode == 1
    assert stderr.strip() == (
        f"otel-portkey gateway: port {port} is already in use (another gateway?); stop it or pass --port N"
    )
    assert after <= before, "no gateway process was started"


class FakeNode:
    """Stands in for the gateway's node process: what it was started with; it is ready at once."""

    started: ClassVar[list[tuple[list[str], dict[str, object]]]] = []

    def __init__(self, args: list[str], **kwargs: object) -> None:
        FakeNode.started.append((args, kwargs))
        self.stdout = io.StringIO("Ready for connections\n")

    def poll(self) -> None:
        return None

    def terminate(self) -> None:
        pass

    def wait(self, timeout: float | None = None) -> int:
        return 0


@pytest.fixture
def fake_node(monkeypatch, tmp_path):
    """An installed-looking gateway in a temporary cache, and node replaced by :class:`FakeNode`;
    the shell has an app's ``OTEL_*`` variables."""
    monkeypatch.setenv(OTEL_PORTKEY_CACHE, str(tmp_path))
    for name, value in {
        "OTEL_SERVICE_NAME": "the-app",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=app",
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer app-secret",
        "OTEL_TRACES_SAMPLER": "always_off",
    }.items():
        monkeypatch.setenv(name, value)
    entry = installed_gateway()
    entry.parent.mkdir(parents=True)
    entry.touch()
    FakeNode.started = []
    monkeypatch.setattr(oss_gateway.subprocess, "Popen", FakeNode)
    monkeypatch.setattr(oss_gateway, "node_binary", lambda: "/usr/bin/node")
    return FakeNode.started


def test_a_traced_gateway_runs_with_the_preload_and_an_otel_environment_of_its_own(fake_node):
    OssGateway(otlp_endpoint="http://127.0.0.1:4318/", service_name="edge-gateway").start(
        install=False
    ).stop()
    ((args, kwargs),) = fake_node
    assert args[args.index("--import") + 1] == gateway_preload().as_uri()
    assert gateway_preload().is_file()
    otel = {k: v for k, v in kwargs["env"].items() if k.startswith("OTEL_")}  # type: ignore[attr-defined]
    assert otel == {
        "OTEL_SERVICE_NAME": "edge-gateway",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_PROPAGATORS": "tracecontext,baggage",
        "OTEL_BSP_SCHEDULE_DELAY": "1000",
        "OTEL_METRIC_EXPORT_INTERVAL": "10000",
        "OTEL_NODE_RESOURCE_DETECTORS": "env,host,process",
    }, "the shell's OTEL_* (the app's) are not passed on"
    assert kwargs["cwd"] == install_directory(installed_gateway()), "where the preload finds node_modules"


def test_an_untraced_gateway_loads_nothing_of_opentelemetry(fake_node):
    OssGateway().start(install=False).stop()
    ((args, kwargs),) = fake_node
    assert "--import" not in args
    assert not [k for k in kwargs["env"] if k.startswith("OTEL_")]  # type: ignore[attr-defined]


def test_the_install_holds_the_gateway_and_opentelemetry_pinned_exactly():
    dependencies = npm_manifest()["dependencies"]
    assert isinstance(dependencies, dict)
    assert dependencies["@opentelemetry/sdk-node"] == "0.300.0"
    assert dependencies["@opentelemetry/instrumentation-http"] == "0.300.0"
    assert dependencies["@opentelemetry/instrumentation-undici"] == "0.34.0"
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", version) for version in dependencies.values())
    preload = gateway_preload().read_text()
    imported = set(re.findall(r'require\("(@opentelemetry/[^"]+)"\)', preload))
    assert imported <= set(NODE_OTEL_PACKAGES), "the preload imports only pinned packages"


def test_a_cache_installed_from_other_pins_is_not_taken_for_this_one(monkeypatch, tmp_path):
    monkeypatch.setenv(OTEL_PORTKEY_CACHE, str(tmp_path))
    before = installed_gateway()
    assert installed_gateway() == before, "the same pins, the same place"
    monkeypatch.setitem(NODE_OTEL_PACKAGES, "@opentelemetry/sdk-node", "0.301.0")
    assert installed_gateway() != before
    monkeypatch.delitem(NODE_OTEL_PACKAGES, "@opentelemetry/sdk-node")
    assert installed_gateway() != before
    assert install_directory(before).parent == tmp_path


@pytest.mark.parametrize(
    ("stderr", "sentence"),
    [
        (
            "npm error code ENOTFOUND\nnpm error network request to https://registry.npmjs.org/x failed",
            "npm could not reach the npm registry to install @portkey-ai/gateway@1.15.2 and OpenTelemetry "
            "for Node (needed once, then cached)",
        ),
        (
            "npm error code ETARGET\nnpm error notarget No matching version found for x@9",
            "npm install of @portkey-ai/gateway@1.15.2 and OpenTelemetry for Node failed: "
            "npm error code ETARGET npm error notarget No matching version found for x@9",
        ),
    ],
)
def test_a_failed_npm_install_is_one_sentence_and_leaves_nothing(monkeypatch, tmp_path, stderr, sentence):
    monkeypatch.setenv(OTEL_PORTKEY_CACHE, str(tmp_path))
    monkeypatch.setattr(oss_gateway.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(oss_gateway, "node_binary", lambda: "/usr/bin/node")
    ran = []

    def npm(args, **kwargs):
        ran.append(json.loads((Path(kwargs["cwd"]) / "package.json").read_text()))
        return subprocess.CompletedProcess(args, 1, "", stderr)

    monkeypatch.setattr(oss_gateway.subprocess, "run", npm)
    with pytest.raises(GatewayUnavailable) as raised:
        install_gateway()
    assert str(raised.value) == sentence
    assert ran == [npm_manifest()], "one npm install, of the gateway and OpenTelemetry together"
    assert list(tmp_path.iterdir()) == [], "nothing half-installed is left"


def served_with(monkeypatch, *argv):
    calls = []
    monkeypatch.setattr(gateway_command, "serve", lambda *args, **kwargs: calls.append((args, kwargs)) or 0)
    assert _cli.main(["gateway", *argv]) == 0
    return calls


def test_the_command_passes_the_endpoint_and_service_name_on(monkeypatch):
    assert served_with(monkeypatch, "--port", "9000") == [((9000,), {})], "untraced: as before"
    assert served_with(monkeypatch, "--otlp-endpoint", "http://127.0.0.1:4318/") == [
        ((8787,), {"otlp_endpoint": "http://127.0.0.1:4318", "service_name": "portkey-gateway"})
    ]
    assert served_with(monkeypatch, "--otlp-endpoint", "https://c:4318", "--service-name", "edge") == [
        ((8787,), {"otlp_endpoint": "https://c:4318", "service_name": "edge"})
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--otlp-endpoint", "localhost:4318"], "is not an OTLP/HTTP base URL"),
        (["--service-name", "edge"], "--service-name needs --otlp-endpoint"),
    ],
)
def test_a_wrong_flag_is_one_sentence(monkeypatch, capsys, argv, message):
    monkeypatch.setattr(gateway_command, "serve", lambda *args, **kwargs: pytest.fail("served"))
    with pytest.raises(SystemExit) as exited:
        _cli.main(["gateway", *argv])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_print_preload_prints_the_shipped_file(monkeypatch, capsys):
    monkeypatch.setattr(gateway_command, "serve", lambda *args, **kwargs: pytest.fail("served"))
    assert _cli.main(["gateway", "--print-preload"]) == 0
    printed = Path(capsys.readouterr().out.strip())
    assert printed == gateway_preload()
    assert printed.read_text().startswith("// OpenTelemetry for an OSS Portkey gateway")


@pytest.mark.unit
def test_free_port_never_hands_out_a_port_twice():
    """A thousand ports, none bound meanwhile (as when children bind them later): all different,
    though the kernel, picking at random among free ports, would repeat some."""
    ports = [free_port() for _ in range(1000)]
    assert len(set(ports)) == len(ports)
