"""``otel-portkey demo``: the seed agent through a real Portkey gateway, seen from both worlds.

Offline by default: a scripted model stands in for the LLM provider, the OSS Portkey gateway
runs on loopback, a recording hop in front of it keeps what the gateway received, and an OTLP
receiver collects what OpenTelemetry exported. The agent runs in a child process under
``opentelemetry-instrument``, exactly as a user's app would.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import headers as h
from .testing.gateway import GATEWAY_VERSION, OssGateway
from .testing.model_server import ScriptedModelServer
from .testing.otlp_receiver import OtlpReceiver, ReceivedSpan
from .testing.recording_proxy import RecordingProxy

AGENT_SCRIPT = "langchain_agent.py"


class DemoError(RuntimeError):
    """A demo failure, with one sentence for the user."""


@dataclass
class LlmCall:
    """One gateway call: what the gateway received and what its OTel span says."""

    sent: dict[str, str]
    http_span_id: str
    otel_trace_id: str
    answered: dict[str, Any]
    caller: str

    @property
    def correlated(self) -> bool:
        return (
            self.sent.get(h.TRACE_ID) == self.otel_trace_id == self.answered.get(h.ATTR_TRACE_ID)
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

    def as_json(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "trace_id": self.trace_id,
            "gateway": self.gateway,
            "seconds": round(self.seconds, 3),
            "all_correlated": all(call.correlated for call in self.calls),
            "calls": [dict(asdict(call), correlated=call.correlated) for call in self.calls],
            "spans": [
                {
                    "name": s.name,
                    "span_id": s.span_id,
                    "parent_span_id": s.parent_span_id,
                    "duration_ms": round(s.duration_ms, 2),
                }
                for s in self.spans
            ],
        }


def agent_script() -> Path:
    """The seed agent example: packaged with the wheel, or the repository's ``examples/``."""
    packaged = Path(__file__).with_name("_examples") / AGENT_SCRIPT
    if packaged.exists():
        return packaged
    in_repo = Path(__file__).resolve().parents[2] / "examples" / AGENT_SCRIPT
    if in_repo.exists():
        return in_repo
    raise DemoError(f"the demo agent ({AGENT_SCRIPT}) is missing from this installation")


@contextlib.contextmanager
def _peers() -> Iterator[tuple[ScriptedModelServer, OssGateway, RecordingProxy, OtlpReceiver]]:
    with contextlib.ExitStack() as stack:
        model = stack.enter_context(ScriptedModelServer())
        gateway = stack.enter_context(OssGateway())
        hop = stack.enter_context(RecordingProxy(gateway.url))
        receiver = stack.enter_context(OtlpReceiver())
        yield model, gateway, hop, receiver


def run_demo(timeout: float = 180.0) -> DemoResult:
    """Run the seed agent once, offline, and collect both views of its trace."""
    started = time.monotonic()
    with _peers() as (model, _gateway, hop, receiver):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PORTKEY_"))}
        env.update(
            OTEL_SERVICE_NAME="otel-portkey-demo",
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_BSP_SCHEDULE_DELAY="100",
            PORTKEY_GATEWAY_URL=f"{hop.url}/v1",
            PORTKEY_CUSTOM_HOST=model.base_url,
        )
        instrument = Path(sys.executable).with_name("opentelemetry-instrument")
        process = subprocess.run(
            [str(instrument), sys.executable, str(agent_script())],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if process.returncode != 0:
            last = (process.stderr.strip().splitlines() or ["no output"])[-1]
            raise DemoError(f"the agent failed: {last}")
        spans = receiver.wait_for(lambda s: any(not x.parent_span_id for x in s), timeout=10)
        received = list(hop.requests)
    return _result(process.stdout.strip().splitlines()[-1], spans, received, started)


def _result(answer: str, spans: list[ReceivedSpan], received: list[Any], started: float) -> DemoResult:
    by_id = {span.span_id: span for span in spans}
    calls = []
    for request in received:
        sent = {k: v for k, v in request.headers.items() if k.startswith(h.PORTKEY_PREFIX) and k in _SHOWN}
        http_span = by_id.get(sent.get(h.PARENT_SPAN_ID, ""))
        caller = by_id.get(http_span.parent_span_id) if http_span else None
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
            )
        )
    roots = [s for s in spans if not s.parent_span_id]
    trace_id = roots[0].trace_id if roots else ""
    return DemoResult(
        answer, trace_id, f"OSS Portkey gateway {GATEWAY_VERSION}", calls, spans, time.monotonic() - started
    )


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

    def add(node: Tree, span: ReceivedSpan) -> None:
        branch = node.add(f"{span.name}  [dim]{span.duration_ms:.1f} ms  span {span.span_id}[/dim]")
        if span.span_id in calls:
            n, call = calls[span.span_id]
            mark = "[green]ids equal[/green]" if call.correlated else "[red]ids differ[/red]"
            branch.add(
                f"[cyan]gateway call {n} received[/cyan]  trace {call.sent.get(h.TRACE_ID)}  "
                f"parent {call.sent.get(h.PARENT_SPAN_ID)}  span {call.sent.get(h.SPAN_ID)}  "
                f"name {call.sent.get(h.SPAN_NAME)!r}"
            )
            branch.add(
                f"[cyan]gateway call {n} answered[/cyan]  trace {call.answered.get(h.ATTR_TRACE_ID)}  "
                f"cache {call.answered.get(h.ATTR_CACHE_STATUS)}  "
                f"retries {call.answered.get(h.ATTR_RETRY_ATTEMPT_COUNT)}  "
                f"provider {call.answered.get(h.ATTR_PROVIDER)}  {mark}"
            )
        for child in children.get(span.span_id, []):
            add(branch, child)

    tree = Tree(f"[bold]OTel trace {result.trace_id}[/bold]  [dim]via the {result.gateway}[/dim]")
    for root in children.get("", []):
        add(tree, root)
    console.print(tree)
    for value in sorted({call.sent[h.METADATA] for call in result.calls if h.METADATA in call.sent}):
        console.print(f"x-portkey-metadata sent: {value}")
    correlated = sum(call.correlated for call in result.calls)
    console.print(
        f"{correlated} of {len(result.calls)} LLM calls carry OTel trace [bold]{result.trace_id}[/bold] "
        f"into Portkey, which echoed it back. ({result.seconds:.1f} s)"
    )
