"""The README's recipe for "Any OSS gateway you run" (issue 26, item 4), run as written: its commands
are taken from the README's block, not retyped, and run in an empty folder with npm's usual cache,
so this test fails the day the README's recipe stops working.

Three things are arranged around the commands, each checked to apply to exactly what the README
says: the OTLP endpoint's port is a test receiver's (``localhost:4318`` in the README), the gateway
gets a free port (``--port=N`` appended, as the gateway takes it) and listens on loopback only
(``bind_loopback.cjs`` preloaded with ``--require``, as ``OssGateway`` starts node). Then one call
goes through the gateway to the scripted model, with the ids the bridge sends; the receiver must
hold the gateway's SERVER span, a child of the ``traceparent`` sent, carrying the
``x-portkey-span-id`` sent as ``portkey.span_id``, and the upstream attempt under it.

Slow when npm's cache is cold: it downloads the gateway and OpenTelemetry for Node (the registry is
reachable in CI).
"""

from __future__ import annotations

import json
import os
import queue
import re
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_portkey._peers.oss_gateway import GATEWAY_VERSION, NODE_OTEL_PACKAGES, NODE_SERVER_PIN
from otel_portkey.testing import OtlpReceiver, ScriptedModelServer, free_port, route_headers

from components import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

README = ROOT / "README.md"
SECTION = "## Inside the OSS gateway"
RECIPE = "**Any OSS gateway you run**"
README_OTLP = re.compile(r"\b(localhost|127\.0\.0\.1):4318\b")
BIND_LOOPBACK = ROOT / "src" / "otel_portkey" / "_peers" / "bind_loopback.cjs"
READY = "Ready for connections"
SERVER_KIND, CLIENT_KIND = 2, 3


def recipe_commands(text: str) -> list[str]:
    """The commands of the first ``bash`` block after the recipe's heading, continuation lines joined."""
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end != -1 else len(text)]
    after = section[section.index(RECIPE) :]
    block = re.search(r"^```bash\n(.*?)^```", after, flags=re.DOTALL | re.MULTILINE)
    assert block is not None, "the recipe has a bash block"
    return [line.strip() for line in block[1].replace("\\\n", " ").splitlines() if line.strip()]


def on_test_ports(command: str, otlp_port: int, gateway_port: int) -> str:
    """The README's gateway command on the test's ports, bound to loopback; everything else as written."""
    assert len(README_OTLP.findall(command)) == 1, f"the README's OTLP endpoint, once: {command}"
    command = README_OTLP.sub(lambda match: f"{match[1]}:{otlp_port}", command)
    words = shlex.split(command)
    assert "node" in words, command
    assert words[-1].endswith("start-server.js"), f"the command ends with the gateway's script: {command}"
    assert command.count("node --import ") == 1, command
    command = command.replace("node --import ", f"node --require {shlex.quote(str(BIND_LOOPBACK))} --import ")
    return f"{command} --port={gateway_port}"


def environment() -> dict[str, str]:
    """The test's shell: ``otel-portkey`` on PATH (this virtualenv's), no ``OTEL_*`` of the test's
    own (only what the README's command sets), npm's cache where it always is."""
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", "")])
    return env


class Started:
    """The README's long-running command in its own session; its output read as it comes."""

    def __init__(self, command: str, cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # its own process group: stopped whole, by its id
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._pump, daemon=True, name="recipe-gateway-output").start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.output.append(line)
            if text in line:
                return
        raise AssertionError(f"the gateway did not print {text!r}: {''.join(self.output)[-3000:]}")

    def stop(self) -> int:
        """SIGTERM to its process group (the preload sends the spans it holds, then node exits)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(timeout=10)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as server:
        yield server


@pytest.fixture
def upstream() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer() as server:
        yield server


def installed_version(folder: Path, package: str) -> str:
    return json.loads((folder / "node_modules" / package / "package.json").read_text())["version"]


@pytest.mark.timeout(900)  # npm's cache cold: the install downloads the gateway and OpenTelemetry for Node
def test_the_readmes_npm_recipe_traces_a_gateway(tmp_path, receiver, upstream):
    commands = recipe_commands(README.read_text())
    *setup, start = commands
    assert setup, "the recipe installs before it starts the gateway"
    env = environment()
    for command in setup:
        result = subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
    # What the recipe installed is what `otel-portkey gateway` pins (the streaming fix included).
    assert installed_version(tmp_path, "@portkey-ai/gateway") == GATEWAY_VERSION
    assert installed_version(tmp_path, "@hono/node-server") == NODE_SERVER_PIN
    for package, version in NODE_OTEL_PACKAGES.items():
        assert installed_version(tmp_path, package) == version, package

    gateway_port = free_port()
    gateway = Started(on_test_ports(start, receiver.port, gateway_port), tmp_path, env)
    try:
        gateway.wait_for(READY)
        trace_id, parent, node = secrets.token_hex(16), secrets.token_hex(8), secrets.token_hex(8)
        request = urllib.request.Request(
            f"http://127.0.0.1:{gateway_port}/v1/chat/completions",
            data=json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).encode(),
            headers={
                "content-type": "application/json",
                "authorization": "Bearer sk-recipe-test",
                "traceparent": f"00-{trace_id}-{parent}-01",
                "x-portkey-trace-id": trace_id,
                "x-portkey-parent-span-id": parent,
                "x-portkey-span-id": node,
                "x-portkey-span-name": "chat gpt-4o",
                **route_headers(upstream.base_url),
            },
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 200
            assert json.load(response)["choices"][0]["message"]["content"] == "echo: hi"
    finally:
        code = gateway.stop()
    assert code == 0, "".join(gateway.output)[-3000:]
    assert len(upstream.received) == 1, "the call reached the model through the gateway"

    spans = receiver.spans  # complete: the gateway sent what it held before it exited
    (server,) = [s for s in spans if s.kind == SERVER_KIND]
    assert server.resource["service.name"] == "portkey-gateway"  # the README's OTEL_SERVICE_NAME
    assert (server.trace_id, server.parent_span_id) == (trace_id, parent), "it continued the traceparent"
    assert server.attributes["portkey.span_id"] == node, "the x-portkey-span-id sent"
    assert server.attributes["portkey.trace_id"] == trace_id
    assert server.attributes["http.response.status_code"] == 200
    (attempt,) = [s for s in spans if s.kind == CLIENT_KIND]
    assert attempt.parent_span_id == server.span_id
    assert attempt.attributes["http.response.status_code"] == 200
    assert attempt.attributes["server.port"] == upstream.port
