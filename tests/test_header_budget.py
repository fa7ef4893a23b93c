"""The bridge never turns a working call into a failing one: its headers stay within a budget.

Through the real OSS gateway, whose Node server answers 431 past 16 KB of request headers.
"""

import json
import logging

import openai
import pytest

from otel_portkey import PortkeyInstrumentor, portkey_metadata
from otel_portkey._contract.metadata import MAX_HEADER_BYTES
from otel_portkey.testing import route_headers

pytestmark = pytest.mark.integration

# 64 entries, 60-character keys, 128-character values: 12.7 KB as x-portkey-metadata, and the
# propagator's baggage holds 8 KB of them (its own cap).
BIG = {f"entry-{i:02d}-" + "k" * 51: f"{i:02d}" + "v" * 126 for i in range(64)}


def ask(hop, model):
    client = openai.OpenAI(
        base_url=f"{hop.url}/v1", api_key="sk-test", default_headers=route_headers(model.base_url)
    )
    return client.with_options(max_retries=0).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "big"}]
    )


def test_without_the_bridge_the_big_metadata_call_works(hop, model):
    """The baseline: the same call, with OTel but without the bridge, is accepted."""
    from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor

    HTTPX2ClientInstrumentor().instrument()
    with portkey_metadata(BIG):
        assert ask(hop, model).choices[0].message.content == "echo: big"
    sent = hop.requests[-1].headers
    assert len(sent["baggage"]) > 8000, "the propagator sends its 8 KB of baggage"


def test_big_context_metadata_still_reaches_the_gateway_with_the_ids_and_its_most_specific_entries(
    hop, model, spans, caplog
):
    PortkeyInstrumentor().instrument(gateway_urls=[hop.url])
    with caplog.at_level(logging.WARNING), portkey_metadata(BIG):
        completion = ask(hop, model)
    assert completion.choices[0].message.content == "echo: big"
    (received,) = hop.requests
    assert received.status == 200, "the gateway accepted the request"
    (span,) = spans.http()
    assert received.headers["x-portkey-trace-id"] == format(span.context.trace_id, "032x")
    assert received.headers["x-portkey-parent-span-id"] == format(span.context.span_id, "016x")
    header = received.headers["x-portkey-metadata"]
    assert len(header) <= MAX_HEADER_BYTES
    sent = json.loads(header)
    big_keys = [key for key in sent if key in BIG]
    assert big_keys == list(BIG)[: len(big_keys)], "the first (most specific) entries are the ones kept"
    assert len(big_keys) >= 20
    assert "baggage" not in received.headers
    added = sum(len(k) + len(v) for k, v in received.headers.items() if k.startswith("x-portkey-"))
    assert added < 5 * 1024
    warnings = [r.getMessage() for r in caplog.records if "header budget" in r.getMessage()]
    assert len(warnings) == 1, "one warning naming what was left out"
    assert f"{64 - len(big_keys)} least specific entries were not sent" in warnings[0]
