"""``otel-portkey gateway``: the pinned OSS gateway and the scripted model on loopback, reached by an
unchanged OpenAI app, and nothing left listening after Ctrl-C, SIGTERM or SIGHUP."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from openai import OpenAI

from otel_portkey.testing import free_port
from test_readme import alive, descendants, exports_in, listening, wait_for_gateway

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).with_name("otel-portkey"))


def start(port, env=None):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PORTKEY_", "OPENAI_"))}
    return subprocess.Popen(
        [CLI, "gateway", "--port", str(port)],
        env={**clean, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


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
        process.send_signal(stop_signal)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert stderr.strip().endswith("otel-portkey gateway: stopped (gateway, hop and model server)")
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in below) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in below if alive(pid)] == []
    for listened in (port, model_port, *gateway_ports):
        assert not listening(listened), f"port {listened} still listening"


def cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


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
