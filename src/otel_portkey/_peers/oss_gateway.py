"""The open-source Portkey gateway (``@portkey-ai/gateway`` from npm) as a local test peer.

:func:`install_gateway` installs the pinned version once into ``~/.cache/otel-portkey/`` and
:class:`OssGateway` runs it on a free loopback port. One dependency is pinned below the
gateway's own range: with ``@hono/node-server`` 1.14.2 and later (npm picks 1.19 today) every
streamed chat completion fails with HTTP 500 (``TypeError: immutable`` when the gateway appends
``x-portkey-last-used-option-index`` to the upstream's read-only headers); 1.14.1 copies the
headers and streams work. The package's ``postinstall`` (patch-package) has no patches in the
published tarball, so scripts are not run.
"""

from __future__ import annotations

import collections
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


class GatewayUnavailable(RuntimeError):
    """The gateway cannot be installed or started here (no Node/npm, registry unreachable, ...)."""


def cache_root() -> Path:
    """``$OTEL_PORTKEY_CACHE`` or ``~/.cache/otel-portkey``: where pinned components are kept."""
    return Path(os.environ.get(OTEL_PORTKEY_CACHE) or Path.home() / ".cache" / "otel-portkey")


def node_binary() -> str | None:
    """Path of ``node`` on PATH, if any."""
    return shutil.which("node")


def installed_gateway(version: str = GATEWAY_VERSION) -> Path:
    """Where the pinned gateway's ``start-server.js`` is (or would be) installed."""
    directory = cache_root() / f"gateway-{version}-node-server-{NODE_SERVER_PIN}"
    return directory / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"


def install_gateway(version: str = GATEWAY_VERSION) -> Path:
    """Install the pinned gateway once; return the path of its ``start-server.js``."""
    entry = installed_gateway(version)
    if entry.exists():
        return entry
    directory = entry.parents[4]
    npm = shutil.which("npm")
    if npm is None or node_binary() is None:
        raise GatewayUnavailable("Node.js and npm are needed for the OSS Portkey gateway (not found on PATH)")
    # Installed beside its place, then moved there: an install that is interrupted (Ctrl-C, a
    # timeout) leaves no half-filled directory that would pass for an installed gateway.
    final, directory = directory, directory.with_name(directory.name + f".partial-{os.getpid()}")
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    manifest = {
        "name": "otel-portkey-gateway-cache",
        "private": True,
        "dependencies": {_PACKAGE: version},
        "overrides": {"@hono/node-server": NODE_SERVER_PIN},
    }
    (directory / "package.json").write_text(json.dumps(manifest, indent=2))
    try:
        result = subprocess.run(
            [npm, "install", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if result.returncode != 0 or not (directory / entry.relative_to(final)).exists():
            raise GatewayUnavailable(
                f"npm install {_PACKAGE}@{version} failed: {result.stderr.strip()[-500:]}"
            )
        if not entry.exists():  # else another process installed it meanwhile: keep that one
            shutil.rmtree(final, ignore_errors=True)  # a half-filled one from before this code
            directory.rename(final)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return entry


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def route_headers(model_base_url: str) -> dict[str, str]:
    """Headers that make the OSS gateway forward to an OpenAI-compatible server at ``model_base_url``."""
    return {"x-portkey-provider": "openai", "x-portkey-custom-host": model_base_url}


class OssGateway:
    """The OSS gateway as a child process on 127.0.0.1; ``with OssGateway() as gw: gw.base_url``."""

    def __init__(self, port: int | None = None, version: str = GATEWAY_VERSION) -> None:
        self.version = version
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
        preload = Path(__file__).with_name("bind_loopback.cjs")
        self._process = subprocess.Popen(
            [node, "--require", str(preload), str(entry), f"--port={self.port}", "--headless"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "NODE_ENV": "production"},
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
        print(f"installing {_PACKAGE}@{GATEWAY_VERSION} from the npm registry ...", file=sys.stderr)
    try:
        print(install_gateway())
    except GatewayUnavailable as error:
        print(f"otel-portkey: {error}", file=sys.stderr)
        sys.exit(1)
