"""Metadata, trace-id policy, span names and back-links on real calls.

In-process cases use the scripted model as the gateway; the real-gateway cases put a recording
hop in front of the OSS gateway to see the merged header exactly as the gateway received it.
"""

import json

import openai
import pytest
from opentelemetry import trace
from portkey_ai import createHeaders

from otel_portkey import PortkeyInstrumentor, portkey_metadata
from otel_portkey._contract.ids import format_trace_id
from otel_portkey.testing import route_headers

from clients import post
from conftest import SERVICE_NAME

tracer = trace.get_tracer("test")


def chat_url(model):
    return f"http://127.0.0.1:{model.port}/v1/chat/completions"


def instrument(model, **kwargs):
    PortkeyInstrumentor().instrument(gateway_urls=[f"http://127.0.0.1:{model.port}"], **kwargs)


def gateway_client(hop, model, **create_headers):
    headers = {**route_headers(model.base_url), **createHeaders(**create_headers)}
    return openai.OpenAI(base_url=f"{hop.url}/v1", api_key="sk-test", default_headers=headers)


@pytest.mark.integration
def test_context_metadata_merges_with_the_callers_header_at_the_gateway(hop, model, spans, monkeypatch):
    monkeypatch.setenv("OTEL_PORTKEY_METADATA", "team=ml,_environment=test")
    PortkeyInstrumentor().instrument(gateway_urls=[hop.url])
    client = gateway_client(hop, model, metadata={"_user": "caller-user", "session": "caller-session"})
    with (
        portkey_metadata(session="context-session", step="plan"),
        tracer.start_as_current_span("chat gpt-4o"),
    ):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    received = json.loads(hop.requests[0].headers["x-portkey-metadata"])
    assert received == {
        "_user": "caller-user",
        "session": "caller-session",  # the caller's key wins
        "step": "plan",
        "team": "ml",
        "_environment": "test",
        "service": SERVICE_NAME,
    }
    assert hop.requests[0].headers["x-portkey-span-name"] == "chat gpt-4o"
    (http_span,) = spans.http()
    sent = {
        k.removeprefix("portkey.metadata."): v
        for k, v in http_span.attributes.items()
        if k.startswith("portkey.metadata.")
    }
    assert sent == received
    (parent,) = spans.named("chat gpt-4o")
    assert (
        parent.attributes["portkey.metadata.session"] == "context-session"
    )  # the processor's copy of the context


@pytest.mark.integration
@pytest.mark.parametrize("policy", ["respect", "override"])
def test_trace_id_policy_with_a_callers_own_trace_id(hop, model, spans, policy):
    PortkeyInstrumentor().instrument(gateway_urls=[hop.url], trace_id_policy=policy)
    client = gateway_client(hop, model, trace_id="seed-trace-42")
    with tracer.start_as_current_span("run") as run:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    otel_trace_id = format_trace_id(run.get_span_context().trace_id)
    expected = "seed-trace-42" if policy == "respect" else otel_trace_id
    assert hop.requests[0].headers["x-portkey-trace-id"] == expected
    assert hop.requests[0].response_headers["x-portkey-trace-id"] == expected, "the gateway echoed it"
    (http_span,) = spans.http()
    assert http_span.attributes["portkey.trace_id"] == expected


def test_policy_from_the_environment(model, spans, monkeypatch):
    monkeypatch.setenv("OTEL_PORTKEY_TRACE_ID_POLICY", "override")
    instrument(model)
    post("httpx", "sync", chat_url(model), headers={"x-portkey-trace-id": "mine"})
    assert model.received[-1].headers["x-portkey-trace-id"] != "mine"


def test_an_invalid_caller_metadata_header_is_sent_untouched(model, spans, caplog):
    instrument(model)
    with portkey_metadata(session="s1"):
        post("httpx2", "sync", chat_url(model), headers={"x-portkey-metadata": "{not json"})
        post("httpx2", "sync", chat_url(model), headers={"x-portkey-metadata": "[1, 2]"})
    assert [r.headers["x-portkey-metadata"] for r in model.received] == ["{not json", "[1, 2]"]
    assert caplog.text.count("not a JSON object") == 1


def test_no_metadata_anywhere_means_no_header_and_no_attribute(model, spans):
    instrument(model)
    post("httpx", "sync", chat_url(model))
    # the resource's service name is always known, so only that is sent
    assert json.loads(model.received[-1].headers["x-portkey-metadata"]) == {"service": SERVICE_NAME}
    (http_span,) = spans.http()
    assert [k for k in http_span.attributes if k.startswith("portkey.metadata.")] == [
        "portkey.metadata.service"
    ]


def test_jaeger_back_link_and_trace_url(model, spans):
    instrument(
        model,
        jaeger_ui_url="http://localhost:16686/",
        trace_url_template="https://app.portkey.ai/logs?trace_id={trace_id}",
    )
    with tracer.start_as_current_span("run") as run:
        post("httpx", "async", chat_url(model))
    trace_id = format_trace_id(run.get_span_context().trace_id)
    metadata = json.loads(model.received[-1].headers["x-portkey-metadata"])
    assert metadata["jaeger_trace"] == f"http://localhost:16686/trace/{trace_id}"
    (http_span,) = spans.http()
    assert http_span.attributes["portkey.trace.url"] == f"https://app.portkey.ai/logs?trace_id={trace_id}"


def test_a_jaeger_link_longer_than_128_characters_is_not_sent(model, spans):
    instrument(model, jaeger_ui_url="http://jaeger.example.test/" + "p" * 100)
    post("httpx", "sync", chat_url(model))
    assert "jaeger_trace" not in json.loads(model.received[-1].headers["x-portkey-metadata"])
