"""``otel-portkey demo``: the seed agent through a real Portkey gateway, seen from both worlds.

Offline by default: a scripted model stands in for the LLM provider, the OSS Portkey gateway
runs on loopback (or, without Node.js, a clearly labelled built-in stand-in), a recording hop in
front of it keeps what the gateway received, and OTLP receivers collect what OpenTelemetry
exported: the spans, and the bridge's metrics (the closing summary is read back from them). The
agent runs in a child process under ``opentelemetry-instrument``, exactly as a user's app would.
The OSS gateway the demo starts runs traced (OpenTelemetry for Node, as ``otel-portkey gateway
--otlp-endpoint`` runs it), exporting to the same receivers: under each ``POST`` of the agent, the
tree shows the gateway's own SERVER span and each upstream attempt, as the gateway exported them.
Both export through one relay in front of the receivers, which with ``--otlp-endpoint`` sends each
export on and counts what did not arrive (:class:`Delivery`). The closing "Jaeger:" line gives the
``otel-portkey trace`` command that reads the trace back from Jaeger's API, and the UI's page only
where that Jaeger has its UI. Every process and server it starts is stopped on the way out, also on
Ctrl-C. A gateway the demo does not start must answer before the agent runs; an agent that fails
is reported by its exception and the root of that exception's chain.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from .. import environment_variables as ev
from .._contract import call as h
from .._peers.model_server import ScriptedModelServer
from .._peers.oss_gateway import (
    DEFAULT_SERVICE_NAME,
    GATEWAY_VERSION,
    GatewayUnavailable,
    OssGateway,
    node_binary,
)
from .._peers.otlp_receiver import OtlpReceiver, ReceivedSpan
from .._peers.recording_proxy import ForwardedRequest, RecordingProxy
from .._peers.standin_gateway import PortkeyStandIn
from ..config import HOSTED_GATEWAY_URL as HOSTED_GATEWAY
from ..config import PortkeySettings
from .delivery import DELIVERY_TIMEOUT, TRACES_PATH, Delivery, ExportRelay
from .doctor import printable, redact_url
from .metrics_summary import METRICS_PATH, MetricsSummary, OtlpMetricsReceiver, summarize
from .span_tree import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_SERVER,
    Label,
    Node,
    add_spans,
    http_status,
    print_tree,
    service,
    span_json,
    span_label,
    text_attribute,
    upstream,
)
from .trace import (
    DEFAULT_JAEGER,
    JaegerQuery,
    jaeger_url_argument,
    network_cause,
    shown_url,
    trace_command,
)

Progress = Callable[[str], None]

AGENT_SCRIPT = "langchain_agent.py"

# The OTel HTTP client instrumentation records the response header named here on each HTTP span
# (``http.response.header.x_portkey_trace_id``, a list): what the gateway answered, as the client
# received it, independent of the bridge. The demo's evidence when no recording hop can sit in front
# of the gateway (hosted Portkey speaks TLS).
CAPTURED_ECHO_ENV: Final = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE"
CAPTURED_ECHO_ATTRIBUTE: Final = "http.response.header.x_portkey_trace_id"

# The traced OSS gateway's service name: its spans are told from the agent's by their resource.
GATEWAY_SERVICE: Final = DEFAULT_SERVICE_NAME


# The agent runs as ``python -c AGENT_RUNNER script [question]`` (see :func:`run_agent`): the
# script as ``python script`` runs it (its folder first on sys.path, where ``-c`` puts the current
# folder, whose modules would shadow the agent's packages) and, when it ends in an exception, one
# line on stderr naming that exception and the root of its chain (``__cause__`` /
# ``__context__``), which :func:`agent_failure` reads back.
FAILURE_MARK: Final = "otel-portkey demo, the agent failed:"
AGENT_RUNNER: Final = f"""
import os, runpy, sys
sys.argv = sys.argv[1:]
folder = os.path.dirname(os.path.abspath(sys.argv[0]))
if sys.path and sys.path[0] == "":
    sys.path[0] = folder
else:
    sys.path.insert(0, folder)
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except Exception as error:
    def name(e):
        kind = (type(e).__module__ + "." + type(e).__qualname__).removeprefix("builtins.")
        return kind + (": " + str(e) if str(e) else "")
    root, seen = error, set()
    while id(root) not in seen and (root.__cause__ or root.__context__) is not None:
        seen.add(id(root))
        root = root.__cause__ or root.__context__
    text = name(error) if root is error else name(error) + " (cause: " + name(root) + ")"
    print({FAILURE_MARK!r}, " ".join(text.split()), file=sys.stderr)
    raise
"""


class DemoError(RuntimeError):
    """A demo failure, with one sentence for the user."""


def agent_failure(stderr: str) -> str:
    """What the agent's exception was and its root cause, as :data:`AGENT_RUNNER` wrote it; else
    the agent's last line on stderr."""
    lines = stderr.strip().splitlines()
    marked = [line.removeprefix(FAILURE_MARK).strip() for line in lines if line.startswith(FAILURE_MARK)]
    return printable(redact_url(marked[-1] if marked else (lines[-1] if lines else "no output")))[:600]


def run_agent(
    script: Path, env: dict[str, str], timeout: float, question: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` by :data:`AGENT_RUNNER` under ``opentelemetry-instrument``, as a user's app
    runs, in the script's own folder: ``opentelemetry-instrument`` puts the current folder on
    ``PYTHONPATH``, where a module of the user's (a ``langchain_openai.py``) would shadow the
    agent's packages. :class:`DemoError` when it does not finish within ``timeout`` seconds."""
    instrument = Path(sys.executable).with_name("opentelemetry-instrument")
    command = [str(instrument), sys.executable, "-c", AGENT_RUNNER, str(script)]
    try:
        return subprocess.run(
            [*command, question] if question else command,
            env=env,
            cwd=script.parent,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise DemoError(f"the agent did not finish within {timeout:g} s") from error


@dataclass(frozen=True)
class JaegerPointer:
    """Where the demo's trace can be read in Jaeger: ``otel-portkey trace`` (Jaeger's query API,
    which every Jaeger serves), and the UI's page of the trace when that Jaeger has its UI (the one
    ``make components`` builds has none: its base URL answers with a placeholder page). No URL here
    carries a password or a query."""

    url: str  # Jaeger's base URL, as shown (a password in it masked, no query)
    trace_command: str  # "": OTEL_PORTKEY_JAEGER_UI_URL is no URL the command takes (``problem``)
    has_ui: bool | None  # None: not known (Jaeger did not answer)
    ui_link: str | None = None  # the UI's page of the trace, when the UI is there
    problem: str | None = None  # why has_ui is not known, or why the configured URL is not usable

    def line(self) -> str:
        if not self.trace_command:
            return f"Jaeger: {self.problem}"
        if self.ui_link is not None:
            return f"Jaeger: {self.ui_link}  (in a terminal: {self.trace_command})"
        if self.has_ui is False:
            return (
                f"Jaeger: {self.trace_command}  (no UI at {self.url}: a Jaeger built without its UI assets)"
            )
        return f"Jaeger: {self.trace_command}  (Jaeger at {self.url} {self.problem})"


def jaeger_pointer(trace_id: str, spans_sent_on: bool) -> JaegerPointer | None:
    """Where to read ``trace_id``: in the Jaeger ``OTEL_PORTKEY_JAEGER_UI_URL`` names or, when the
    spans went on to ``--otlp-endpoint`` and no Jaeger is named, in one at http://localhost:16686
    if one answers there. One GET of its base URL tells whether it serves its UI. A configured URL
    ``otel-portkey trace`` would refuse is said to be unusable, and not asked."""
    configured = _configured_jaeger()
    if not trace_id or not (configured or spans_sent_on):
        return None
    if configured and usable_jaeger_url(configured) is None:
        return JaegerPointer(
            url=redact_url(configured),
            trace_command="",
            has_ui=None,
            problem=f"{ev.OTEL_PORTKEY_JAEGER_UI_URL} is not usable: {redact_url(configured)!r} is not "
            f"Jaeger's base URL (like {DEFAULT_JAEGER}), so the trace cannot be read from there",
        )
    query = JaegerQuery(configured or DEFAULT_JAEGER, timeout=2.0)
    check = query.ui()
    if not configured and check.has_ui is None:
        return None
    return JaegerPointer(
        url=query.shown,
        trace_command=trace_command(trace_id, configured or DEFAULT_JAEGER),
        has_ui=check.has_ui,
        ui_link=ui_page(configured or DEFAULT_JAEGER, trace_id) if check.has_ui else None,
        problem=check.problem,
    )


def usable_jaeger_url(url: str) -> str | None:
    """``url`` as ``otel-portkey trace --jaeger`` takes it; None when it would refuse it."""
    try:
        return jaeger_url_argument(url)
    except argparse.ArgumentTypeError:
        return None


def jaeger_link(trace_id: str) -> str | None:
    """The UI's page of ``trace_id`` at ``OTEL_PORTKEY_JAEGER_UI_URL``, as shown (no password, no
    query); None when that is unset or no usable URL."""
    configured = usable_jaeger_url(_configured_jaeger())
    return ui_page(configured, trace_id) if configured and trace_id else None


def _configured_jaeger() -> str:
    """``OTEL_PORTKEY_JAEGER_UI_URL`` as set ("" when unset), without a trailing slash."""
    return os.environ.get(ev.OTEL_PORTKEY_JAEGER_UI_URL, "").rstrip("/")


def ui_page(jaeger_url: str, trace_id: str) -> str:
    """The Jaeger UI's page of ``trace_id``, as shown (no password, no query)."""
    return f"{shown_url(jaeger_url)}/trace/{trace_id}"


@dataclass
class GatewayAttempt:
    """One upstream attempt of the gateway's (a CLIENT span it exported): where it went, what the
    upstream answered."""

    span_id: str
    upstream: str  # server.address:server.port
    status_code: int | None  # http.response.status_code; None: no answer (a network error)
    duration_ms: float


@dataclass
class GatewayNode:
    """The gateway's own node of one call: its SERVER span, exported by the gateway itself (service
    ``portkey-gateway``), and the upstream attempts under it. Not written by the bridge: the ids
    here are what the gateway received (``portkey.span_id`` is its ``x-portkey-span-id``)."""

    service: str
    span_id: str
    parent_span_id: str  # the agent's POST span, from the traceparent the gateway received
    portkey_span_id: str | None
    portkey_trace_id: str | None
    status_code: int | None
    duration_ms: float
    attempts: list[GatewayAttempt] = field(default_factory=list)


@dataclass
class LlmCall:
    """One gateway call: what the gateway received and answered, and what its OTel span says.

    Correlation is judged on evidence only: the request headers and the response headers the
    recording hop saw. The ``portkey.*`` attributes the bridge wrote on the span (``answered``) are
    no evidence: ``portkey.trace_id`` holds the id sent whenever the gateway echoes nothing.
    """

    sent: dict[str, str]  # x-portkey-* the gateway received; without a hop, what the span says was sent
    http_span_id: str
    otel_trace_id: str
    answered: dict[str, Any]  # the portkey.* attributes the bridge set on the HTTP span
    caller: str
    # The gateway's x-portkey-* response headers as recorded in front of it; without a hop, only the
    # echo captured by the HTTP instrumentation, if any; None: nothing the gateway answered was seen.
    gateway_answer: dict[str, str] | None = None
    request_recorded: bool = True  # ``sent`` is what the gateway received (False: what the span says)
    # The gateway's own SERVER span for this call and its attempts; None: the gateway exported none
    # (a gateway the demo did not start traced: the stand-in, --gateway-url, --live).
    gateway_node: GatewayNode | None = None

    @property
    def echoed(self) -> str | None:
        """The ``x-portkey-trace-id`` the gateway answered ("" when it answered none); None: not seen."""
        if self.gateway_answer is None:
            return None
        return self.gateway_answer.get(h.TRACE_ID, "")

    @property
    def correlated(self) -> bool | None:
        """True when the gateway received this call's OTel ids and echoed its trace id; None when
        there is no evidence either way (nothing the gateway answered was recorded)."""
        echoed = self.echoed
        if echoed is None:
            return None
        if not (self.otel_trace_id and echoed == self.otel_trace_id):
            return False
        if not self.request_recorded:  # the echo proves the trace id arrived; nothing else was seen
            return True
        return (
            self.sent.get(h.TRACE_ID) == self.otel_trace_id
            and self.sent.get(h.PARENT_SPAN_ID) == self.http_span_id
            and self.sent.get(h.SPAN_NAME) == self.caller
        )


@dataclass
class DemoResult:
    answer: str
    trace_id: str
    gateway: str
    calls: list[LlmCall]
    spans: list[ReceivedSpan] = field(repr=False)
    seconds: float = 0.0
    jaeger_link: str | None = None
    # The bridge's portkey.gateway.* metrics as the agent exported them; None: none were exported.
    metrics: MetricsSummary | None = None
    metrics_off: bool = False  # OTEL_PORTKEY_METRICS switched them off
    gateway_traced: bool = False  # the demo ran the OSS gateway traced: its own spans are expected
    delivery: Delivery | None = None  # what went on to --otlp-endpoint; None: none was given
    jaeger: JaegerPointer | None = None  # where to read the trace in Jaeger; None: no Jaeger known

    @property
    def all_correlated(self) -> bool | None:
        """True only when every call is shown correlated; None when some could not be verified."""
        verdicts = [call.correlated for call in self.calls]
        if not verdicts or False in verdicts:
            return False
        return None if None in verdicts else True

    def as_json(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "trace_id": self.trace_id,
            "gateway": self.gateway,
            "seconds": round(self.seconds, 3),
            "jaeger_link": self.jaeger_link,
            "all_correlated": self.all_correlated,
            "gateway_traced": self.gateway_traced,
            "delivery": self.delivery.as_json() if self.delivery else None,
            "jaeger": asdict(self.jaeger) if self.jaeger else None,
            "metrics": self.metrics.as_json() if self.metrics else None,
            "calls": [
                dict(asdict(call), echoed=call.echoed, correlated=call.correlated) for call in self.calls
            ],
            "spans": [span_json(s) for s in self.spans],
        }


@dataclass(frozen=True)
class DemoOptions:
    """What ``otel-portkey demo`` was asked to do."""

    otlp_endpoint: str | None = None  # also export the spans and metrics to this OTLP/HTTP endpoint
    gateway_url: str | None = None  # use this running gateway instead of starting one
    live: bool = False  # hosted Portkey and a real provider
    question: str | None = None
    port: int | None = None  # where to start the OSS gateway (default: a free port)


def agent_script() -> Path:
    """The seed agent example: packaged with the wheel, or the repository's ``examples/``."""
    packaged = Path(__file__).parent.parent / "_examples" / AGENT_SCRIPT
    if packaged.exists():
        return packaged
    in_repo = Path(__file__).resolve().parents[3] / "examples" / AGENT_SCRIPT
    if in_repo.exists():
        return in_repo
    raise DemoError(f"the demo agent ({AGENT_SCRIPT}) is missing from this installation")


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


GatewayExports = ExportRelay  # its former name (benchmarks/bench_gateway.py relays the gateway's exports)


@dataclass
class _Gateway:
    """The gateway the agent calls: its root URL, its label, and the OSS gateway process when the
    demo started one (traced: its spans and metrics go to the demo's receivers)."""

    url: str
    label: str
    process: OssGateway | None = None


def _start_gateway(
    stack: contextlib.ExitStack, options: DemoOptions, progress: Progress, exports_url: str
) -> _Gateway:
    """The gateway the agent will call (one it does not start must answer now); a traced OSS
    gateway exports to ``exports_url`` (an OTLP/HTTP base URL)."""
    if options.live:
        if not proxied(HOSTED_GATEWAY):  # through a proxy, only the agent's own call can tell
            _check_reachable(HOSTED_GATEWAY, "the hosted Portkey gateway", "check the network or your proxy")
        return _Gateway(HOSTED_GATEWAY, "hosted Portkey gateway")
    if options.gateway_url:
        url = options.gateway_url.rstrip("/").removesuffix("/v1")
        _check_reachable(
            url,
            "the gateway",
            "start one with `otel-portkey gateway`, or drop --gateway-url and the demo starts its own",
        )
        return _Gateway(url, f"gateway at {options.gateway_url}")
    if options.port is not None and not _port_is_free(options.port):
        raise DemoError(
            f"port {options.port} is busy: choose another with --port, or stop what listens there"
        )
    if node_binary() is None:
        progress("Node.js not found: starting the built-in Portkey stand-in")
        standin = stack.enter_context(PortkeyStandIn(options.port or 0))
        return _Gateway(standin.url, standin.label)
    progress(f"Starting the OSS Portkey gateway {GATEWAY_VERSION}, traced (installed with npm on first use)")
    try:
        gateway = stack.enter_context(
            OssGateway(port=options.port, otlp_endpoint=exports_url, service_name=GATEWAY_SERVICE)
        )
    except GatewayUnavailable as error:
        raise DemoError(f"the OSS Portkey gateway did not start: {error}") from error
    return _Gateway(gateway.url, f"OSS Portkey gateway {GATEWAY_VERSION}", gateway)


def proxied(url: str) -> bool:
    """Whether the agent's HTTP client goes to ``url`` through a proxy: the proxy variables
    (``HTTPS_PROXY``, ``ALL_PROXY``, ...; httpx honours them as urllib does) name one for its
    scheme, and ``NO_PROXY`` does not exempt its host. A direct connection then tells nothing."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")


def _check_reachable(url: str, what: str, fix: str) -> None:
    """One sentence now, before the agent runs, when nothing answers at ``url``'s host and port."""
    shown = redact_url(url)
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        raise DemoError(f"{shown!r} is not a gateway's base URL, like http://localhost:8787")
    try:
        with socket.create_connection((parts.hostname, port), timeout=DELIVERY_TIMEOUT):
            pass
    except OSError as error:
        cause = network_cause(error, DELIVERY_TIMEOUT)
        raise DemoError(f"{what} at {shown} is not reachable ({cause}): {fix}") from error


def _check_live() -> None:
    if not os.environ.get(ev.PORTKEY_API_KEY):
        raise DemoError("--live needs PORTKEY_API_KEY (your Portkey API key)")
    if not (os.environ.get("OPENAI_API_KEY") or os.environ.get("PORTKEY_VIRTUAL_KEY")):
        raise DemoError("--live needs a provider key: OPENAI_API_KEY, or a PORTKEY_VIRTUAL_KEY")


def run_demo(
    options: DemoOptions | None = None, progress: Progress | None = None, timeout: float = 180.0
) -> DemoResult:
    """Run the seed agent once and collect both views of its trace; raise :class:`DemoError`."""
    options = options or DemoOptions()
    say = progress or (lambda message: None)
    if options.live:
        _check_live()
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        # The receivers first, then the relay in front of them: the agent and the traced gateway
        # export to the relay, and the gateway stops (flushing) before it, the relay before them.
        receiver = stack.enter_context(OtlpReceiver())
        metrics_receiver = stack.enter_context(OtlpMetricsReceiver())
        delivery = Delivery(options.otlp_endpoint) if options.otlp_endpoint else None
        exports = stack.enter_context(
            ExportRelay(f"{receiver.endpoint}{TRACES_PATH}", metrics_receiver.endpoint, delivery)
        )
        gateway = _start_gateway(stack, options, say, exports.url)
        gateway_url = gateway.url
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        for name in (
            ev.OTEL_PORTKEY_JAEGER_UI_URL,
            ev.OTEL_PORTKEY_METADATA,
            ev.OTEL_PORTKEY_METRICS,
            ev.OTEL_PORTKEY_TRACE_URL_TEMPLATE,
        ):
            if name in os.environ:
                env[name] = os.environ[name]
        hop: RecordingProxy | None = None
        if gateway_url.startswith("http://"):
            hop = stack.enter_context(RecordingProxy(gateway_url))
            gateway_url = hop.url
        if not options.live:
            model = stack.enter_context(ScriptedModelServer())
            env.update(PORTKEY_CUSTOM_HOST=model.base_url, PORTKEY_PROVIDER="openai")
        env.update(
            OTEL_SERVICE_NAME="otel-portkey-demo",
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_METRICS_EXPORTER="otlp",  # exported when the agent exits (the SDK's last collection)
            OTEL_LOGS_EXPORTER="none",
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_EXPORTER_OTLP_ENDPOINT=exports.url,
            OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=f"{exports.url}{METRICS_PATH}",
            OTEL_BSP_SCHEDULE_DELAY="100",
            PORTKEY_GATEWAY_URL=f"{gateway_url}/v1",
        )
        env[CAPTURED_ECHO_ENV] = h.TRACE_ID
        say("Running the seed agent under opentelemetry-instrument")
        process = run_agent(agent_script(), env, timeout, options.question)
        if process.returncode != 0:
            raise DemoError(f"the agent failed: {agent_failure(process.stderr)}")
        if gateway.process is not None:
            # Stopped now, not on the way out: it sends every span it still holds as it stops, so
            # the receiver has all of the gateway's spans once it has gone, without a wait.
            gateway.process.stop()
        spans = receiver.wait_for(lambda s: any(not x.parent_span_id for x in s), timeout=10)
        received = list(hop.requests) if hop is not None else None
        # The agent's last metric export happened as it exited; wait only for a late one.
        metrics_on = PortkeySettings.from_env({k: v for k, v in env.items() if k == ev.OTEL_PORTKEY_METRICS})
        points = metrics_receiver.wait_for(
            lambda p: summarize(p) is not None, timeout=5 if metrics_on.metrics else 0
        )
        if delivery is not None:
            delivery.wait()
    answer = (process.stdout.strip().splitlines() or [""])[-1]
    result = _result(
        answer,
        spans,
        received,
        gateway.label,
        started,
        summarize(points),
        metrics_off=not metrics_on.metrics,
        gateway_traced=gateway.process is not None,
    )
    result.delivery = delivery
    result.jaeger = jaeger_pointer(result.trace_id, delivery is not None and not delivery.failed)
    return result


def _result(
    answer: str,
    spans: list[ReceivedSpan],
    received: list[ForwardedRequest] | None,
    gateway: str,
    started: float,
    metrics: MetricsSummary | None = None,
    metrics_off: bool = False,
    gateway_traced: bool = False,
) -> DemoResult:
    by_id = {span.span_id: span for span in spans}
    exchanges: list[ForwardedRequest | _SentFromSpan] = (
        list(received)
        if received is not None  # recorded by the hop in front of the gateway: both directions
        # no recording hop (TLS to hosted Portkey): what the spans say was sent
        else [
            _SentFromSpan(span, by_id)
            for span in spans
            if h.ATTR_SPAN_ID in span.attributes and not _from_gateway(span)
        ]
    )
    calls = []
    for exchange in exchanges:
        sent = {k: v for k, v in exchange.headers.items() if k in _SHOWN}
        http_span = by_id.get(sent.get(h.PARENT_SPAN_ID, ""))
        caller = by_id.get(http_span.parent_span_id) if http_span else None
        if isinstance(exchange, ForwardedRequest):
            gateway_answer: dict[str, str] | None = {
                k: v for k, v in exchange.response_headers.items() if k.startswith(h.PORTKEY_PREFIX)
            }
        else:
            gateway_answer = exchange.captured_answer
        calls.append(
            LlmCall(
                sent=sent,
                http_span_id=http_span.span_id if http_span else "",
                otel_trace_id=http_span.trace_id if http_span else "",
                answered={
                    k: v
                    for k, v in (http_span.attributes.items() if http_span else ())
                    if k.startswith("portkey.")
                },
                caller=caller.name if caller else "",
                gateway_answer=gateway_answer,
                request_recorded=isinstance(exchange, ForwardedRequest),
                gateway_node=_gateway_node(http_span.span_id, spans) if http_span else None,
            )
        )
    roots = [s for s in spans if not s.parent_span_id and not _from_gateway(s)]
    trace_id = roots[0].trace_id if roots else ""
    link = jaeger_link(trace_id)
    return DemoResult(
        answer,
        trace_id,
        gateway,
        calls,
        spans,
        time.monotonic() - started,
        link,
        metrics,
        metrics_off,
        gateway_traced,
    )


def _from_gateway(span: ReceivedSpan) -> bool:
    """A span the traced gateway exported (its resource names it), not one of the agent's."""
    return service(span) == GATEWAY_SERVICE


def _gateway_node(http_span_id: str, spans: list[ReceivedSpan]) -> GatewayNode | None:
    """The gateway's SERVER span under the agent's HTTP span ``http_span_id``, with the CLIENT spans
    under it (its upstream attempts, in the order they started), as the gateway exported them."""
    servers = sorted(
        (
            s
            for s in spans
            if _from_gateway(s) and s.kind == SPAN_KIND_SERVER and s.parent_span_id == http_span_id
        ),
        key=lambda s: s.start_ns,
    )
    if not servers:
        return None
    server = servers[0]
    attempts = sorted(
        (
            s
            for s in spans
            if _from_gateway(s) and s.kind == SPAN_KIND_CLIENT and s.parent_span_id == server.span_id
        ),
        key=lambda s: s.start_ns,
    )

    return GatewayNode(
        service=GATEWAY_SERVICE,
        span_id=server.span_id,
        parent_span_id=server.parent_span_id,
        portkey_span_id=text_attribute(server, h.ATTR_SPAN_ID),
        portkey_trace_id=text_attribute(server, h.ATTR_TRACE_ID),
        status_code=http_status(server),
        duration_ms=round(server.duration_ms, 2),
        attempts=[
            GatewayAttempt(
                span_id=attempt.span_id,
                upstream=upstream(attempt),
                status_code=http_status(attempt),
                duration_ms=round(attempt.duration_ms, 2),
            )
            for attempt in attempts
        ],
    )


class _SentFromSpan:
    """The headers a call carried, rebuilt from its span when no hop could record them, and the
    echo the HTTP instrumentation captured from the gateway's response (None: none captured).

    The rebuilt headers are what the span says, so they prove nothing about what the gateway
    received; only the captured echo is the gateway's own word."""

    def __init__(self, span: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> None:
        caller = by_id.get(span.parent_span_id)
        self.headers = {
            h.TRACE_ID: span.trace_id,
            h.PARENT_SPAN_ID: span.span_id,
            h.SPAN_ID: str(span.attributes.get(h.ATTR_SPAN_ID, "")),
            h.SPAN_NAME: caller.name if caller else "",
        }
        captured = span.attributes.get(CAPTURED_ECHO_ATTRIBUTE)
        if isinstance(captured, (list, tuple)):
            captured = ", ".join(str(value) for value in captured)
        self.captured_answer = {h.TRACE_ID: captured} if isinstance(captured, str) else None


_SHOWN = (h.TRACE_ID, h.PARENT_SPAN_ID, h.SPAN_ID, h.SPAN_NAME, h.METADATA)


def render(result: DemoResult) -> None:
    """Print the answer and the span tree; under each gateway call, both worlds' ids side by side."""
    from rich.console import Console

    console = Console(highlight=False)
    console.print(f"[bold]Answer:[/bold] {result.answer}")
    print_tree(_tree(result), console)
    for value in sorted({call.sent[h.METADATA] for call in result.calls if h.METADATA in call.sent}):
        console.print(f"x-portkey-metadata sent: {value}")
    console.print(_summary(result))
    if result.delivery is not None and not result.delivery.failed:
        console.print(result.delivery.line())
    if result.jaeger is not None:
        console.print(printable(result.jaeger.line()), soft_wrap=True, markup=False)
    console.print(_metrics_line(result))


def _tree(result: DemoResult) -> Node:
    """The spans as the demo saw them: under each call's HTTP span, what the gateway received, the
    gateway's own node (when it is traced), and what it answered."""
    calls = {call.http_span_id: (n, call) for n, call in enumerate(result.calls, 1)}
    traced = f", traced as service {GATEWAY_SERVICE!r}" if result.gateway_traced else ""
    root = Node(
        [(f"OTel trace {result.trace_id}", "bold"), ("  ", ""), (f"via the {result.gateway}{traced}", "dim")]
    )

    def label(span: ReceivedSpan, position: int) -> Label:
        """A gateway's node shows the ``portkey.span_id`` it carries, checked against the one the
        hop saw it receive."""
        _, call = calls.get(span.parent_span_id, (0, None))
        received = call.sent.get(h.SPAN_ID, "") if call is not None and call.request_recorded else None
        return span_label(span, position, _from_gateway(span), received)

    def before(span: ReceivedSpan, node: Node) -> None:
        n, call = calls.get(span.span_id, (0, None))
        if call is not None:
            received = "received" if call.request_recorded else "sent (as its span says; not recorded)"
            node.add(
                (f"gateway call {n} {received}", "cyan"),
                f"  trace {call.sent.get(h.TRACE_ID)}  parent {call.sent.get(h.PARENT_SPAN_ID)}  "
                f"span {call.sent.get(h.SPAN_ID)}  name {call.sent.get(h.SPAN_NAME)!r}",
            )

    def after(span: ReceivedSpan, node: Node) -> None:
        # Under a call's HTTP span: the gateway's own node, between what it received and answered.
        n, call = calls.get(span.span_id, (0, None))
        if call is not None:
            if result.gateway_traced and call.gateway_node is None:
                node.add(("the gateway exported no span for this call", "yellow"))
            node.add((f"gateway call {n} answered", "cyan"), "  ", *_answer_line(call), "  ", *_mark(call))

    add_spans(root, result.spans, label, before, after)
    return root


def _answer_line(call: LlmCall) -> Label:
    """What the gateway answered, from its recorded response headers; never from span attributes."""
    answer = call.gateway_answer
    if answer is None:
        return [("not recorded (no recording hop in front of this gateway)", "yellow")]
    echoed = call.echoed or "(none)"
    if not call.request_recorded:  # only the echo was captured, by the HTTP instrumentation
        return [(f"trace {echoed}", "")]
    cache, retries = answer.get(h.CACHE_STATUS), answer.get(h.RETRY_ATTEMPT_COUNT)
    return [(f"trace {echoed}  cache {cache}  retries {retries}  provider {answer.get(h.PROVIDER)}", "")]


def _mark(call: LlmCall) -> Label:
    verdict = call.correlated
    if verdict is None:
        return [("not verified", "yellow")]
    if not verdict:
        return [("ids differ", "red")]
    if not call.request_recorded:
        return [("trace id echoed", "green"), (" ", ""), ("(parent and name not verified)", "yellow")]
    return [("ids equal", "green")]


def _summary(result: DemoResult) -> str:
    """The closing line: it claims an echo only for the calls whose recorded answer shows one."""
    total = len(result.calls)
    correlated = sum(call.correlated is True for call in result.calls)
    unverified = sum(call.correlated is None for call in result.calls)
    line = (
        f"{correlated} of {total} LLM calls carry OTel trace [bold]{result.trace_id}[/bold] "
        f"into Portkey, which echoed it back."
    )
    differ = total - correlated - unverified
    if differ:
        line += f" {differ} not: what the gateway received or answered does not match the OTel ids."
    if unverified:
        line += (
            f" {unverified} not verified: what the {result.gateway} answered was not recorded "
            "(no recording hop in front of it), so only what the spans say was sent is shown."
        )
    return f"{line} ({result.seconds:.1f} s)"


def _metrics_line(result: DemoResult) -> str:
    """The bridge's metrics as the agent exported them: the demo's last line."""
    head = "portkey.gateway.* metrics exported:"
    if result.metrics is not None:
        return f"{head} {result.metrics.text()}"
    if result.metrics_off:
        return f"{head} none ({ev.OTEL_PORTKEY_METRICS}=false)"
    return f"{head} none"
