"""Jaeger v2 and the OpenTelemetry Collector, built from source with Go (components/build.sh),
run on free loopback ports by the test fixtures."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otel_portkey.testing import free_port

ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = ROOT / "components" / "build.sh"
JAEGER_CONFIG = ROOT / "components" / "jaeger-test-config.yaml"
JAEGER_BADGER_CONFIG = ROOT / "examples" / "jaeger-config.yaml"
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
    """A component as a child process, ready once ``ready_url`` answers 200.

    ``start=False`` only prepares it (its ports are chosen, nothing listens): ``start()`` later.
    ``kill()`` (SIGKILL) or ``terminate()`` (SIGTERM), then ``start()`` again, runs it anew with the
    same command, environment and ports; its output goes on in the same ``log()``. ``stop()`` ends it
    for good.
    """

    process: subprocess.Popen[str] | None

    def __init__(self, command: list[str], env: dict[str, str], ready_url: str, start: bool = True) -> None:
        self._command, self._env, self._ready_url = command, {**os.environ, **env}, ready_url
        self._log = tempfile.NamedTemporaryFile(mode="a+", prefix="otel-portkey-", suffix=".log")  # noqa: SIM115
        self.process = None
        if start:
            self.start()

    def start(self) -> None:
        """Start the process (again) and wait until it is ready."""
        if self.running:
            raise RuntimeError(f"{self._command[0]} is already running")
        self.process = subprocess.Popen(
            self._command, env=self._env, stdout=self._log, stderr=subprocess.STDOUT, text=True
        )
        try:
            _wait_http(self._ready_url, self.process)
        except ComponentUnavailable as error:
            output = self.log()[-3000:]
            self.stop()
            raise ComponentUnavailable(f"{error}\n{output}") from error
        except Exception:
            self.stop()
            raise

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        """What the process printed so far."""
        return Path(self._log.name).read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown, nothing flushed (a crash, an OOM kill)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=15)

    def terminate(self) -> None:
        """SIGTERM and wait for a clean shutdown (SIGKILL after 15 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def stop(self) -> None:
        self.terminate()
        self._log.close()


class Jaeger(_Process):
    """Jaeger v2 all-in-one, every port on 127.0.0.1: in-memory storage
    (components/jaeger-test-config.yaml), or with ``badger_dir`` the examples' durable config
    (examples/jaeger-config.yaml, Badger in that directory), which a restart on the same directory
    reads back."""

    def __init__(self, binary: str, badger_dir: Path | None = None, start: bool = True) -> None:
        self.ports = {
            name: free_port() for name in ("OTLP_GRPC", "OTLP_HTTP", "QUERY_HTTP", "QUERY_GRPC", "HEALTH")
        }
        env = {f"JAEGER_{name}_PORT": str(port) for name, port in self.ports.items()}
        config = JAEGER_CONFIG
        if badger_dir is not None:
            config = JAEGER_BADGER_CONFIG
            env |= {
                "JAEGER_BADGER_DIR": str(badger_dir),
                "JAEGER_LISTEN_HOST": "127.0.0.1",
                "JAEGER_METRICS_LEVEL": "none",  # its own metrics would take port 8888
            }
        self.badger_dir = badger_dir
        super().__init__(
            [binary, f"--config={config}"], env, f"http://127.0.0.1:{self.ports['HEALTH']}/status", start
        )

    @property
    def otlp_grpc(self) -> str:
        return f"127.0.0.1:{self.ports['OTLP_GRPC']}"

    @property
    def otlp_http(self) -> str:
        return f"http://127.0.0.1:{self.ports['OTLP_HTTP']}"

    def search(self, service: str, timeout: float = 30, limit: int = 20) -> list[str]:
        """The ids of up to ``limit`` traces of ``service`` from the last hour (``GET
        /api/v3/traces``), waiting up to ``timeout`` for the first one to be stored."""
        now = time.time()
        window = {
            "query.service_name": service,
            "query.num_traces": str(limit),
            "query.start_time_min": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600)),
            "query.start_time_max": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600)),
        }
        url = f"http://127.0.0.1:{self.ports['QUERY_HTTP']}/api/v3/traces?{urllib.parse.urlencode(window)}"
        deadline = time.monotonic() + timeout
        while True:
            stored = _stored_spans(url, deadline, request_timeout=30)  # thousands of spans at most
            if stored is None:
                continue
            ids = {trace_id_hex(span["traceId"]) for span in stored}
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
            stored = _stored_spans(url, deadline, request_timeout=5)
            if stored is None:
                continue
            complete = len(stored) >= spans and previous is not None and len(previous) == len(stored)
            if complete or time.monotonic() > deadline:
                return stored
            previous = stored
            time.sleep(0.3)


def _stored_spans(url: str, deadline: float, request_timeout: float) -> list[dict[str, Any]] | None:
    """The spans of Jaeger's api_v3 answer at ``url`` (OTLP-JSON; empty for its 404, nothing
    found). None, after a pause, when Jaeger did not answer (refused, reset or slow under load)
    and ``deadline`` has not passed: the caller asks again; past it, that error."""
    try:
        with urllib.request.urlopen(url, timeout=request_timeout) as response:
            body = json.load(response)
    except urllib.error.HTTPError as error:
        if error.code != 404:
            raise
        return []
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.3)
        return None
    return [
        span
        for resource_spans in body["result"]["resourceSpans"]
        for scope_spans in resource_spans.get("scopeSpans", [])
        for span in scope_spans.get("spans", [])  # a span stored twice leaves an empty entry
    ]


class Collector(_Process):
    """The Collector distribution running the shipped collector-config.yaml on loopback ports.

    Its persistent queues live in ``storage_dir`` (a temporary directory unless given; it outlives
    ``kill()`` and ``start()``, and goes with ``stop()`` when it was made here); the app's metrics
    are served on ``prometheus_endpoint`` (127.0.0.1); its own metrics (``own_metrics()``) on
    ``own_metrics_port``. ``extra_configs`` are config files merged over the shipped config, in
    order (e.g. examples/collector-without-portkey.yaml); ``overrides`` are extra
    ``--config=yaml:...`` fragments merged over both (e.g. a tiny queue). ``api_key=None`` runs it
    with PORTKEY_API_KEY unset, even when the tests' own environment has one.
    """

    def __init__(
        self,
        binary: str,
        jaeger_otlp_grpc: str,
        portkey_endpoint: str,
        api_key: str | None,
        grpc_port: int | None = None,
        http_port: int | None = None,
        storage_dir: Path | None = None,
        overrides: tuple[str, ...] = (),
        start: bool = True,
        extra_configs: tuple[Path, ...] = (),
    ) -> None:
        self.grpc_port, self.http_port = grpc_port or free_port(), http_port or free_port()
        self.health_port, self.own_metrics_port = free_port(), free_port()
        self.prometheus_endpoint = f"127.0.0.1:{free_port()}"
        self._storage_tmp = None
        if storage_dir is None:
            self._storage_tmp = tempfile.TemporaryDirectory(prefix="otel-portkey-otelcol-storage-")
            storage_dir = Path(self._storage_tmp.name)
        self.storage_dir = storage_dir
        env = {
            "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{self.grpc_port}",
            "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{self.http_port}",
            "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{self.health_port}",
            "OTELCOL_METRICS_LEVEL": "basic",
            "OTELCOL_STORAGE_DIR": str(storage_dir),
            "OTELCOL_PROMETHEUS_ENDPOINT": self.prometheus_endpoint,
            "JAEGER_OTLP_GRPC_ENDPOINT": jaeger_otlp_grpc,
            "PORTKEY_OTLP_ENDPOINT": portkey_endpoint,
        }
        if api_key is not None:
            env["PORTKEY_API_KEY"] = api_key
        # The Collector's own metrics: on a free loopback port instead of its default localhost:8888.
        reader = {"pull": {"exporter": {"prometheus": {"host": "127.0.0.1", "port": self.own_metrics_port}}}}
        own_metrics = f"yaml:service::telemetry::metrics::readers: {json.dumps([reader])}"  # JSON is YAML
        command = [binary, f"--config={COLLECTOR_CONFIG}"]
        command += [f"--config={path}" for path in extra_configs]
        command += [f"--config={own_metrics}"]
        command += [f"--config=yaml:{override}" for override in overrides]
        try:
            super().__init__(command, env, f"http://127.0.0.1:{self.health_port}/", start=False)
            if api_key is None:
                self._env.pop("PORTKEY_API_KEY", None)
            if start:
                self.start()
        except Exception:
            if self._storage_tmp is not None:
                self._storage_tmp.cleanup()
            raise

    @property
    def otlp_http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def own_metrics_address(self) -> str:
        """Where the Collector serves its own metrics (GET /metrics): a free 127.0.0.1 port of its
        own, never the default localhost:8888, so that Collectors (and Jaeger) on one host never
        collide."""
        return f"127.0.0.1:{self.own_metrics_port}"

    def own_metrics(self) -> Metrics:
        """The Collector's own metrics now, from its telemetry endpoint."""
        return collector_metrics(self.own_metrics_port)

    def stop(self) -> None:
        super().stop()
        if self._storage_tmp is not None:
            self._storage_tmp.cleanup()


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass
class Metrics:
    """Samples of a Prometheus text exposition: (name, labels, value)."""

    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> Metrics:
        samples = []
        for line in text.splitlines():
            match = _SAMPLE.match(line)
            if match and not line.startswith("#"):
                labels = dict(_LABEL.findall(match.group(3) or ""))
                samples.append((match.group(1), labels, float(match.group(4))))
        return cls(samples)

    def total(self, name: str, **labels: str) -> float:
        """The sum of the samples named ``name`` (or ``name_total``) whose labels include ``labels``
        (0 when none)."""
        return sum(
            value
            for sample, have, value in self.samples
            if sample in (name, f"{name}_total") and all(have.get(k) == v for k, v in labels.items())
        )


def collector_metrics(port: int) -> Metrics:
    """A Collector's own metrics now, as its telemetry endpoint on 127.0.0.1:``port`` serves them."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return Metrics.parse(response.read().decode())


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


class PrometheusError(RuntimeError):
    """Prometheus answered a query with an error (its ``errorType``/``error``)."""


class Prometheus(_Process):
    """Prometheus (Debian's package, 2.42) scraping ``targets`` every ``scrape_seconds``, with its TSDB in
    a temporary directory, exemplar storage on, and its API on a free 127.0.0.1 port (``port`` to choose
    it, e.g. to scrape itself).

    Prometheus 2.x asks every target for OpenMetrics first (``Accept: application/openmetrics-text;
    version=1.0.0,...``: there is no ``scrape_protocols`` setting before 2.49), and exemplars are kept
    only with ``--enable-feature=exemplar-storage``; the Collector's ``prometheus`` exporter then needs
    ``enable_open_metrics: true`` to send them.
    """

    def __init__(
        self,
        binary: str,
        targets: list[str],
        rule_files: list[str | Path] | None = None,
        scrape_seconds: float = 1.0,
        job: str = "otel-portkey",
        port: int | None = None,
        honor_labels: bool = False,
        own_telemetry: list[str] | None = None,
    ) -> None:
        """``honor_labels`` keeps the job and instance the targets set (the Collector's exporter sets
        them from each app's service.name and service.instance.id), as examples/prometheus/prometheus.yml
        does; ``own_telemetry`` are Collectors' own metrics endpoints, scraped as job
        ``otel-collector-self`` like there."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.scrape_seconds = scrape_seconds  # also each scrape's timeout: none is set
        scrape_interval = f"{round(scrape_seconds * 1000)}ms"
        self._dir = tempfile.TemporaryDirectory(prefix="otel-portkey-prometheus-")
        self.config_path = Path(self._dir.name) / "prometheus.yml"
        config = {  # JSON is YAML
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "rule_files": [str(Path(rule).resolve()) for rule in rule_files or []],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}],
        }
        if honor_labels:
            config["scrape_configs"][0]["honor_labels"] = True
        if own_telemetry:
            config["scrape_configs"].append(
                {"job_name": "otel-collector-self", "static_configs": [{"targets": list(own_telemetry)}]}
            )
        self.config_path.write_text(json.dumps(config, indent=2))
        command = [
            binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={Path(self._dir.name) / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--enable-feature=exemplar-storage",
        ]
        try:
            super().__init__(command, {}, f"{self.url}/-/ready")
        except Exception:
            self._dir.cleanup()
            raise

    def stop(self) -> None:
        super().stop()
        self._dir.cleanup()

    def _api(self, path: str, **params: str) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}" if params else f"{self.url}{path}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            try:
                body = json.load(error)
            except ValueError:
                raise PrometheusError(f"{path}: HTTP {error.code}") from error
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """The instant vector ``promql`` evaluates to now, or at ``at`` (Unix seconds; ``GET
        /api/v1/query``): a list of ``{"metric": {label: value}, "value": [timestamp, "value"]}``.

        Several queries meant to read one moment pass the same ``at``, from ``settled``: a scrape
        that fails (under load, one slower than the scrape interval) marks its target's series
        stale, and a query at "now" after it would find none."""
        params = {"query": promql} if at is None else {"query": promql, "time": f"{at:.3f}"}
        data = self._api("/api/v1/query", **params)
        if data["resultType"] != "vector":
            raise PrometheusError(f"{promql!r} is a {data['resultType']}, not an instant vector")
        result: list[dict[str, Any]] = data["result"]
        return result

    def wait_for(
        self, promql: str, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 30
    ) -> list[dict[str, Any]]:
        """Query ``promql`` until ``predicate(result)`` holds; returns that result, or past ``timeout``
        the last one (the caller's assertions then say what is missing)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)
            if predicate(result) or time.monotonic() > deadline:
                return result
            time.sleep(0.25)

    def settled(
        self, promql: str, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 30
    ) -> tuple[list[dict[str, Any]], float]:
        """``wait_for``, then the moment its result was evaluated at, once any scrape that was under
        way then has ended: a scrape that fails writes its stale markers at its start, so a moment
        is kept only when ``promql`` still holds there afterwards. Returns the result and that
        moment, for ``query(..., at=)``; past ``timeout``, the last result (the caller's assertions
        then say what is missing)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.wait_for(promql, predicate, max(deadline - time.monotonic(), 0))
            if not (result and predicate(result)):
                return result, time.time()
            at = float(result[0]["value"][0])
            time.sleep(self.scrape_seconds + 0.5)  # a scrape's timeout is its interval
            again = self.query(promql, at=at)
            if predicate(again) or time.monotonic() > deadline:
                return again, at

    def exemplars(self, promql: str, start: float, end: float) -> list[dict[str, Any]]:
        """The exemplars of the series ``promql`` selects between ``start`` and ``end`` (Unix seconds;
        ``GET /api/v1/query_exemplars``): a list of ``{"seriesLabels": {...}, "exemplars":
        [{"labels": {...}, "value": "...", "timestamp": ...}]}``."""
        data: list[dict[str, Any]] = self._api(
            "/api/v1/query_exemplars", query=promql, start=f"{start:.3f}", end=f"{end:.3f}"
        )
        return data

    def rules(self) -> list[dict[str, Any]]:
        """The loaded rule groups with their rules' health, state and active alerts
        (``GET /api/v1/rules``)."""
        groups: list[dict[str, Any]] = self._api("/api/v1/rules")["groups"]
        return groups


def prometheus_binaries() -> dict[str, str]:
    """The installed ``prometheus`` and ``promtool`` (PATH, then /usr/bin): {"PROMETHEUS": path,
    "PROMTOOL": path}. Nothing is installed here: ``make components`` does that."""
    paths: dict[str, str] = {}
    for name in ("prometheus", "promtool"):
        path = shutil.which(name) or shutil.which(name, path="/usr/bin")
        if path is None:
            raise ComponentUnavailable(
                f"{name} is not installed: run `make components` (it installs Debian's prometheus package)"
            )
        paths[name.upper()] = path
    return paths
