"""``otel-portkey demo``: the seed agent through a real Portkey gateway, seen from both worlds.

Offline by default: a scripted model stands in for the LLM provider, the OSS Portkey gateway
runs on loopback (or, without Node.js, a clearly labelled built-in stand-in), a recording hop in
front of it keeps what the gateway received, and OTLP receivers collect what OpenTelemetry
exported: the spans, and the bridge's metrics (the closing summary is read back from them). The
agent runs in a child process under ``opentelemetry-instrument``, exactly as a user's app would.
The OSS gateway the demo starts runs traced (OpenTelemetry for Node, as ``otel-portkey gateway
--otlp-endpoint`` runs it), exporting to the same receivers: under each ``POST`` of the agent, the
tree shows the gateway's own SERVER span and each upstream attempt, as the gateway exported them.
Every process and server it starts is stopped on the way out, also on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from .. import environment_variables as ev
from .._contract import call as h
from .._peers.loopback import LoopbackHandler, LoopbackServer, LoopbackService
from .._peers.model_server import ScriptedModelServer
from .._peers.oss_gateway import (
    DEFAULT_SERVICE_NAME,
    GATEWAY_VERSION,
    GatewayUnavailable,
    OssGateway,
    node_binary,
)
from .._peers.otlp_receiver import OtlpReceiver, ReceivedSpan, answer, relay
from .._peers.recording_proxy import ForwardedRequest, RecordingProxy
from .._peers.standin_gateway import PortkeyStandIn
from ..config import HOSTED_GATEWAY_URL as HOSTED_GATEWAY
from ..config import PortkeySettings
from .metrics_summary import METRICS_PATH, MetricsSummary, OtlpMetricsReceiver, summarize

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
SPAN_KIND_SERVER: Final = 2  # OTLP's Span.SpanKind
SPAN_KIND_CLIENT: Final = 3
SPAN_KINDS: Final = {
    1: "internal",
    SPAN_KIND_SERVER: "server",
    SPAN_KIND_CLIENT: "client",
    4: "producer",
    5: "consumer",
}


class DemoError(RuntimeError):
    """A demo failure, with one sentence for the user."""


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
            "metrics": self.metrics.as_json() if self.metrics else None,
            "calls": [
                dict(asdict(call), echoed=call.echoed, correlated=call.correlated) for call in self.calls
            ],
            "spans": [
                {
                    "name": s.name,
                    "service": s.resource.get("service.name"),
                    "kind": SPAN_KINDS.get(s.kind, str(s.kind)),
                    "span_id": s.span_id,
                    "parent_span_id": s.parent_span_id,
                    "duration_ms": round(s.duration_ms, 2),
                }
                for s in self.spans
            ],
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


class GatewayExports(LoopbackService):
    """The one OTLP/HTTP base URL the traced gateway exports to: its spans (``/v1/traces``) and its
    metrics (``/v1/metrics``) are relayed to the demo's receivers, which forward them to
    ``--otlp-endpoint`` as they do the agent's."""

    thread_name = "demo-gateway-exports"

    def __init__(self, traces_url: str, metrics_url: str) -> None:
        routes = {"/v1/traces": traces_url, METRICS_PATH: metrics_url}

        class Handler(LoopbackHandler):
            def do_POST(self) -> None:
                body = self.request_body()  # whole or chunked (OpenTelemetry for Node sends chunks)
                if body is None:
                    return
                target = routes.get(self.path)
                if target is None:
                    self.reply(404)
                    return
                if (self.headers.get("content-encoding") or "").lower() == "gzip":
                    body = gzip.decompress(body)
                answer(self, 200 if relay(target, body) else 503, b"")

        self._server = LoopbackServer(Handler)


@dataclass
class _Gateway:
    """The gateway the agent calls: its root URL, its label, and the OSS gateway process when the
    demo started one (traced: its spans and metrics go to the demo's receivers)."""

    url: str
    label: str
    process: OssGateway | None = None


def _start_gateway(
    stack: contextlib.ExitStack, options: DemoOptions, progress: Progress, exports: Callable[[], str]
) -> _Gateway:
    """The gateway the agent will call; ``exports()`` gives the OTLP/HTTP base URL a traced OSS
    gateway exports to."""
    if options.live:
        return _Gateway(HOSTED_GATEWAY, "hosted Portkey gateway")
    if options.gateway_url:
        return _Gateway(
            options.gateway_url.rstrip("/").removesuffix("/v1"), f"gateway at {options.gateway_url}"
        )
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
            OssGateway(port=options.port, otlp_endpoint=exports(), service_name=GATEWAY_SERVICE)
        )
    except GatewayUnavailable as error:
        raise DemoError(f"the OSS Portkey gateway did not start: {error}") from error
    return _Gateway(gateway.url, f"OSS Portkey gateway {GATEWAY_VERSION}", gateway)


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
        # The receivers first: the traced gateway exports to them, and stops (flushing) before them.
        receiver = stack.enter_context(OtlpReceiver(forward_to=options.otlp_endpoint))
        metrics_receiver = stack.enter_context(OtlpMetricsReceiver(forward_to=options.otlp_endpoint))

        def exports() -> str:
            relay_to = GatewayExports(f"{receiver.endpoint}/v1/traces", metrics_receiver.endpoint)
            return stack.enter_context(relay_to).url

        gateway = _start_gateway(stack, options, say, exports)
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
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=metrics_receiver.endpoint,
            OTEL_BSP_SCHEDULE_DELAY="100",
            PORTKEY_GATEWAY_URL=f"{gateway_url}/v1",
        )
        env[CAPTURED_ECHO_ENV] = h.TRACE_ID
        say("Running the seed agent under opentelemetry-instrument")
        instrument = Path(sys.executable).with_name("opentelemetry-instrument")
        command = [str(instrument), sys.executable, str(agent_script())]
        if options.question:
            command.append(options.question)
        process = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if process.returncode != 0:
            last = (process.stderr.strip().splitlines() or ["no output"])[-1]
            raise DemoError(f"the agent failed: {last}")
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
    answer = (process.stdout.strip().splitlines() or [""])[-1]
    return _result(
        answer,
        spans,
        received,
        gateway.label,
        started,
        summarize(points),
        metrics_off=not metrics_on.metrics,
        gateway_traced=gateway.process is not None,
    )


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
    jaeger = os.environ.get(ev.OTEL_PORTKEY_JAEGER_UI_URL, "").rstrip("/")
    link = f"{jaeger}/trace/{trace_id}" if jaeger and trace_id else None
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
    return span.resource.get("service.name") == GATEWAY_SERVICE


def _status(span: ReceivedSpan) -> int | None:
    status = span.attributes.get("http.response.status_code")
    return status if isinstance(status, int) else None


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

    def text(value: object) -> str | None:
        return value if isinstance(value, str) else None

    return GatewayNode(
        service=GATEWAY_SERVICE,
        span_id=server.span_id,
        parent_span_id=server.parent_span_id,
        portkey_span_id=text(server.attributes.get(h.ATTR_SPAN_ID)),
        portkey_trace_id=text(server.attributes.get(h.ATTR_TRACE_ID)),
        status_code=_status(server),
        duration_ms=round(server.duration_ms, 2),
        attempts=[
            GatewayAttempt(
                span_id=attempt.span_id,
                upstream=f"{attempt.attributes.get('server.address', '?')}:"
                f"{attempt.attributes.get('server.port', '?')}",
                status_code=_status(attempt),
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
    from rich.tree import Tree

    console = Console(highlight=False)
    console.print(f"[bold]Answer:[/bold] {result.answer}")
    children: dict[str, list[ReceivedSpan]] = {}
    for span in sorted(result.spans, key=lambda s: s.start_ns):
        children.setdefault(span.parent_span_id, []).append(span)
    calls = {call.http_span_id: (n, call) for n, call in enumerate(result.calls, 1)}

    def add(node: Tree, span: ReceivedSpan, position: int) -> None:
        branch = node.add(_span_line(span, position, calls))
        n, call = calls.get(span.span_id, (0, None))
        if call is not None:
            received = "received" if call.request_recorded else "sent (as its span says; not recorded)"
            branch.add(
                f"[cyan]gateway call {n} {received}[/cyan]  trace {call.sent.get(h.TRACE_ID)}  "
                f"parent {call.sent.get(h.PARENT_SPAN_ID)}  span {call.sent.get(h.SPAN_ID)}  "
                f"name {call.sent.get(h.SPAN_NAME)!r}"
            )
        # Under a call's HTTP span: the gateway's own node, between what it received and answered.
        for child_position, child in enumerate(children.get(span.span_id, []), 1):
            add(branch, child, child_position)
        if call is not None:
            if result.gateway_traced and call.gateway_node is None:
                branch.add("[yellow]the gateway exported no span for this call[/yellow]")
            branch.add(f"[cyan]gateway call {n} answered[/cyan]  {_answer_line(call)}  {_mark(call)}")

    traced = f", traced as service {GATEWAY_SERVICE!r}" if result.gateway_traced else ""
    tree = Tree(f"[bold]OTel trace {result.trace_id}[/bold]  [dim]via the {result.gateway}{traced}[/dim]")
    for position, root in enumerate(children.get("", []), 1):
        add(tree, root, position)
    console.print(tree)
    for value in sorted({call.sent[h.METADATA] for call in result.calls if h.METADATA in call.sent}):
        console.print(f"x-portkey-metadata sent: {value}")
    console.print(_summary(result))
    if result.jaeger_link:
        console.print(f"Jaeger: {result.jaeger_link}")
    console.print(_metrics_line(result))


def _span_line(span: ReceivedSpan, position: int, calls: dict[str, tuple[int, LlmCall]]) -> str:
    """A span of the agent's: its name, duration and id. One the gateway exported: its service, its
    role (its node of a call, or an upstream attempt: the ``position``-th under that node), the HTTP
    status it recorded and, on its node, the ``portkey.span_id`` it received, checked against what
    the hop saw it receive."""
    timing = f"[dim]{span.duration_ms:.1f} ms  span {span.span_id}[/dim]"
    if not _from_gateway(span):
        return f"{span.name}  {timing}"
    status = _status(span)
    http_status = f"http {status}" if status is not None else "no answer"
    if status is None or status >= 400:
        http_status = f"[red]{http_status}[/red]"
    service = f"[magenta]{GATEWAY_SERVICE}[/magenta]"
    if span.kind == SPAN_KIND_CLIENT:
        upstream = f"{span.attributes.get('server.address', '?')}:{span.attributes.get('server.port', '?')}"
        return f"{service} attempt {position} {span.name} {upstream}  {http_status}  {timing}"
    if span.kind != SPAN_KIND_SERVER:
        return f"{service} {span.name}  {timing}"
    line = f"{service} server {span.name}  {http_status}"
    portkey_span_id = span.attributes.get(h.ATTR_SPAN_ID)
    call = calls.get(span.parent_span_id)
    if portkey_span_id is not None:
        line += f"  portkey.span_id {portkey_span_id}"
        if call is not None and call[1].request_recorded:
            same = portkey_span_id == call[1].sent.get(h.SPAN_ID)
            line += "  [green](as received)[/green]" if same else "  [red](not the id received)[/red]"
    return f"{line}  {timing}"


def _answer_line(call: LlmCall) -> str:
    """What the gateway answered, from its recorded response headers; never from span attributes."""
    answer = call.gateway_answer
    if answer is None:
        return "[yellow]not recorded (no recording hop in front of this gateway)[/yellow]"
    echoed = call.echoed or "(none)"
    if not call.request_recorded:  # only the echo was captured, by the HTTP instrumentation
        return f"trace {echoed}"
    return (
        f"trace {echoed}  cache {answer.get(h.CACHE_STATUS)}  retries {answer.get(h.RETRY_ATTEMPT_COUNT)}  "
        f"provider {answer.get(h.PROVIDER)}"
    )


def _mark(call: LlmCall) -> str:
    verdict = call.correlated
    if verdict is None:
        return "[yellow]not verified[/yellow]"
    if not verdict:
        return "[red]ids differ[/red]"
    if not call.request_recorded:
        return "[green]trace id echoed[/green] [yellow](parent and name not verified)[/yellow]"
    return "[green]ids equal[/green]"


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
