"""The scale-out tier of examples/scale-out/ on loopback: a load balancer and tail samplers, each the
built Collector running the shipped config with its own free ports and storage directory; the seed
agent's replicas (tests/scale_out_app.py) as child processes; and what the components answer: each
Collector's own metrics (Prometheus text) and debug log, and Jaeger's stored traces.

Used by tests/test_scale_out.py and benchmarks/bench_pipeline.py.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otel_portkey.testing import free_port

from components import ROOT, Jaeger, Metrics, _Process, collector_metrics

SCALE_OUT = ROOT / "examples" / "scale-out"
LOADBALANCER_CONFIG = SCALE_OUT / "loadbalancer.yaml"
SAMPLER_CONFIG = SCALE_OUT / "sampler.yaml"
APP_SCRIPT = Path(__file__).resolve().parent / "scale_out_app.py"

# Added to a sampler's config for the proofs: a debug exporter beside Jaeger and Portkey that logs
# every span the sampler kept (trace id, span id), so that each sampler says itself what it kept.
DEBUG_OVERLAY = (
    "yaml:exporters::debug::verbosity: detailed",
    "yaml:service::pipelines::traces::exporters: [otlp_grpc/jaeger, otlp_http/portkey, debug]",
)


def new_token() -> str:
    """A fresh bearer token for the tier's receivers (OTELCOL_BEARER_TOKEN)."""
    return secrets.token_urlsafe(24)


def otlp_headers(token: str) -> str:
    """OTEL_EXPORTER_OTLP_HEADERS for an app that exports to the tier (values are URL-encoded)."""
    return f"Authorization=Bearer%20{token}"


class Otelcol(_Process):
    """The built Collector running ``config`` (plus ``overlays``, further ``--config`` sources) with
    ``env``; its receiver, health and own-metrics ports are free 127.0.0.1 ports. ``kill()`` then
    ``restart()`` runs it anew on the same ports (and so the same storage directory).
    ``auth_headers`` is what a client sends the tier's receivers (from ``env``'s OTELCOL_BEARER_TOKEN)."""

    def __init__(
        self,
        binary: str,
        config: Path,
        env: Mapping[str, str],
        overlays: tuple[str, ...] = (),
        serve_own_metrics: bool = False,
    ) -> None:
        self.ports = {name: free_port() for name in ("GRPC", "HTTP", "HEALTH", "TELEMETRY")}
        if serve_own_metrics:  # for a config that leaves them on the default reader (localhost:8888)
            reader = (
                f"{{pull: {{exporter: {{prometheus: {{host: 127.0.0.1, port: {self.ports['TELEMETRY']}, "
                "without_scope_info: true, without_units: true, without_type_suffix: true}}}}"
            )
            overlays = (*overlays, f"yaml:service::telemetry::metrics::readers: [{reader}]")
        self.env = {
            **env,
            "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{self.ports['GRPC']}",
            "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{self.ports['HTTP']}",
            "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{self.ports['HEALTH']}",
            "OTELCOL_TELEMETRY_HOST": "127.0.0.1",
            "OTELCOL_TELEMETRY_PORT": str(self.ports["TELEMETRY"]),
        }
        command = [binary, f"--config={config}", *(f"--config={overlay}" for overlay in overlays)]
        super().__init__(command, self.env, f"http://127.0.0.1:{self.ports['HEALTH']}/")

    @property
    def otlp_grpc(self) -> str:
        return f"127.0.0.1:{self.ports['GRPC']}"

    @property
    def otlp_http(self) -> str:
        return f"http://127.0.0.1:{self.ports['HTTP']}"

    @property
    def auth_headers(self) -> dict[str, str]:
        token = self.env.get("OTELCOL_BEARER_TOKEN")
        return {"authorization": f"Bearer {token}"} if token else {}

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def metrics(self) -> Metrics:
        """The Collector's own metrics, as it serves them now."""
        return collector_metrics(self.ports["TELEMETRY"])

    def restart(self) -> int:
        """Start it again (after ``kill()``); returns where the new process's output begins in ``log()``."""
        offset = len(self.log())
        self.start()
        return offset


def kept_spans_logged(log: str) -> dict[str, set[str]]:
    """From a debug exporter's detailed output: trace id -> the ids of the spans it printed."""
    kept: dict[str, set[str]] = {}
    trace_id = None
    for line in log.splitlines():
        if "Trace ID" in line and ":" in line:
            trace_id = line.split(":", 1)[1].strip().lower()
        elif trace_id and re.match(r"^\s*ID\s*:", line):
            kept.setdefault(trace_id, set()).add(line.split(":", 1)[1].strip().lower())
    return kept


def collector_env(
    jaeger_otlp_grpc: str,
    portkey_endpoint: str,
    api_key: str,
    storage_dir: Path,
    token: str | None = None,
) -> dict[str, str]:
    """collector-config.yaml's variables for one Collector of the tier (its ports are set by Otelcol),
    and the tier's bearer token (``token``, else a fresh one)."""
    return {
        "OTELCOL_BEARER_TOKEN": token or new_token(),
        "OTELCOL_METRICS_LEVEL": "detailed",
        "OTELCOL_STORAGE_DIR": str(storage_dir),
        "OTELCOL_PROMETHEUS_ENDPOINT": f"127.0.0.1:{free_port()}",
        "JAEGER_OTLP_GRPC_ENDPOINT": jaeger_otlp_grpc,
        "PORTKEY_OTLP_ENDPOINT": portkey_endpoint,
        "PORTKEY_API_KEY": api_key,
    }


class Tier:
    """One load balancer in front of ``samplers`` tail samplers, on loopback, with storage under
    ``storage``. ``common_env`` is added to every Collector's environment, ``sampler_env`` to the
    samplers' (e.g. OTELCOL_KEEP_PERCENT), and ``sampler_overlays`` to their config. Every Collector
    requires ``token`` (a fresh one unless given) from its clients; the load balancer sends it on."""

    def __init__(
        self,
        binary: str,
        storage: Path,
        jaeger_otlp_grpc: str,
        portkey_endpoint: str,
        api_key: str,
        samplers: int = 2,
        sampler_env: Mapping[str, str] | None = None,
        sampler_overlays: tuple[str, ...] = DEBUG_OVERLAY,
        common_env: Mapping[str, str] | None = None,
        token: str | None = None,
    ) -> None:
        self.token = token or new_token()
        self.samplers: list[Otelcol] = []
        self.restarted_at: dict[int, int] = {}  # sampler -> where its restarted process's output begins
        self.loadbalancer: Otelcol | None = None
        try:
            for number in range(1, samplers + 1):
                env = collector_env(
                    jaeger_otlp_grpc, portkey_endpoint, api_key, storage / f"sampler-{number}", self.token
                )
                env.update(common_env or {})
                env.update(sampler_env or {})
                self.samplers.append(Otelcol(binary, SAMPLER_CONFIG, env, overlays=sampler_overlays))
            env = collector_env(
                jaeger_otlp_grpc, portkey_endpoint, api_key, storage / "loadbalancer", self.token
            )
            env.update(common_env or {})
            env["OTELCOL_SAMPLERS"] = "[" + ", ".join(s.otlp_grpc for s in self.samplers) + "]"
            self.loadbalancer = Otelcol(binary, LOADBALANCER_CONFIG, env)
        except BaseException:
            self.stop()
            raise

    @property
    def entry(self) -> Otelcol:
        assert self.loadbalancer is not None
        return self.loadbalancer

    def kill_sampler(self, index: int) -> None:
        """SIGKILL, as a crash or an OOM kill would."""
        self.samplers[index].kill()

    def restart_sampler(self, index: int) -> None:
        """The same config, ports and storage directory, in a new process."""
        self.restarted_at[index] = self.samplers[index].restart()

    def sampler_log(self, index: int, since_restart: bool = False) -> str:
        """What sampler ``index`` printed (across restarts, or only since its last restart)."""
        return self.samplers[index].log()[self.restarted_at.get(index, 0) if since_restart else 0 :]

    def stop(self) -> None:
        if self.loadbalancer is not None:
            self.loadbalancer.stop()
        for sampler in self.samplers:
            sampler.stop()


@dataclass(frozen=True)
class SentTrace:
    """One agent run as its app process reported it."""

    index: int
    kind: str
    trace_id: str
    span_ids: frozenset[str]
    answered: bool


class Apps:
    """Replicas of the seed agent (tests/scale_out_app.py), one child process per entry of ``kinds``
    (the kinds of that replica's runs), exporting to ``otlp`` with ``token`` (the tier's bearer token,
    sent through OTEL_EXPORTER_OTLP_HEADERS); their reports are collected as they come."""

    def __init__(
        self,
        otlp: str,
        gateway: str,
        kinds: list[list[str]],
        service: str,
        flush_each_run: bool = False,
        pause: float = 0.0,
        token: str | None = None,
    ) -> None:
        self.sent: list[SentTrace] = []
        self._lock = threading.Lock()
        self._processes: list[subprocess.Popen[str]] = []
        self._errors: list[str] = []
        self._readers: list[threading.Thread] = []
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PORTKEY_"))}
        if token:
            env["OTEL_EXPORTER_OTLP_HEADERS"] = otlp_headers(token)
        first = 0
        for number, runs in enumerate(kinds, 1):
            command = [
                sys.executable,
                str(APP_SCRIPT),
                f"--otlp={otlp}",
                f"--gateway={gateway}",
                f"--service={service}",
                f"--instance=replica-{number}",
                f"--first-index={first}",
                f"--kinds={','.join(runs)}",
                f"--pause={pause}",
            ]
            if flush_each_run:
                command.append("--flush-each-run")
            first += len(runs)
            process = subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
            )
            self._processes.append(process)
            reader = threading.Thread(target=self._read, args=(process,), daemon=True)
            reader.start()
            self._readers.append(reader)

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            report = json.loads(line)
            sent = SentTrace(
                report["index"],
                report["kind"],
                report["trace_id"],
                frozenset(report["span_ids"]),
                report["expected_answer"],
            )
            with self._lock:
                self.sent.append(sent)

    def done(self) -> int:
        with self._lock:
            return len(self.sent)

    def wait_for(self, runs: int, timeout: float) -> None:
        """Until ``runs`` runs have been reported (or every process ended, or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while self.done() < runs and time.monotonic() < deadline:
            if all(p.poll() is not None for p in self._processes):
                self._join_readers(deadline)  # every process ended: its last lines are being read
                break
            time.sleep(0.05)

    def _join_readers(self, deadline: float) -> None:
        """Until every reader thread has read its process's output to the end (or ``deadline``)."""
        for reader in self._readers:
            reader.join(timeout=max(0.0, deadline - time.monotonic()))

    def wait(self, timeout: float) -> list[str]:
        """Wait for every process to end; returns the stderr of those that failed."""
        failures = []
        for process in self._processes:
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.returncode != 0:
                assert process.stderr is not None
                failures.append(process.stderr.read()[-3000:])
        self._join_readers(time.monotonic() + 10)  # the reports of the last runs are in ``sent``
        return failures

    def stop(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.kill()
                process.wait()
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()


def jaeger_trace_ids(jaeger: Jaeger, service: str, limit: int = 2000) -> set[str]:
    """The ids of every trace of ``service`` Jaeger holds from the last hour (up to ``limit``), now."""
    return set(jaeger.search(service, timeout=0, limit=limit))


def jaeger_span_ids(jaeger: Jaeger, trace_id: str) -> list[str]:
    """The span ids Jaeger returns for one trace now ([] when it has none), one entry per stored
    span (a span stored twice appears twice)."""
    from components import span_id

    return [span_id(span) for span in jaeger.trace(trace_id, timeout=0) if span.get("spanId")]


def wait_until(predicate: Any, timeout: float, interval: float = 0.5) -> bool:
    """Poll ``predicate()`` until true or ``timeout`` seconds passed; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process so far (/proc/<pid>/stat utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def directory_bytes(path: Path) -> int:
    """Bytes the files under ``path`` occupy on disk (allocated blocks, as ``du`` counts them)."""
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())


def iter_chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
