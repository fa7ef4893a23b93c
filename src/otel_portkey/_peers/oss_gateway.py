"""The open-source Portkey gateway (``@portkey-ai/gateway`` from npm) as a local test peer.

:func:`install_gateway` installs the pinned version once into ``~/.cache/otel-portkey/`` and
:class:`OssGateway` runs it on a free loopback port. One dependency is pinned below the
gateway's own range: with ``@hono/node-server`` 1.14.2 and later (npm picks 1.19 today) every
streamed chat completion fails with HTTP 500 (``TypeError: immutable`` when the gateway appends
``x-portkey-last-used-option-index`` to the upstream's read-only headers); 1.14.1 copies the
headers and streams work. The package's ``postinstall`` (patch-package) has no patches in the
published tarball, so scripts are not run.

OpenTelemetry for Node is installed by the same ``npm install`` (:data:`NODE_OTEL_PACKAGES`, pinned
exactly): ``OssGateway(otlp_endpoint=URL)`` runs the gateway traced, with the preload shipped in
this package (:func:`gateway_preload`), exporting its spans and metrics as OTLP/HTTP to ``URL``.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Final

from ..environment_variables import OTEL_PORTKEY_CACHE

GATEWAY_VERSION: Final = "1.15.2"
NODE_SERVER_PIN: Final = "1.14.1"
_PACKAGE: Final = "@portkey-ai/gateway"
_READY: Final = "Ready for connections"
# OpenTelemetry for Node, installed beside the gateway; the preload imports each of these itself.
# (sdk-trace and the OTLP/protobuf trace exporter are the exact versions sdk-node depends on.)
NODE_OTEL_PACKAGES: Final = {
    "@opentelemetry/api": "1.10.0",
    "@opentelemetry/sdk-node": "0.300.0",
    "@opentelemetry/sdk-trace": "3.0.0",
    "@opentelemetry/exporter-trace-otlp-proto": "0.300.0",
    "@opentelemetry/instrumentation-http": "0.300.0",
    "@opentelemetry/instrumentation-undici": "0.34.0",
}
DEFAULT_SERVICE_NAME: Final = "portkey-gateway"


class GatewayUnavailable(RuntimeError):
    """The gateway cannot be installed or started here (no Node/npm, registry unreachable, ...)."""


def cache_root() -> Path:
    """``$OTEL_PORTKEY_CACHE`` or ``~/.cache/otel-portkey``: where pinned components are kept."""
    return Path(os.environ.get(OTEL_PORTKEY_CACHE) or Path.home() / ".cache" / "otel-portkey")


def node_binary() -> str | None:
    """Path of ``node`` on PATH, if any."""
    return shutil.which("node")


def gateway_preload() -> Path:
    """The preload that runs a gateway under OpenTelemetry for Node (``node --import`` its file URL;
    it loads the ``@opentelemetry/*`` packages from the working directory's ``node_modules``)."""
    return Path(__file__).with_name("gateway_otel.mjs")


def npm_manifest(version: str = GATEWAY_VERSION) -> dict[str, object]:
    """The ``package.json`` the pinned gateway and OpenTelemetry for Node are installed from."""
    return {
        "name": "otel-portkey-gateway-cache",
        "private": True,
        "dependencies": {_PACKAGE: version, **NODE_OTEL_PACKAGES},
        "overrides": {"@hono/node-server": NODE_SERVER_PIN},
    }


def installed_gateway(version: str = GATEWAY_VERSION) -> Path:
    """Where the pinned gateway's ``start-server.js`` is (or would be) installed.

    The directory is named after what it holds (a digest of the manifest): a cache installed
    from other pins, e.g. before OpenTelemetry was added, is never taken for this one."""
    digest = hashlib.sha256(json.dumps(npm_manifest(version), sort_keys=True).encode()).hexdigest()
    directory = cache_root() / f"gateway-{version}-{digest[:12]}"
    return directory / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"


def install_directory(entry: Path) -> Path:
    """The directory npm installed into (its ``node_modules`` holds the gateway and OpenTelemetry)."""
    return entry.parents[4]


def install_gateway(version: str = GATEWAY_VERSION) -> Path:
    """Install the pinned gateway once; return the path of its ``start-server.js``."""
    entry = installed_gateway(version)
    if entry.exists():
        return entry
    directory = install_directory(entry)
    npm = shutil.which("npm")
    if npm is None or node_binary() is None:
        raise GatewayUnavailable("Node.js and npm are needed for the OSS Portkey gateway (not found on PATH)")
    # Installed beside its place, then moved there: an install that is interrupted (Ctrl-C, a
    # timeout) leaves no half-filled directory that would pass for an installed gateway.
    final, directory = directory, directory.with_name(directory.name + f".partial-{os.getpid()}")
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    (directory / "package.json").write_text(json.dumps(npm_manifest(version), indent=2))
    try:
        try:
            result = subprocess.run(
                [npm, "install", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=directory,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise GatewayUnavailable(
                f"npm did not finish installing {_PACKAGE}@{version} and OpenTelemetry for Node "
                "within 600 s (is the npm registry reachable?)"
            ) from error
        installed = all(
            (directory / "node_modules" / package / "package.json").exists()
            for package in (_PACKAGE, *NODE_OTEL_PACKAGES)
        )
        if result.returncode != 0 or not installed or not (directory / entry.relative_to(final)).exists():
            raise GatewayUnavailable(_npm_failure(version, result.stderr))
        if not entry.exists():  # else another process installed it meanwhile: keep that one
            shutil.rmtree(final, ignore_errors=True)  # a half-filled one from before this code
            directory.rename(final)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return entry


_UNREACHABLE: Final = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENETUNREACH")


def _npm_failure(version: str, stderr: str) -> str:
    """Why ``npm install`` failed, in one sentence (npm's last words kept when it was not the network)."""
    packages = f"{_PACKAGE}@{version} and OpenTelemetry for Node"
    if any(code in stderr for code in _UNREACHABLE):
        return f"npm could not reach the npm registry to install {packages} (needed once, then cached)"
    last = " ".join(stderr.strip().splitlines()[-3:])[-400:]
    return f"npm install of {packages} failed: {last or 'no output'}"


_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, and that this process has not handed out
    before. Ports are often bound later, by a child process; meanwhile the kernel could pick the
    same free port again (a component's five ports colliding with each other or another's), so a
    port is never handed out twice, for as long as other free ones come up."""
    with _handed_out_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.bind(("127.0.0.1", 0))
                port = int(probe.getsockname()[1])
            if port not in _handed_out:
                break
        _handed_out.add(port)
        return port


def route_headers(model_base_url: str) -> dict[str, str]:
    """Headers that make the OSS gateway forward to an OpenAI-compatible server at ``model_base_url``."""
    return {"x-portkey-provider": "openai", "x-portkey-custom-host": model_base_url}


def traced_environment(
    otlp_endpoint: str, service_name: str = DEFAULT_SERVICE_NAME, metric_interval: float = 10.0
) -> dict[str, str]:
    """Every ``OTEL_*`` variable a traced gateway gets: what the preload's Node SDK reads, set here
    and nowhere else (the ``OTEL_*`` of the shell that started it, an app's own
    ``OTEL_SERVICE_NAME`` among them, are not passed on). OTLP/HTTP protobuf to ``otlp_endpoint``
    (a base URL: ``/v1/traces`` and ``/v1/metrics`` are added), spans sent within a second,
    metrics every ``metric_interval`` seconds, no logs, no cloud resource detectors (offline they
    only warn)."""
    return {
        "OTEL_SERVICE_NAME": service_name,
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint.rstrip("/"),
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_PROPAGATORS": "tracecontext,baggage",
        "OTEL_BSP_SCHEDULE_DELAY": "1000",
        "OTEL_METRIC_EXPORT_INTERVAL": str(max(int(metric_interval * 1000), 100)),
        "OTEL_NODE_RESOURCE_DETECTORS": "env,host,process",
    }


class OssGateway:
    """The OSS gateway as a child process on 127.0.0.1; ``with OssGateway() as gw: gw.base_url``.

    With ``otlp_endpoint`` (an OTLP/HTTP base URL, e.g. a Collector's ``http://127.0.0.1:4318``) it
    runs under OpenTelemetry for Node: a SERVER span per request (continuing the request's
    ``traceparent``, with ``portkey.span_id`` / ``portkey.trace_id`` from its Portkey headers) and
    a CLIENT span per upstream attempt, as ``service_name``; its HTTP metrics every
    ``metric_interval`` seconds. Without it, nothing of OpenTelemetry is loaded.
    """

    def __init__(
        self,
        port: int | None = None,
        version: str = GATEWAY_VERSION,
        otlp_endpoint: str | None = None,
        service_name: str = DEFAULT_SERVICE_NAME,
        metric_interval: float = 10.0,
    ) -> None:
        self.version = version
        self.otlp_endpoint = otlp_endpoint
        self.service_name = service_name
        self.metric_interval = metric_interval
        self.port = port or free_port()
        self._process: subprocess.Popen[str] | None = None
        self._output: collections.deque[str] = collections.deque(maxlen=200)  # its last lines

    @property
    def url(self) -> str:
        """The gateway's root URL, ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL for SDK clients, ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    @property
    def output(self) -> str:
        """What the gateway printed so far."""
        return "".join(self._output)

    def start(self, timeout: float = 60.0, install: bool = True) -> OssGateway:
        """Start the gateway; with ``install=False`` a gateway not installed yet is unavailable
        (tests: ``make components`` installs it before pytest starts)."""
        if install:
            entry = install_gateway(self.version)
        else:
            entry = installed_gateway(self.version)
            if not entry.exists():
                raise GatewayUnavailable(
                    f"{_PACKAGE}@{self.version} is not installed in {cache_root()}: run 'make components'"
                )
        node = node_binary()
        if node is None:
            raise GatewayUnavailable("node not found on PATH")
        command = [node, "--require", str(Path(__file__).with_name("bind_loopback.cjs"))]
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env["NODE_ENV"] = "production"
        cwd = None
        if self.otlp_endpoint is not None:
            command += ["--import", gateway_preload().as_uri()]
            env.update(traced_environment(self.otlp_endpoint, self.service_name, self.metric_interval))
            cwd = install_directory(entry)  # where the preload finds node_modules/@opentelemetry
        self._process = subprocess.Popen(
            [*command, str(entry), f"--port={self.port}", "--headless"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=cwd,
        )
        ready = threading.Event()
        threading.Thread(target=self._pump, args=(ready,), daemon=True, name="portkey-gateway-output").start()
        deadline = time.monotonic() + timeout
        try:
            while not ready.wait(0.05):
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise GatewayUnavailable(
                        f"the OSS gateway did not start on port {self.port}: {self.output[-500:]}"
                    )
        except BaseException:  # not started, or Ctrl-C / SIGTERM while starting: no node left behind
            self.stop()
            raise
        return self

    def _pump(self, ready: threading.Event) -> None:
        process = self._process
        if process is None or process.stdout is None:
            return
        for line in process.stdout:
            self._output.append(line)
            if _READY in line:
                ready.set()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def __enter__(self) -> OssGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":  # ``python -m otel_portkey._peers.oss_gateway`` (make components): install it
    import sys

    if not installed_gateway().exists():
        print(
            f"installing {_PACKAGE}@{GATEWAY_VERSION} and OpenTelemetry for Node from the npm registry ...",
            file=sys.stderr,
        )
    try:
        print(install_gateway())
    except GatewayUnavailable as error:
        print(f"otel-portkey: {error}", file=sys.stderr)
        sys.exit(1)
