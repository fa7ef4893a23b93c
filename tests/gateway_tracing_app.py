"""An app for tests/test_gateway_tracing.py, run under ``opentelemetry-instrument``: real openai calls
through ``otel-portkey gateway`` (``GATEWAY``), each in a trace of its own, each routed by its own
headers: one the gateway retries (its model answers 429 first), one it falls back on (the first
target answers 500; the config holds the targets' API keys), a streamed one, and one to Google,
whose API key goes in the upstream URL's query. Prints one JSON line per call: its kind, trace id
and the status the app got."""

from __future__ import annotations

import json
import os

import openai
from opentelemetry import trace

GATEWAY = os.environ["GATEWAY"]
OK, RETRYING, FAILING = os.environ["MODEL_OK"], os.environ["MODEL_RETRYING"], os.environ["MODEL_FAILING"]
APP_KEY, GOOGLE_KEY = os.environ["APP_KEY"], os.environ["GOOGLE_KEY"]
FIRST_KEY, SECOND_KEY = os.environ["FIRST_TARGET_KEY"], os.environ["SECOND_TARGET_KEY"]
tracer = trace.get_tracer("gateway-tracing-app")


def route(provider: str, host: str) -> dict[str, str]:
    return {"x-portkey-provider": provider, "x-portkey-custom-host": host}


CONFIGS = {
    "retry": {"retry": {"attempts": 2, "on_status_codes": [429]}},
    "fallback": {
        "strategy": {"mode": "fallback"},
        "targets": [
            {"provider": "openai", "custom_host": FAILING, "api_key": FIRST_KEY},
            {"provider": "openai", "custom_host": OK, "api_key": SECOND_KEY},
        ],
    },
}
CALLS = {
    "retry": ({"x-portkey-config": json.dumps(CONFIGS["retry"]), **route("openai", RETRYING)}, APP_KEY),
    "fallback": ({"x-portkey-config": json.dumps(CONFIGS["fallback"])}, APP_KEY),
    "stream": (route("openai", OK), APP_KEY),
    "google": (route("google", OK), GOOGLE_KEY),  # the scripted model has no Gemini route: a 404
}


def call(kind: str) -> None:
    headers, key = CALLS[kind]
    client = openai.OpenAI(base_url=f"{GATEWAY}/v1", api_key=key, default_headers=headers, max_retries=0)
    status = 200
    with tracer.start_as_current_span(f"request {kind}") as root:
        try:
            if kind == "stream":
                words = "one two three four five six seven eight"
                messages = [{"role": "user", "content": words}]
                for _ in client.chat.completions.create(model="gpt-4o", messages=messages, stream=True):  # type: ignore[arg-type]
                    pass
            else:
                messages = [{"role": "user", "content": "hi"}]
                client.chat.completions.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
        except openai.APIStatusError as error:
            status = error.status_code
    trace_id = format(root.get_span_context().trace_id, "032x")
    print(json.dumps({"kind": kind, "trace_id": trace_id, "status": status}), flush=True)


def main() -> None:
    for kind in CALLS:
        call(kind)


if __name__ == "__main__":
    main()
