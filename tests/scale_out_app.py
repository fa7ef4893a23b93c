"""One replica of the seed agent for the scale-out proof (tests/test_scale_out.py), run as a child process.

    python tests/scale_out_app.py --otlp URL --gateway URL --instance N --kinds plain,retry,fallback,...

Each entry of ``--kinds`` is one run of the seed agent (the question of ``agent_script``): a root span
``seed agent run``; per model turn a ``chat gpt-4o`` span around a real HTTP call through the OSS
Portkey gateway, bridged by ``PortkeyInstrumentor`` (the httpx instrumentation's ``POST`` span carries
what the gateway answered); per tool call an ``execute_tool`` span, the tool computed for real. Four
turns and three tools: 12 spans. The provider behind the gateway is a scripted model this process
starts (so that the faults it queues hit its own calls only). In one turn of a ``retry`` run the model
answers 429 once and the call's ``x-portkey-config`` asks the gateway to retry; in one turn of a
``fallback`` run the first target answers 500 and the gateway falls back to the second.

Spans go to ``--otlp`` over OTLP/HTTP from a batch span processor. ``--flush-each-run`` exports each run
whole when it ends (one export per trace); otherwise spans leave every ``--schedule-delay-ms``, so a
run's spans are split over several exports, mixed with other runs'.

For each run, one JSON line on stdout once its spans were handed to the exporter:
``{"index", "kind", "trace_id", "span_ids", "answer"}`` (ids as lowercase hex).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import httpx
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_portkey import PortkeyInstrumentor
from otel_portkey._peers.agent_script import ANSWER, QUESTION
from otel_portkey.testing import ScriptedModelServer, route_headers

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "multiply",
            "description": "Multiply two integers together.",
            "parameters": {
                "type": "object",
                "properties": {"first_int": {"type": "integer"}, "second_int": {"type": "integer"}},
                "required": ["first_int", "second_int"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "exponentiate",
            "description": "Exponentiate the base to the exponent power.",
            "parameters": {
                "type": "object",
                "properties": {"base": {"type": "integer"}, "exponent": {"type": "integer"}},
                "required": ["base", "exponent"],
            },
        },
    },
]


def multiply(first_int: int, second_int: int) -> int:
    return first_int * second_int


def exponentiate(base: int, exponent: int) -> int:
    return int(base**exponent)


TOOL_FUNCTIONS: dict[str, Callable[..., int]] = {"multiply": multiply, "exponentiate": exponentiate}
RETRY_CONFIG = json.dumps({"retry": {"attempts": 2, "on_status_codes": [429]}})


class SentSpans(SpanProcessor):
    """The ids of every span this process ended, by trace: what it sent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_trace: dict[str, list[str]] = defaultdict(list)

    def on_end(self, span: ReadableSpan) -> None:
        context = span.get_span_context()
        if context is None:
            return
        with self._lock:
            self.by_trace[format(context.trace_id, "032x")].append(format(context.span_id, "016x"))

    def take(self, trace_id: str) -> list[str]:
        with self._lock:
            return self.by_trace.pop(trace_id, [])


def call_headers(kind: str, turn: int, special_turn: int, model: ScriptedModelServer) -> dict[str, str]:
    """The gateway headers of one model turn; queues the model's fault for the special turn."""
    headers = {**route_headers(model.base_url), "authorization": "Bearer sk-scale-out"}
    if turn != special_turn or kind == "plain":
        return headers
    if kind == "retry":  # 429 once, retried by the gateway: x-portkey-retry-attempt-count 1
        model.fail_next(1, status=429)
        return {**headers, "x-portkey-config": RETRY_CONFIG}
    if kind == "fallback":  # the first target answers 500: x-portkey-last-used-option-index config.targets[1]
        model.fail_next(1, status=500)
        target = {"provider": "openai", "custom_host": model.base_url}
        config = {
            "strategy": {"mode": "fallback"},
            "targets": [dict(target, api_key="sk-first"), dict(target, api_key="sk-second")],
        }
        return {"authorization": "Bearer sk-scale-out", "x-portkey-config": json.dumps(config)}
    raise ValueError(f"unknown kind {kind!r}")


def agent_run(
    client: httpx.Client, gateway: str, model: ScriptedModelServer, kind: str, special_turn: int
) -> tuple[str, str]:
    """One run of the seed agent; returns (trace id, final answer)."""
    tracer = trace.get_tracer("scale_out_app")
    with tracer.start_as_current_span("seed agent run") as root:
        messages: list[dict[str, Any]] = [{"role": "user", "content": QUESTION}]
        for turn in range(8):
            with tracer.start_as_current_span(
                "chat gpt-4o",
                kind=trace.SpanKind.CLIENT,
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o",
                },
            ):
                response = client.post(
                    f"{gateway}/v1/chat/completions",
                    headers=call_headers(kind, turn, special_turn, model),
                    json={"model": "gpt-4o", "messages": messages, "tools": TOOLS},
                )
                response.raise_for_status()
            message = response.json()["choices"][0]["message"]
            messages.append(message)
            if not message.get("tool_calls"):
                break
            for call in message["tool_calls"]:
                name = call["function"]["name"]
                with tracer.start_as_current_span(
                    f"execute_tool {name}",
                    attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name},
                ):
                    result = TOOL_FUNCTIONS[name](**json.loads(call["function"]["arguments"]))
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": str(result)})
        trace_id = format(root.get_span_context().trace_id, "032x")
    return trace_id, str(messages[-1].get("content"))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--otlp", required=True, help="OTLP/HTTP base URL (the load balancer)")
    parser.add_argument("--gateway", required=True, help="the OSS Portkey gateway's root URL")
    parser.add_argument("--service", default="seed-agent")
    parser.add_argument("--instance", required=True)
    parser.add_argument("--first-index", type=int, default=0, help="index of the first run (labels)")
    parser.add_argument("--kinds", required=True, help="comma-separated plain|retry|fallback, one per run")
    parser.add_argument("--flush-each-run", action="store_true")
    parser.add_argument("--schedule-delay-ms", type=int, default=200)
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between runs")
    args = parser.parse_args()

    resource = Resource.create({"service.name": args.service, "service.instance.id": args.instance})
    provider = TracerProvider(resource=resource)
    sent = SentSpans()
    provider.add_span_processor(sent)
    exporter = OTLPSpanExporter(endpoint=f"{args.otlp}/v1/traces", timeout=30)
    delay = 3_600_000 if args.flush_each_run else args.schedule_delay_ms
    provider.add_span_processor(
        BatchSpanProcessor(exporter, schedule_delay_millis=delay, max_queue_size=8192)
    )
    trace.set_tracer_provider(provider)
    PortkeyInstrumentor().instrument(gateway_urls=[args.gateway])  # then the client instrumentation,
    if (
        not HTTPXClientInstrumentor().is_instrumented_by_opentelemetry
    ):  # as opentelemetry-instrument orders them
        HTTPXClientInstrumentor().instrument()

    with ScriptedModelServer() as model, httpx.Client(timeout=30) as client:
        for offset, kind in enumerate(args.kinds.split(",")):
            index = args.first_index + offset
            trace_id, answer = agent_run(client, args.gateway, model, kind, special_turn=index % 4)
            if args.flush_each_run:
                provider.force_flush()
            line = {
                "index": index,
                "kind": kind,
                "trace_id": trace_id,
                "span_ids": sent.take(trace_id),
                "answer": answer,
                "expected_answer": f"{ANSWER:,}" in answer,
            }
            print(json.dumps(line), flush=True)
            if args.pause:
                time.sleep(args.pause)
    provider.force_flush()
    provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
