"""The README's quick start, run as a newcomer runs it: its own commands, in its order, in a fresh
virtualenv with an empty HOME, against the real OSS gateway, Jaeger, Collector
(``collector-config.yaml``) and Prometheus, on the README's own ports. The test fails the day a
command in the README stops working.

The commands are taken from the README, not retyped. Around them: the download caches (pip, npm, the
pinned gateway) and the machine's pip settings are the machine's own, so an empty HOME does not mean
downloading everything again, and pip installs the versions ``constraints.txt`` pins. Three lines
are played, as the README says: the two ``curl`` downloads of Jaeger and the Collector (the test
machines reach no GitHub) by the binaries ``make components`` builds from the same releases, put
where the downloads would put them; and the ``docker compose`` line (no Docker engine) is checked
against the compose file instead of run.

The README's ports are fixed (8787, 4317, ...): the test fails at once, naming the port, when one of
them is taken on the machine that runs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from otel_portkey.testing import cache_root

from components import ROOT, Jaeger, attribute, span_id

pytestmark = [pytest.mark.integration, pytest.mark.slow]

README = ROOT / "README.md"
BUILD_SCRIPT = ROOT / "components" / "build.sh"
SECTION = "## Quick start"
LONG_RUNNING = "# runs until Ctrl-C"
GATEWAY_PORT = 8787
# Every port the quick start's servers take, as the README has them: the gateway; the Collector's
# OTLP receivers, health check, own metrics and Prometheus exporter; Jaeger's query API (UI), query
# gRPC, OTLP receivers and health check; Prometheus.
README_PORTS = (8787, 4317, 4318, 13133, 8888, 8889, 16686, 16685, 14317, 14318, 14133, 9090)
# When a long-running line's server is ready (what it answers once it is), by the program it runs.
READY = {
    "jaeger": "http://127.0.0.1:14133/status",
    "otelcol-contrib": "http://127.0.0.1:13133/",
    "prometheus": "http://127.0.0.1:9090/-/ready",
}


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

    def start(self, command: str, log: Path | None = None) -> subprocess.Popen[str]:
        """Start a long-running README line (it runs in its own terminal, a process group of its own):
        its leading ``NAME=value`` words stay its environment, and the program replaces the shell.
        Its output goes to pipes, or with ``log`` to that file (a server's log, read by nobody while
        it runs, must not fill a pipe and stall it)."""
        assignments, program = re.fullmatch(r"((?:\w+=\S*\s+)*)(.*)", command, flags=re.DOTALL).groups()  # type: ignore[union-attr]
        output: Any = subprocess.PIPE if log is None else log.open("w")
        try:
            return subprocess.Popen(
                ["bash", "-c", self.script(f"{assignments}exec {program}")],
                cwd=self.cwd,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT if log is not None else subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        finally:
            if log is not None:
                output.close()


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


def program_of(command: str) -> str:
    """The program a command line runs (past its leading ``NAME=value`` words)."""
    return next(word for word in shlex.split(command, comments=True) if not re.fullmatch(r"\w+=.*", word))


def test_the_quick_start_works_as_written(tmp_path, go_binaries, prometheus_binary, request):
    busy = [port for port in README_PORTS if listening(port)]
    assert not busy, f"the quick start runs on the README's ports, and these are taken here: {busy}"
    guide = quick_start(README.read_text())
    newcomer = Newcomer(tmp_path)
    for name, body in guide.files.items():
        (newcomer.cwd / name).write_text(body)
    assert "app.py" in guide.files

    servers: list[tuple[str, subprocess.Popen[str]]] = []  # (program, process), in start order
    ran: list[str] = []
    try:
        for command in guide.commands:
            if command.startswith("curl "):
                play_download(command, newcomer, go_binaries)
                ran.append(f"played: {command}")
                continue
            if command.startswith("docker compose"):
                assert_compose_serves_the_readme_ports(command)
                ran.append(f"checked: {command}")
                continue
            if command.endswith(LONG_RUNNING):
                command = command.removesuffix(LONG_RUNNING).strip()
                program = program_of(command)
                log = None if program == "otel-portkey" else tmp_path / f"{program}.log"
                started = time.monotonic()
                server = newcomer.start(command, log)
                servers.append((program, server))
                if program == "otel-portkey":
                    printed = wait_for_gateway(server)
                    assert_gateway_output_as_shown(printed, guide)
                    assert exports_in(printed).items() <= exports_in("\n".join(guide.commands)).items(), (
                        "the README's export line holds what the gateway prints"
                    )
                else:
                    wait_ready(READY[program], server, log)  # type: ignore[arg-type]
                print(f"$ {command}  # {LONG_RUNNING}, ready in {time.monotonic() - started:.1f} s")
                ran.append(command)
                continue
            started = time.monotonic()
            result = newcomer.run(command)
            ran.append(command)
            # what each step printed and took, for `pytest -s` (a closing note's real run)
            print(f"$ {command}  # {time.monotonic() - started:.1f} s\n{result.stdout[-4000:]}")
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
            elif command.startswith("otel-portkey trace"):
                assert result.returncode == 0, result.stderr
                assert_trace_shown_as_jaeger_stored_it(result.stdout, go_binaries)
            elif command.startswith("promtool"):
                assert result.returncode == 0, result.stderr
                assert_one_call_in_prometheus(result.stdout)
            else:
                assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
        programs = [program for program, _ in servers]
        assert programs == ["otel-portkey", "jaeger", "otelcol-contrib", "prometheus"], programs
        assert any(c.startswith("otel-portkey trace") for c in ran)
        assert any(c.startswith("promtool") for c in ran)
        assert sum(c.startswith("played: curl") for c in ran) == 2
    finally:
        stopped_badly = stop_all(servers, tmp_path)
    assert not stopped_badly, stopped_badly
    left = [port for port in README_PORTS if listening(port)]
    assert not left, f"still listening after Ctrl-C: {left}"


def play_download(command: str, newcomer: Newcomer, go_binaries: dict[str, str]) -> None:
    """A README download of a release binary, played by the binary ``make components`` built from the
    same release: put where the download would put it, under the name it would have."""
    url = re.search(r"https://\S+", command)[0]  # type: ignore[index]
    versions = {
        name: re.search(rf"^{name}_VERSION=(\S+)", BUILD_SCRIPT.read_text(), re.M)[1]  # type: ignore[index]
        for name in ("JAEGER", "OTELCOL")
    }
    if "jaegertracing/jaeger" in url:
        # Jaeger 2.x archives are released under the paired 1.x tag (the Go module's version)
        release = re.search(r"^JAEGER_MODULE_VERSION=(\S+)", BUILD_SCRIPT.read_text(), re.M)[1]  # type: ignore[index]
        assert f"/{release}/jaeger-{versions['JAEGER']}-linux-amd64.tar.gz" in url, url
        built, name = go_binaries["JAEGER"], "jaeger"
    else:
        assert "opentelemetry-collector-releases" in url, url
        assert f"/v{versions['OTELCOL']}/otelcol-contrib_{versions['OTELCOL']}_linux_amd64.tar.gz" in url, url
        built, name = go_binaries["OTELCOL"], "otelcol-contrib"
    assert command.split()[-1].endswith(name), f"the download extracts {name}: {command}"
    assert '-C "$VIRTUAL_ENV/bin"' in command, command
    venv = newcomer.run('printf %s "$VIRTUAL_ENV"').stdout
    assert venv, "the download runs in the virtualenv"
    (Path(venv) / "bin" / name).symlink_to(built)


def wait_ready(url: str, process: subprocess.Popen[str], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"exited {process.returncode}: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer in {timeout} s: {log.read_text()[-3000:]}")


def stop_server_like_ctrl_c(process: subprocess.Popen[str], log: Path) -> None:
    """Ctrl-C: the server exits cleanly, nothing it started left running."""
    below = descendants(process.pid)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)
    assert process.returncode == 0, log.read_text()[-3000:]
    assert [pid for pid in below if alive(pid)] == []


def stop_all(servers: list[tuple[str, subprocess.Popen[str]]], logs: Path) -> list[str]:
    """Stop the README's servers as its reader would, last started first (Ctrl-C in each terminal),
    and say what did not stop cleanly. Whatever happens, nothing of them is left running: each
    one's process group is then killed, so a failed run leaves no server on the README's ports."""
    failures = []
    for program, server in reversed(servers):
        group = descendants(server.pid) | {server.pid}
        try:
            if program == "otel-portkey":
                stop_like_ctrl_c(server, GATEWAY_PORT)
            else:
                stop_server_like_ctrl_c(server, logs / f"{program}.log")
        except (AssertionError, subprocess.TimeoutExpired) as error:
            failures.append(f"{program}: {error}")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            for pid in group:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=10)
    return failures


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
    """What the compose line would do instead of the downloads and the two terminals: start Jaeger
    and the Collector with ``collector-config.yaml``, publishing the ports the README's commands use
    (the Collector's OTLP receivers, Jaeger's UI)."""
    compose_file = ROOT / shlex.split(command)[shlex.split(command).index("-f") + 1].removeprefix(
        "otel-portkey/"
    )
    services = yaml.safe_load(compose_file.read_text())["services"]
    assert {"jaeger", "collector"} <= set(shlex.split(command))
    assert (
        "../collector-config.yaml:/etc/otelcol/collector-config.yaml:ro" in services["collector"]["volumes"]
    )
    assert {f"127.0.0.1:{port}:{port}" for port in (4317, 4318)} <= set(services["collector"]["ports"])
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


def readme_jaeger(go_binaries: dict[str, str]) -> Jaeger:
    """The README's Jaeger (query API on localhost:16686), read through the tests' own client."""
    jaeger = Jaeger(go_binaries["JAEGER"], start=False)
    jaeger.ports["QUERY_HTTP"] = 16686
    return jaeger


def assert_trace_shown_as_jaeger_stored_it(printed: str, go_binaries: dict[str, str]) -> None:
    """``otel-portkey trace --service my-app`` prints the trace Jaeger itself holds: its id, its
    ``POST`` span with the trace id Portkey echoed and the id of the gateway's node."""
    jaeger = readme_jaeger(go_binaries)
    traces = jaeger.search("my-app")
    assert len(traces) == 1, traces  # the console run of step 4 went to the console only
    spans = jaeger.trace(traces[0], spans=1)
    (post,) = [s for s in spans if s["name"] == "POST"]
    assert attribute(post, "portkey.trace_id") == traces[0]
    assert attribute(post, "portkey.provider") == "openai"
    assert traces[0] in printed, printed
    assert span_id(post) in printed, printed
    assert attribute(post, "portkey.span_id") in printed, printed


def assert_one_call_in_prometheus(printed: str) -> None:
    """promtool's answer: the bridge's one call of step 5, by the app's service name."""
    lines = [line for line in printed.splitlines() if line.strip()]
    assert len(lines) == 1, printed
    assert re.fullmatch(r'\{job="my-app", portkey_provider="openai"\} => 1 @\[[\d.]+\]', lines[0]), printed


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
