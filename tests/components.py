"""Jaeger v2 and the OpenTelemetry Collector, built from source with Go (components/build.sh),
run on free loopback ports by the test fixtures."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from otel_portkey.testing import free_port

ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = ROOT / "components" / "build.sh"
JAEGER_CONFIG = ROOT / "components" / "jaeger-test-config.yaml"
COLLECTOR_CONFIG = ROOT / "collector-config.yaml"


class ComponentUnavailable(RuntimeError):
    pass


def built_components() -> dict[str, str]:
    """The pinned binaries ``make components`` built; returns {"JAEGER": path, "OTELCOL": path}.

    Nothing is built here: a cold Go build takes minutes and must not run inside a timed test.
    """
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--check"], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise ComponentUnavailable(result.stderr.strip()[-1500:] or "components/build.sh --check failed")
    paths = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    return {"JAEGER": paths["JAEGER"], "OTELCOL": paths["OTELCOL"]}


def _wait_http(url: str, process: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ComponentUnavailable(
                f"exited early: {process.stdout.read() if process.stdout else ''}"[-2000:]
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.1)
    raise ComponentUnavailable(f"{url} did not answer within {timeout} s")


class _Process:
    def __init__(self, command: list[str], env: dict[str, str], ready_url: str) -> None:
        self._log = tempfile.NamedTemporaryFile(mode="w+", prefix="otel-portkey-", suffix=".log")  # noqa: SIM115
        self.process = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT, text=True
        )
        try:
            _wait_http(ready_url, self.process)
        except Exception:
            self.stop()
            raise

    def log(self) -> str:
        """What the process printed so far."""
        return Path(self._log.name).read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()


class Jaeger(_Process):
    """Jaeger v2 all-in-one, in-memory storage, every port on 127.0.0.1."""

    def __init__(self, binary: str) -> None:
        self.ports = {
            name: free_port() for name in ("OTLP_GRPC", "OTLP_HTTP", "QUERY_HTTP", "QUERY_GRPC", "HEALTH")
        }
        env = {f"JAEGER_{name}_PORT": str(port) for name, port in self.ports.items()}
        super().__init__(
            [binary, f"--config={JAEGER_CONFIG}"], env, f"http://127.0.0.1:{self.ports['HEALTH']}/status"
        )

    @property
    def otlp_grpc(self) -> str:
        return f"127.0.0.1:{self.ports['OTLP_GRPC']}"

    @property
    def otlp_http(self) -> str:
        return f"http://127.0.0.1:{self.ports['OTLP_HTTP']}"

    def search(self, service: str, timeout: float = 30) -> list[str]:
        """The ids of the traces of ``service`` from the last hour (``GET /api/v3/traces``),
        waiting up to ``timeout`` for the first one to be stored."""
        now = time.time()
        window = {
            "query.service_name": service,
            "query.num_traces": "20",
            "query.start_time_min": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600)),
            "query.start_time_max": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600)),
        }
        url = f"http://127.0.0.1:{self.ports['QUERY_HTTP']}/api/v3/traces?{urllib.parse.urlencode(window)}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    body = json.load(response)
                ids = {
                    trace_id_hex(span["traceId"])
                    for resource_spans in body["result"]["resourceSpans"]
                    for scope_spans in resource_spans.get("scopeSpans", [])
                    for span in scope_spans.get("spans", [])
                }
            except urllib.error.HTTPError as error:
                if error.code != 404:
                    raise
                ids = set()
            if ids or time.monotonic() > deadline:
                return sorted(ids)
            time.sleep(0.3)

    def trace(self, trace_id: str, spans: int = 1, timeout: float = 30) -> list[dict[str, Any]]:
        """The spans of one trace from ``GET /api/v3/traces/{id}`` (OTLP-JSON).

        Waits for the whole trace: at least ``spans`` spans, and the same count on two reads in a
        row (batches from two exporters can land a moment apart). Past ``timeout``, whatever is
        stored is returned and the caller's assertions say what is missing.
        """
        url = f"http://127.0.0.1:{self.ports['QUERY_HTTP']}/api/v3/traces/{trace_id}"
        deadline = time.monotonic() + timeout
        previous: list[dict[str, Any]] | None = None
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    body = json.load(response)
                stored = [
                    span
                    for resource_spans in body["result"]["resourceSpans"]
                    for scope_spans in resource_spans.get("scopeSpans", [])
                    for span in scope_spans.get("spans", [])  # a span stored twice leaves an empty entry
                ]
            except urllib.error.HTTPError as error:
                if error.code != 404:
                    raise
                stored = []
            complete = len(stored) >= spans and previous is not None and len(previous) == len(stored)
            if complete or time.monotonic() > deadline:
                return stored
            previous = stored
            time.sleep(0.3)


class Collector(_Process):
    """The Collector distribution running the shipped collector-config.yaml on loopback ports."""

    def __init__(
        self,
        binary: str,
        jaeger_otlp_grpc: str,
        portkey_endpoint: str,
        api_key: str,
        grpc_port: int | None = None,
        http_port: int | None = None,
    ) -> None:
        self.grpc_port, self.http_port = grpc_port or free_port(), http_port or free_port()
        self.health_port = free_port()
        env = {
            "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{self.grpc_port}",
            "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{self.http_port}",
            "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{self.health_port}",
            "OTELCOL_METRICS_LEVEL": "none",
            "JAEGER_OTLP_GRPC_ENDPOINT": jaeger_otlp_grpc,
            "PORTKEY_OTLP_ENDPOINT": portkey_endpoint,
            "PORTKEY_API_KEY": api_key,
        }
        super().__init__(
            [binary, f"--config={COLLECTOR_CONFIG}"], env, f"http://127.0.0.1:{self.health_port}/"
        )

    @property
    def otlp_http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def trace_id_hex(value: str) -> str:
    """An OTLP-JSON trace id (hex, or base64 in some encoders) as 32 lowercase hex characters."""
    if len(value) == 32 and all(c in "0123456789abcdefABCDEF" for c in value):
        return value.lower()
    return base64.b64decode(value, validate=True).hex()


def span_id(span: dict[str, Any], key: str = "spanId") -> str:
    """A span's (or, with ``key="parentSpanId"``, its parent's) id as 16 lowercase hex characters.

    OTLP-JSON writes ids as hex; some encoders use base64. Both are accepted, anything else raises.
    """
    value = span.get(key) or ""
    if len(value) == 16 and all(c in "0123456789abcdefABCDEF" for c in value):
        return value.lower()
    return base64.b64decode(value, validate=True).hex() if value else ""


def attribute(span: dict[str, Any], key: str) -> Any:
    """An attribute of an OTLP-JSON span, as its Python value."""
    for item in span.get("attributes", []):
        if item["key"] == key:
            value = item["value"]
            for kind in ("stringValue", "intValue", "boolValue", "doubleValue"):
                if kind in value:
                    return int(value[kind]) if kind == "intValue" else value[kind]
    return None
