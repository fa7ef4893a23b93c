"""The README's compatibility table is measured, never written by hand.

Every client library is called with the bridge and every OTel HTTP client instrumentation installed
(the scripted model answers as a gateway would, with ``x-portkey-*`` headers); each cell says what
was observed. The test renders the table and requires the README to hold exactly it; after a change,
``OTEL_PORTKEY_UPDATE_README=1 pytest tests/test_compat_table.py`` writes it there.
"""

import os
import time
from functools import partial
from pathlib import Path

import pytest
from opentelemetry import trace

from otel_portkey import PortkeyInstrumentor

from clients_all import CLIENTS, STREAMS
from llm_clients import LLM_CLIENTS

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- compat-table:begin -->", "<!-- compat-table:end -->"
ANSWER = {"x-portkey-trace-id": "echoed", "x-portkey-provider": "openai"}
DELAY = 0.02
tracer = trace.get_tracer("test")


@pytest.fixture
def everything_instrumented(model, request):
    PortkeyInstrumentor().instrument(gateway_urls=[f"http://127.0.0.1:{model.port}"])
    request.getfixturevalue("every_client_instrumented")  # after the bridge, as opentelemetry-instrument


def observe(model, spans, call):
    """(request side, response side) of one non-streamed call, as observed."""
    spans.clear()
    model.clear()
    model.add_response_headers(ANSWER)
    with tracer.start_as_current_span("app"):
        call()
    bridged = spans.http()
    if len(bridged) != 1 or not model.received:
        return False, False
    (span,) = bridged
    sent = model.received[-1].headers
    request_side = sent.get("x-portkey-trace-id") == format(span.context.trace_id, "032x") and sent.get(
        "x-portkey-parent-span-id"
    ) == format(span.context.span_id, "016x")
    response_side = (
        span.attributes.get("portkey.provider") == "openai"
        and span.attributes.get("portkey.trace_id") == "echoed"
    )
    return request_side, response_side


def observe_stream(model, spans, stream):
    """Whether a streamed call's HTTP span stays open until its body is read, as observed: it has
    not ended when the first chunk is in, and it ends after that."""
    spans.clear()
    model.clear()
    model.stream_slowly(DELAY)
    first_chunk_at = []

    def during():
        first_chunk_at.append(time.time_ns())
        return spans.http()

    with tracer.start_as_current_span("app"):
        open_while_streaming, _ = stream(during)
    bridged = spans.http()
    return open_while_streaming == [] and len(bridged) == 1 and bridged[0].end_time > first_chunk_at[0]


def cell(value):
    return {True: "yes", False: "**no**", None: "not measured"}[value]


def test_the_readme_table_is_what_the_clients_do(model, spans, everything_instrumented):
    url = f"http://127.0.0.1:{model.port}/v1/chat/completions"
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-portkey-provider": "openai"}
    rows = []
    for name, (runner, via, streamed) in LLM_CLIENTS.items():
        request_side, response_side = observe(
            model, spans, partial(runner, model.base_url, headers, spans.http)
        )
        stream = None
        if streamed is not None:
            stream = observe_stream(
                model, spans, lambda during, run=streamed: run(model.base_url, headers, during)[::-1]
            )
        rows.append((name, via, request_side, response_side, stream))
    for name, (_, call) in CLIENTS.items():
        request_side, response_side = observe(model, spans, partial(call, url, headers, body))
        streamer = STREAMS.get(name)
        stream = None
        if streamer is not None:
            stream = observe_stream(model, spans, partial(streamer, url, headers, {**body, "stream": True}))
        rows.append((f"{name} (raw)", name.split()[0], request_side, response_side, stream))
    table = "\n".join(
        [
            "| client | its requests go through | request side: ids, metadata "
            "| response side: Portkey's answer | streamed: the span covers the body |",
            "|---|---|---|---|---|",
            *(
                f"| {name} | {via} | {cell(request)} | {cell(response)} | {cell(stream)} |"
                for name, via, request, response, stream in rows
            ),
        ]
    )
    text = README.read_text()
    before, _, rest = text.partition(BEGIN)
    _, _, after = rest.partition(END)
    measured = f"{before}{BEGIN}\n{table}\n{END}{after}"
    if os.environ.get("OTEL_PORTKEY_UPDATE_README") == "1":
        README.write_text(measured)
    assert BEGIN in text, "the README has the table's markers"
    assert END in text
    assert text == measured, f"the README's table is not what was measured:\n{table}"
    assert all(request and response for _, _, request, response, _ in rows), table
