"""Sentinel secrets in every place a key travels; none may reach a span, an export or a log line.

Scanned: every exported span (name, attributes, events, links, resource, status) and every log
record of ``otel_portkey`` at DEBUG, in-process through the real gateway and in a child process
running the seed example under ``opentelemetry-instrument``.
"""

import asyncio
import json
import logging

import openai
import pytest
from opentelemetry import trace
from portkey_ai import Portkey

from otel_portkey import PortkeyInstrumentor, PortkeySpanExporter, record_feedback
from otel_portkey._otel import bridge as bridge_module
from otel_portkey._otel import diagnostics
from otel_portkey.testing import OtlpReceiver, route_headers

from instrumented import otel_env, run_instrumented

pytestmark = pytest.mark.integration

SECRETS = {
    "portkey": "pk-SENTINEL-portkey-api-key-41",
    "authorization": "sk-SENTINEL-provider-key-42",
    "virtual": "vk-SENTINEL-virtual-key-43",
    "config": "sk-SENTINEL-inside-config-44",
    "exporter": "pk-SENTINEL-exporter-key-45",
}


def leaks(text):
    return [name for name, secret in SECRETS.items() if secret in text or secret.split("-", 2)[-1] in text]


def span_text(span):
    parts = [
        span.name,
        json.dumps(dict(span.attributes or {}), default=str),
        json.dumps(dict(span.resource.attributes), default=str),
    ]
    parts += [event.name + json.dumps(dict(event.attributes or {}), default=str) for event in span.events]
    parts += [json.dumps(dict(link.attributes or {}), default=str) for link in span.links]
    parts.append(str(span.status.description))
    return " ".join(parts)


@pytest.fixture
def debug_logs(caplog):
    caplog.set_level(logging.DEBUG, logger="otel_portkey")
    return caplog


def secret_headers(model):
    config = {
        "provider": "openai",
        "api_key": SECRETS["config"],
        "retry": {"attempts": 2, "on_status_codes": [429]},
    }
    return {
        **route_headers(model.base_url),
        "x-portkey-api-key": SECRETS["portkey"],
        "x-portkey-virtual-key": SECRETS["virtual"],
        "x-portkey-config": json.dumps(config),
    }


def test_no_secret_in_spans_exports_or_logs(oss_gateway, model, spans, debug_logs, monkeypatch):
    PortkeyInstrumentor().instrument(gateway_urls=[oss_gateway.url, "http://127.0.0.1:9"])
    headers = secret_headers(model)
    client = openai.OpenAI(
        base_url=oss_gateway.base_url,
        api_key=SECRETS["authorization"],
        default_headers=headers,
        max_retries=0,
    )
    tracer = trace.get_tracer("secrets")
    with tracer.start_as_current_span("request"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        model.fail_next(1, 429)  # a retried call
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(
                model="gpt-4o", stream=True, messages=[{"role": "user", "content": "s"}]
            )
            if c.choices
        )

        async def async_call():
            async with openai.AsyncOpenAI(
                base_url=oss_gateway.base_url, api_key=SECRETS["authorization"], default_headers=headers
            ) as c:
                await c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "a"}])

        asyncio.run(async_call())
        Portkey(
            base_url=oss_gateway.base_url,
            api_key=SECRETS["portkey"],
            virtual_key=SECRETS["virtual"],
            custom_host=model.base_url,
            provider="openai",
            Authorization=f"Bearer {SECRETS['authorization']}",
        ).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "p"}])
        with pytest.raises(openai.APIConnectionError):  # a failing call: the gateway is not there
            openai.OpenAI(
                base_url="http://127.0.0.1:9/v1",
                api_key=SECRETS["authorization"],
                default_headers=headers,
                max_retries=0,
            ).chat.completions.create(model="gpt-4o", messages=[])
        monkeypatch.delenv("PORTKEY_API_KEY", raising=False)
        with pytest.raises(ValueError, match="PORTKEY_API_KEY"):
            record_feedback(1)
        monkeypatch.setattr(
            bridge_module, "new_span_id", lambda: (_ for _ in ()).throw(ValueError(SECRETS["portkey"]))
        )
        monkeypatch.setattr(diagnostics, "_reported", set())
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "bridge failing"}]
        )
    with OtlpReceiver() as portkey_endpoint:
        exporter = PortkeySpanExporter(endpoint=portkey_endpoint.endpoint, api_key=SECRETS["exporter"])
        assert exporter.export(spans.all()).name == "SUCCESS"
        assert SECRETS["exporter"] not in repr(exporter)
        received = portkey_endpoint.spans
    assert len(spans.all()) >= 8
    assert len(received) == len(spans.all())
    for span in spans.all():
        assert leaks(span_text(span)) == [], span.name
    for span in received:
        assert leaks(json.dumps([span.name, span.attributes, span.resource], default=str)) == []
    assert any("adding Portkey headers failed" in r.getMessage() for r in debug_logs.records)
    for record in debug_logs.records:
        assert leaks(record.getMessage()) == [], record.getMessage()


def test_no_secret_leaves_the_seed_example(oss_gateway, model):
    with OtlpReceiver() as receiver:
        env = otel_env(
            receiver.endpoint,
            PORTKEY_GATEWAY_URL=oss_gateway.base_url,
            PORTKEY_CUSTOM_HOST=model.base_url,
            PORTKEY_API_KEY=SECRETS["portkey"],
            PORTKEY_VIRTUAL_KEY=SECRETS["virtual"],
            OPENAI_API_KEY=SECRETS["authorization"],
            OTEL_LOG_LEVEL="debug",
        )
        result = run_instrumented("examples/langchain_agent.py", env)
        assert result.returncode == 0, result.stderr[-2000:]
        spans = receiver.wait_for(lambda s: any(x.name == "seed agent run" for x in s))
    assert len([s for s in spans if "portkey.span_id" in s.attributes]) == 4
    assert leaks(json.dumps([[s.name, s.attributes, s.resource] for s in spans], default=str)) == []
    assert leaks(result.stderr + result.stdout) == []
