"""``otel-portkey gateway``: the pinned OSS Portkey gateway and a scripted model on loopback, so a
user can try the bridge on their own app offline, with no key and no code change.

Three servers, all on 127.0.0.1: the scripted model (stands in for the paid provider), the OSS
gateway ``@portkey-ai/gateway`` at the pinned version, and in front of it, on the port the app
uses (8787, the gateway's own default), a hop that adds the two routing headers the OSS gateway
needs (``x-portkey-provider: openai`` and ``x-portkey-custom-host``) to a request that has none.
An unchanged OpenAI-style app pointed there by ``OPENAI_BASE_URL`` then reaches the model through
the real gateway, and its answer carries the gateway's own ``x-portkey-*`` headers. A request with
routing of its own (``x-portkey-config``, ``x-portkey-provider`` or ``x-portkey-virtual-key``: a
retry or fallback config with its targets) passes unchanged.

With ``--otlp-endpoint URL`` the gateway runs under OpenTelemetry for Node (installed beside it):
its SERVER span per request, under the app's ``POST`` span, and a CLIENT span per upstream attempt,
with its HTTP metrics, go as OTLP/HTTP to ``URL`` (see ``oss_gateway.OssGateway``).

It runs until Ctrl-C, SIGTERM or SIGHUP, then stops all three: nothing is left listening.
"""

from __future__ import annotations

import errno
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Final, TextIO

from .._peers.model_server import ScriptedModelServer
from .._peers.oss_gateway import (
    DEFAULT_SERVICE_NAME,
    GATEWAY_VERSION,
    GatewayUnavailable,
    OssGateway,
    cache_root,
    installed_gateway,
    route_headers,
)
from .._peers.recording_proxy import RecordingProxy

DEFAULT_PORT: Final = 8787
SCRIPTED_MODEL_KEY: Final = "sk-local-scripted-model"  # the scripted model accepts any key


class LocalGatewayError(RuntimeError):
    """Why the local gateway could not start, in one sentence."""


@dataclass(frozen=True)
class LocalGateway:
    """Where the running servers are."""

    url: str  # the hop in front of the gateway: what apps use
    gateway_url: str  # the OSS gateway itself
    model_base_url: str
    otlp_endpoint: str | None = None  # where the gateway's spans and metrics go (None: not traced)
    service_name: str = DEFAULT_SERVICE_NAME

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def environment(self) -> dict[str, str]:
        """What an app's shell needs: the gateway for the bridge and the Portkey SDKs, the base
        URL and a key for OpenAI-style SDKs (openai, LangChain's ChatOpenAI, LiteLLM)."""
        return {
            "PORTKEY_GATEWAY_URL": self.base_url,
            "OPENAI_BASE_URL": self.base_url,
            "OPENAI_API_KEY": SCRIPTED_MODEL_KEY,
        }

    def routing_headers(self) -> dict[str, str]:
        return route_headers(self.model_base_url)


@contextmanager
def running(
    port: int = DEFAULT_PORT,
    say: Callable[[str], None] | None = None,
    otlp_endpoint: str | None = None,
    service_name: str = DEFAULT_SERVICE_NAME,
    metric_interval: float = 10.0,
) -> Iterator[LocalGateway]:
    """Start the three servers (installing the pinned gateway from npm on first use), yield where
    they are, stop them all on the way out. With ``otlp_endpoint`` the gateway is traced (its
    spans and metrics, as ``service_name``, every ``metric_interval`` seconds for metrics)."""
    with ExitStack() as stack:
        model = stack.enter_context(ScriptedModelServer())
        # The hop binds its port first: a busy port ends here, before any gateway process starts.
        gateway = OssGateway(
            otlp_endpoint=otlp_endpoint, service_name=service_name, metric_interval=metric_interval
        )
        try:
            hop = RecordingProxy(
                gateway.url, port=port, default_routing=route_headers(model.base_url), record=False
            )
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise LocalGatewayError(
                    f"port {port} is already in use (another gateway?); stop it or pass --port N"
                ) from error
            raise LocalGatewayError(f"cannot listen on 127.0.0.1:{port} ({error.strerror})") from error
        if not installed_gateway().exists() and say is not None:
            say(
                f"installing @portkey-ai/gateway@{GATEWAY_VERSION} and OpenTelemetry for Node from npm "
                f"into {cache_root()} (once) ..."
            )
        try:
            stack.enter_context(gateway)
        except GatewayUnavailable as error:
            hop.close()
            raise LocalGatewayError(str(error)) from error
        stack.enter_context(hop)
        yield LocalGateway(hop.url, gateway.url, model.base_url, otlp_endpoint, service_name)


def describe(local: LocalGateway) -> str:
    """The lines the command prints once everything is up."""
    lines = [
        f"The OSS Portkey gateway {GATEWAY_VERSION} and a scripted model are running on loopback "
        "until Ctrl-C.",
        *(
            [
                f"Traced: the gateway's spans and metrics go to {local.otlp_endpoint} (OTLP/HTTP) "
                f"as service {local.service_name!r}."
            ]
            if local.otlp_endpoint
            else []
        ),
        "",
        "In the shell that runs your app:",
        *(f"  export {name}={value}" for name, value in local.environment().items()),
        "",
        f"Requests to {local.url} without routing headers get these (the OSS gateway needs them to",
        "reach the scripted model; hosted Portkey needs your own, e.g. portkey_ai.createHeaders):",
        *(f"  {name}: {value}" for name, value in local.routing_headers().items()),
    ]
    return "\n".join(lines)


def stop_on_signals() -> Callable[[], None]:
    """Make SIGINT (Ctrl-C), SIGTERM and SIGHUP raise KeyboardInterrupt, so everything the command
    started is stopped by the same ``with`` blocks, whatever signal ends it: SIGINT too, which a
    process started in the background of a script inherits as ignored (Python then never raises
    KeyboardInterrupt). Returns a function that puts the old handlers back; does nothing outside
    the main thread (only it may set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    wanted = (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None))  # no SIGHUP on Windows
    previous = {sig: signal.signal(sig, interrupt) for sig in wanted if sig is not None}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


def serve(
    port: int = DEFAULT_PORT,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    otlp_endpoint: str | None = None,
    service_name: str = DEFAULT_SERVICE_NAME,
) -> int:
    """The command: start, print what an app needs, wait for a signal, stop everything."""
    restore = stop_on_signals()

    def say(message: str) -> None:
        print(message, file=err, flush=True)

    try:
        with running(port, say=say, otlp_endpoint=otlp_endpoint, service_name=service_name) as local:
            print(describe(local), file=out, flush=True)
            threading.Event().wait()  # until a signal raises KeyboardInterrupt here
    except LocalGatewayError as error:
        print(f"otel-portkey gateway: {error}", file=err)
        return 1
    except KeyboardInterrupt:
        print("otel-portkey gateway: stopped (gateway, hop and model server)", file=err, flush=True)
        return 0
    finally:
        restore()
    return 0
