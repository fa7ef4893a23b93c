"""An app for tests/test_monitoring.py, run under ``opentelemetry-instrument``: real openai calls
through a Portkey gateway (``GATEWAY``), each in a trace of its own. Plain calls, calls the
gateway retries, calls it falls back on, a streamed call, and one call in a trace an upstream
caller marked unsampled. Prints one JSON line per call: its kind and trace id."""

from __future__ import annotations

import json
import os

import openai
from opentelemetry import context, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

GATEWAY = os.environ["GATEWAY"]
OK, RETRYING, FAILING = os.environ["MODEL_OK"], os.environ["MODEL_RETRYING"], os.environ["MODEL_FAILING"]
MESSAGES = [{"role": "user", "content": "hi"}]
tracer = trace.get_tracer("monitoring-app")


def route(host: str) -> dict[str, str]:
    return {"x-portkey-provider": "openai", "x-portkey-custom-host": host}


RETRY = {
    "x-portkey-config": json.dumps({"retry": {"attempts": 2, "on_status_codes": [429]}}),
    **route(RETRYING),
}
FALLBACK = {
    "x-portkey-config": json.dumps(
        {
            "strategy": {"mode": "fallback"},
            "targets": [
                {"provider": "openai", "custom_host": FAILING, "api_key": "sk-first"},
                {"provider": "openai", "custom_host": OK, "api_key": "sk-second"},
            ],
        }
    )
}


def client(headers: dict[str, str]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{GATEWAY}/v1", api_key="sk-test", default_headers=headers, max_retries=0)


def call(kind: str, headers: dict[str, str], stream: bool = False) -> None:
    with tracer.start_as_current_span(f"request {kind}") as root:
        if stream:
            for _ in client(headers).chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True):  # type: ignore[arg-type]
                pass
        else:
            client(headers).chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    print(
        json.dumps({"kind": kind, "trace_id": format(root.get_span_context().trace_id, "032x")}), flush=True
    )


def main() -> None:
    for _ in range(3):
        call("plain", route(OK))
    for _ in range(2):
        call("retry", RETRY)
    for _ in range(2):
        call("fallback", FALLBACK)
    call("stream", route(OK), stream=True)
    # An upstream caller sent ``traceparent: 00-...-00``: the trace is not sampled.
    unsampled = SpanContext(0x5EED0000000000000000000000000001, 0x5EED000000000001, True, TraceFlags(0))
    token = context.attach(trace.set_span_in_context(NonRecordingSpan(unsampled)))
    try:
        with tracer.start_as_current_span("request unsampled") as root:
            client(route(OK)).chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
        print(json.dumps({"kind": "unsampled", "trace_id": format(root.get_span_context().trace_id, "032x")}))
    finally:
        context.detach(token)


if __name__ == "__main__":
    main()
