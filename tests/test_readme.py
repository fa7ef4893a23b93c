"""The README's quick start, run as a newcomer runs it: its own commands, in its order, in a fresh
virtualenv with an empty HOME, against the real OSS gateway, Collector (``collector-config.yaml``)
and Jaeger. The test fails the day a command in the README stops working.

The commands are taken from the README, not retyped. Two things are arranged around them: the
download caches (pip, npm, the pinned gateway) and the machine's pip settings are the machine's own,
so an empty HOME does not mean downloading everything again, and pip installs the versions
``constraints.txt`` pins; and the
``docker compose ... up jaeger collector`` line, which needs a Docker engine, is played by the
fixtures: the same ``collector-config.yaml``, forwarding to a real Jaeger.

The README's fixed ports (the gateway's 8787, the Collector's 4317 and 4318) may be busy on the
machine that runs the tests: the commands run with free ports put in their place (``--port N`` for
the gateway, the URLs of the ``export`` lines), and the gateway's output is compared with the README
once its port is put back. What the fixed ports themselves are is checked without binding them:
``otel-portkey gateway`` serves 8787 when given no port, and the compose file publishes the
Collector on 4317 and 4318.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from otel_portkey.testing import cache_root, free_port

from components import ROOT, Collector, attribute, span_id
from conftest import PORTKEY_STANDIN_KEY

pytestmark = [pytest.mark.integration, pytest.mark.slow]

README = ROOT / "README.md"
SECTION = "## Quick start"
LONG_RUNNING = "# runs until Ctrl-C"
GATEWAY_PORT, OTLP_GRPC_PORT, OTLP_HTTP_PORT = 8787, 4317, 4318  # the README's


@dataclass
class QuickStart:
    """The quick start's fenced blocks, in order."""

    commands: list[str] = field(default_factory=list)  # shell commands, continuation lines joined
    files: dict[str, str] = field(default_factory=dict)  # ``# app.py``-headed python blocks
    outputs: list[str] = field(default_factory=list)  # ``text`` blocks: real output shown


def quick_start(text: str) -> QuickStart:
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end != -1 else len(text)]
    found = QuickStart()
    for language, body in re.findall(r"^```(\w*)\n(.*?)^```", section, flags=re.DOTALL | re.MULTILINE):
        if language == "bash":
            found.commands += [
                line.strip() for line in body.replace("\\\n", " ").splitlines() if line.strip()
            ]
        elif language == "python":
            name = body.splitlines()[0].removeprefix("#").split(":")[0].strip()
            found.files[name] = body
        elif language == "text":
            found.outputs.append(body)
    return found


def on_ports(command: str, ports: dict[int, int]) -> str:
    """A README command with the README's ports replaced by ``ports`` (README port: the one to use):
    in ``127.0.0.1:PORT`` and ``localhost:PORT``, and as ``--port N`` for ``otel-portkey gateway``."""

    def moved(match: re.Match[str]) -> str:
        return f"{match[1]}:{ports.get(int(match[2]), int(match[2]))}"

    command = re.sub(r"\b(127\.0\.0\.1|localhost):(\d+)\b", moved, command)
    if re.match(r"otel-portkey gateway(?!\S)", command) and "--port" not in command:
        command = command.replace(
            "otel-portkey gateway", f"otel-portkey gateway --port {ports[GATEWAY_PORT]}", 1
        )
    left = [port for port in ports if re.search(rf":{port}\b|--port {port}\b", command)]
    assert not left, f"README port {left} in a form the test does not move: {command}"
    return command


def default_gateway_port(monkeypatch: pytest.MonkeyPatch) -> int:
    """The port ``otel-portkey gateway`` serves when given none (its ``serve`` is not run)."""
    from otel_portkey import _cli
    from otel_portkey._cli import gateway

    served: list[int] = []
    monkeypatch.setattr(gateway, "serve", lambda port: served.append(port) or 0)
    assert _cli.main(["gateway"]) == 0
    (port,) = served
    return port


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Newcomer:
    """A shell session: ``export`` and ``. activate`` lines carry over to later commands, as in a
    terminal; every command runs in ``home``'s ``work`` folder, beside a clone of this repository."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.cwd = home / "work"
        self.cwd.mkdir()
        (self.cwd / "otel-portkey").symlink_to(ROOT)
        self.state: list[str] = []
        venv_bin = str(Path(sys.executable).parent)
        path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != venv_bin)
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("OTEL_", "PORTKEY_", "OPENAI_", "VIRTUAL_ENV", "PYTHON"))
        }
        self.env.update(
            HOME=str(home),
            PATH=path,
            # the machine's download caches, not the empty HOME's; pip installs the pinned versions
            PIP_CACHE_DIR=os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip"),
            PIP_CONSTRAINT=str(ROOT / "constraints.txt"),
            PIP_DISABLE_PIP_VERSION_CHECK="1",
            npm_config_cache=os.environ.get("npm_config_cache") or str(Path.home() / ".npm"),  # noqa: SIM112 (npm reads it in lower case)
            OTEL_PORTKEY_CACHE=str(cache_root()),
        )

    def script(self, command: str) -> str:
        return "\n".join(["set -e", *self.state, command])

    def run(self, command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run one README line; its ``export`` / ``. activate`` parts stay for the lines after it."""
        result = subprocess.run(
            ["bash", "-c", self.script(command)],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        for part in command.split("&&"):
            part = part.strip()
            if part.startswith(("export ", ". ", "source ")):
                self.state.append(part)
        return result

    def start(self, command: str) -> subprocess.Popen[str]:
        """Start a long-running README line (it runs in its own terminal)."""
        return subprocess.Popen(
            ["bash", "-c", self.script(f"exec {command}")],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def exports_in(text: str) -> dict[str, str]:
    """``NAME=value`` pairs of the ``export`` lines in ``text``."""
    pairs: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line.strip(), comments=True)
        if words[:1] == ["export"]:
            pairs.update(word.split("=", 1) for word in words[1:] if "=" in word)
    return pairs


def console_spans(stdout: str) -> list[dict]:
    """The spans the console exporter printed (one JSON object each)."""
    decoder = json.JSONDecoder()
    spans, position = [], 0
    while (start := stdout.find("{", position)) != -1:
        try:
            value, position = decoder.raw_decode(stdout, start)
        except ValueError:
            position = start + 1
            continue
        if isinstance(value, dict) and "context" in value:
            spans.append(value)
    return spans


def quiet(result: subprocess.CompletedProcess[str]) -> None:
    """A healthy run prints no error and no warning."""
    assert result.returncode == 0, result.stderr[-3000:]
    noise = [
        line for line in result.stderr.splitlines() if re.search(r"error|warn|fail|traceback", line, re.I)
    ]
    assert noise == [], result.stderr[-3000:]


@pytest.fixture
def readme_ports():
    """The ports the quick start runs on: a free one for each of the README's (README port: free)."""
    return {port: free_port() for port in (GATEWAY_PORT, OTLP_GRPC_PORT, OTLP_HTTP_PORT)}


@pytest.fixture
def collector_for_the_readme(go_binaries, jaeger, portkey_standin, readme_ports):
    server = Collector(
        go_binaries["OTELCOL"],
        jaeger.otlp_grpc,
        f"{portkey_standin.endpoint}/v1/otel",
        PORTKEY_STANDIN_KEY,
        grpc_port=readme_ports[OTLP_GRPC_PORT],
        http_port=readme_ports[OTLP_HTTP_PORT],
    )
    yield server
    server.stop()


def test_the_quick_start_works_as_written(
    tmp_path, oss_gateway, jaeger, portkey_standin, readme_ports, monkeypatch, request
):
    guide = quick_start(README.read_text())
    newcomer = Newcomer(tmp_path)
    for name, body in guide.files.items():
        (newcomer.cwd / name).write_text(body)
    assert "app.py" in guide.files
    commands = [on_ports(command, readme_ports) for command in guide.commands]
    gateway_port = readme_ports[GATEWAY_PORT]

    gateway = None
    ran: list[str] = []
    try:
        for command in commands:
            if command.startswith("docker compose"):
                assert_compose_serves_the_readme_ports(command)
                request.getfixturevalue("collector_for_the_readme")
                ran.append("compose: collector-config.yaml (on free ports), Jaeger")
                continue
            if command.endswith(LONG_RUNNING):
                assert default_gateway_port(monkeypatch) == GATEWAY_PORT, "the README's gateway port"
                gateway = newcomer.start(command.removesuffix(LONG_RUNNING).strip())
                printed = wait_for_gateway(gateway)
                assert_gateway_output_as_shown(
                    re.sub(rf"127\.0\.0\.1:{gateway_port}\b", f"127.0.0.1:{GATEWAY_PORT}", printed), guide
                )
                assert exports_in(printed).items() <= exports_in("\n".join(commands)).items(), (
                    "the README's export line holds what the gateway prints"
                )
                ran.append(command)
                continue
            result = newcomer.run(command)
            ran.append(command)
            if command.startswith("pip install"):
                assert result.returncode == 0, result.stderr[-3000:]
                httpx = newcomer.run("python -c 'import httpx'")
                assert httpx.returncode != 0, "the quick start's install has no httpx: httpx2 only"
            elif command.startswith("otel-portkey doctor"):
                assert result.returncode == 0, result.stdout
                assert "All good" in result.stdout
                assert "httpx2" in result.stdout
                assert not re.search(r"would load: .*\bhttpx\b(?!2)", result.stdout), result.stdout
            elif "opentelemetry-instrument" in command:
                quiet(result)
                assert "echo: Hello, Jaeger and Portkey!" in result.stdout  # the model's answer
                if "console" in command:
                    assert_console_trace(result.stdout)
                else:
                    assert_trace_in_jaeger_and_portkey(jaeger, portkey_standin)
            else:
                assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
        assert any("opentelemetry-instrument" in c and "console" in c for c in ran)
        assert any(c.startswith("compose") for c in ran)
        assert gateway is not None, "the quick start starts a gateway"
    finally:
        if gateway is not None:
            stop_like_ctrl_c(gateway, gateway_port)


def wait_for_gateway(process: subprocess.Popen[str], timeout: float = 120) -> str:
    """What ``otel-portkey gateway`` printed once it is up (it prints when every server is)."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.strip().startswith("x-portkey-custom-host"):
            return "".join(lines)
    process.kill()
    raise AssertionError(f"the gateway did not come up: {''.join(lines)} {process.stderr.read()}")  # type: ignore[union-attr]


def assert_gateway_output_as_shown(printed: str, guide: QuickStart) -> None:
    """The README shows the gateway's real output (the model's port differs from run to run)."""

    def normal(text: str) -> str:
        return re.sub(r"127\.0\.0\.1:\d{5}", "127.0.0.1:PORT", text).strip()

    assert normal(printed) in [normal(block) for block in guide.outputs]


def stop_like_ctrl_c(process: subprocess.Popen[str], port: int) -> None:
    """Ctrl-C: the command stops every server it started, and nothing is left listening on ``port``."""
    below = descendants(process.pid)
    assert below, "the gateway runs node as a child process"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "stopped" in stderr
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in below) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in below if alive(pid)] == []
    assert not listening(port)


def assert_compose_serves_the_readme_ports(command: str) -> None:
    """What the fixtures stand in for: compose starts Jaeger and the Collector with
    ``collector-config.yaml``, publishing the ports the README's commands use."""
    compose_file = ROOT / shlex.split(command)[shlex.split(command).index("-f") + 1].removeprefix(
        "otel-portkey/"
    )
    services = yaml.safe_load(compose_file.read_text())["services"]
    assert {"jaeger", "collector"} <= set(shlex.split(command))
    assert (
        "../collector-config.yaml:/etc/otelcol/collector-config.yaml:ro" in services["collector"]["volumes"]
    )
    assert {f"127.0.0.1:{port}:{port}" for port in (OTLP_GRPC_PORT, OTLP_HTTP_PORT)} <= set(
        services["collector"]["ports"]
    )
    assert "127.0.0.1:16686:16686" in services["jaeger"]["ports"]


def assert_console_trace(stdout: str) -> None:
    spans = console_spans(stdout)
    posts = [s for s in spans if s["name"] == "POST"]
    assert len(posts) == 1, [s["name"] for s in spans]
    post = posts[0]
    trace_id = post["context"]["trace_id"].removeprefix("0x")
    attributes = post["attributes"]
    assert attributes["portkey.trace_id"] == trace_id
    assert attributes["portkey.provider"] == "openai"
    assert attributes["portkey.cache.status"] == "DISABLED"
    assert attributes["portkey.retry.attempt_count"] == 0
    assert post["resource"]["attributes"]["service.name"] == "my-app"


def assert_trace_in_jaeger_and_portkey(jaeger, portkey_standin) -> None:
    """Jaeger stores the app's trace, found by service name as the README says; the Portkey
    pipeline delivered the same spans."""
    traces = jaeger.search("my-app")
    assert len(traces) == 1, traces
    spans = jaeger.trace(traces[0], spans=1)
    posts = [s for s in spans if s["name"] == "POST"]
    assert len(posts) == 1, [s["name"] for s in spans]
    post = posts[0]
    assert attribute(post, "portkey.trace_id") == traces[0]
    assert attribute(post, "portkey.provider") == "openai"
    assert attribute(post, "portkey.cache.status") == "DISABLED"
    assert len(attribute(post, "portkey.span_id")) == 16
    post_id = span_id(post)
    delivered = portkey_standin.wait_for(lambda spans: any(s.span_id == post_id for s in spans))
    assert any(s.span_id == post_id for s in delivered), "the Collector's Portkey pipeline delivered it"


def test_the_testing_example_runs_as_written(oss_gateway, tmp_path):
    """The README's "Testing your own app" snippet, run as written: the peers it names are public."""
    text = README.read_text()
    section = text[
        text.index("## Testing your own app") : text.index("\n## ", text.index("## Testing your own app") + 5)
    ]
    (snippet,) = re.findall(r"^```python\n(.*?)^```", section, flags=re.DOTALL | re.MULTILINE)
    (tmp_path / "snippet.py").write_text(snippet)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PORTKEY_", "OPENAI_"))}
    result = subprocess.run(
        [sys.executable, "snippet.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "echo: hi" in result.stdout  # the scripted model's answer, through the real gateway
    from otel_portkey import testing

    for name in re.findall(r"`(\w+)`", section):
        if re.fullmatch(r"[A-Z][a-z]\w*|route_headers|install_gateway", name):
            assert name in testing.__all__, f"the README names otel_portkey.testing.{name}"
