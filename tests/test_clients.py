"""Every OTel HTTP client instrumentation gets the same Portkey headers, through one seam.

requests, urllib, urllib3 and aiohttp are bridged by the propagator as their instrumentation
injects; httpx/httpx2 by their request hooks. Either way the request carries the same ids, metadata
and no baggage, whichever order the instrumentations and the bridge were installed in.
"""

import json

import pytest
from opentelemetry import trace

from otel_portkey import PortkeyInstrumentor, portkey_metadata

from clients_all import CLIENTS, STREAMS
from conftest import SERVICE_NAME

tracer = trace.get_tracer("test")
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(params=list(CLIENTS))
def client(request):
    """(name, instrumentor class, call); conftest's clean-up uninstruments whatever a test turned on."""
    instrumentor_class, call = CLIENTS[request.param]
    return request.param, instrumentor_class, call


def chat_url(model):
    return f"http://127.0.0.1:{model.port}/v1/chat/completions"


@pytest.mark.parametrize("order", ["client first", "bridge first"])
def test_every_client_carries_the_ids_and_metadata(model, spans, client, order):
    name, instrumentor_class, call = client
    bridge = PortkeyInstrumentor()
    if order == "client first":
        instrumentor_class().instrument()
        bridge.instrument(gateway_urls=[f"http://127.0.0.1:{model.port}"])
    else:
        bridge.instrument(gateway_urls=[f"http://127.0.0.1:{model.port}"])
        if not instrumentor_class().is_instrumented_by_opentelemetry:
            instrumentor_class().instrument()
    with (
        tracer.start_as_current_span("chat gpt-4o") as caller,
        portkey_metadata(_user="u1"),
    ):
        assert call(chat_url(model), {"x-portkey-provider": "openai"}, CHAT) == 200
    sent = model.received[-1].headers
    (span,) = [s for s in spans.all() if s.kind == trace.SpanKind.CLIENT]
    assert sent["x-portkey-trace-id"] == format(span.context.trace_id, "032x")
    assert sent["x-portkey-parent-span-id"] == format(span.context.span_id, "016x")
    assert span.parent.span_id == caller.get_span_context().span_id
    assert sent["x-portkey-span-name"] == "chat gpt-4o"
    assert sent["x-portkey-span-id"] == span.attributes["portkey.span_id"]
    assert json.loads(sent["x-portkey-metadata"]) == {"_user": "u1", "service": SERVICE_NAME}
    assert span.attributes["portkey.metadata._user"] == "u1"
    assert "baggage" not in sent, name
    assert sent["traceparent"].split("-")[2] == sent["x-portkey-parent-span-id"]


def test_a_callers_own_trace_id_and_metadata_are_respected_by_every_client(model, spans, client):
    name, instrumentor_class, call = client
    instrumentor_class().instrument()
    PortkeyInstrumentor().instrument(gateway_urls=[f"http://127.0.0.1:{model.port}"])
    own = {"X-Portkey-Trace-Id": "callers-own", "X-Portkey-Metadata": json.dumps({"plan": "pro"})}
    with tracer.start_as_current_span("app"), portkey_metadata(session="s1"):
        assert call(chat_url(model), own, CHAT) == 200
    sent = model.received[-1].headers
    assert sent["x-portkey-trace-id"] == "callers-own", name
    assert json.loads(sent["x-portkey-metadata"]) == {"plan": "pro", "session": "s1", "service": SERVICE_NAME}


def test_other_requests_get_nothing_and_keep_their_baggage(model, spans, client):
    name, instrumentor_class, call = client
    instrumentor_class().instrument()
    PortkeyInstrumentor().instrument(gateway_urls=["http://127.0.0.1:9"])
    with tracer.start_as_current_span("app"), portkey_metadata(_user="u1"):
        assert call(chat_url(model), {}, CHAT) == 200
    sent = model.received[-1].headers
    assert not [h for h in sent if h.startswith("x-portkey-")], name
    assert sent["baggage"] == "portkey.metadata._user=u1"


ANSWER = {
    "x-portkey-trace-id": "echoed-by-the-gateway",
    "x-portkey-provider": "openai",
    "x-portkey-cache-status": "MISS",
    "x-portkey-retry-attempt-count": "2",
    "x-portkey-last-used-option-index": "config.targets[1]",
}


def test_every_client_records_the_gateways_answer(model, spans, client):
    """Instrumented after the bridge (as ``opentelemetry-instrument`` always arranges, see
    test_load_order.py): the gateway's ``x-portkey-*`` answer lands on the HTTP span."""
    name, instrumentor_class, call = client
    PortkeyInstrumentor().instrument(gateway_urls=[f"http://127.0.0.1:{model.port}"])
    if not instrumentor_class().is_instrumented_by_opentelemetry:
        instrumentor_class().instrument()
    model.add_response_headers(ANSWER)
    with tracer.start_as_current_span("app"):
        assert call(chat_url(model), {"x-portkey-provider": "openai"}, CHAT) == 200
    (span,) = [s for s in spans.all() if s.kind == trace.SpanKind.CLIENT]
    assert span.attributes["portkey.trace_id"] == "echoed-by-the-gateway", name
    assert span.attributes["portkey.provider"] == "openai"
    assert span.attributes["portkey.cache.status"] == "MISS"
    assert span.attributes["portkey.retry.attempt_count"] == 2
    assert span.attributes["portkey.last_used_option_index"] == "config.targets[1]"


def test_a_users_own_response_hook_still_runs_first(model, spans):
    import requests
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    PortkeyInstrumentor().instrument(gateway_urls=[f"http://127.0.0.1:{model.port}"])
    seen = []
    RequestsInstrumentor().instrument(
        response_hook=lambda span, request, response: seen.append(response.status_code)
    )
    try:
        model.add_response_headers(ANSWER)
        with tracer.start_as_current_span("app"):
            requests.post(chat_url(model), json=CHAT, timeout=30)
    finally:
        RequestsInstrumentor().uninstrument()
    assert seen == [200]
    (span,) = [s for s in spans.all() if s.kind == trace.SpanKind.CLIENT]
    assert span.attributes["portkey.provider"] == "openai"


def test_a_client_instrumented_by_hand_before_the_bridge_says_its_answers_are_not_read(model, spans, caplog):
    import requests
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    RequestsInstrumentor().instrument()
    try:
        with caplog.at_level("WARNING"):
            PortkeyInstrumentor().instrument(gateway_urls=[f"http://127.0.0.1:{model.port}"])
        model.add_response_headers(ANSWER)
        with tracer.start_as_current_span("app"):
            requests.post(chat_url(model), json=CHAT, timeout=30)
    finally:
        RequestsInstrumentor().uninstrument()
    assert "requests was instrumented before the bridge" in caplog.text
    (span,) = [s for s in spans.all() if s.kind == trace.SpanKind.CLIENT]
    assert "x-portkey-trace-id" in model.received[-1].headers, "the request side works in any order"
    assert "portkey.provider" not in span.attributes


def test_uninstrument_leaves_no_response_hook_working(model, spans):
    import requests
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    PortkeyInstrumentor().instrument(gateway_urls=[f"http://127.0.0.1:{model.port}"])
    RequestsInstrumentor().instrument()
    PortkeyInstrumentor().uninstrument()
    try:
        assert "instrument" not in RequestsInstrumentor.__dict__, "the wrapper is gone"
        model.add_response_headers(ANSWER)
        with tracer.start_as_current_span("app"):
            requests.post(chat_url(model), headers={"x-portkey-provider": "openai"}, json=CHAT, timeout=30)
    finally:
        RequestsInstrumentor().uninstrument()
    (span,) = [s for s in spans.all() if s.kind == trace.SpanKind.CLIENT]
    assert not [k for k in span.attributes if k.startswith("portkey.")]
    assert "x-portkey-trace-id" not in model.received[-1].headers


@pytest.mark.parametrize("name", [name for name in STREAMS if name in CLIENTS])
def test_a_streamed_answer_keeps_the_span_open_until_the_body_is_done(model, spans, name):
    instrumentor_class, _ = CLIENTS[name]
    PortkeyInstrumentor().instrument(gateway_urls=[f"http://127.0.0.1:{model.port}"])
    instrumentor_class().instrument()
    try:
        model.stream_slowly(0.02)
        with tracer.start_as_current_span("app"):
            open_while_streaming, body = STREAMS[name](
                chat_url(model), {"x-portkey-provider": "openai"}, {**CHAT, "stream": True}, spans.http
            )
    finally:
        instrumentor_class().uninstrument()
    assert b"[DONE]" in body
    assert open_while_streaming == [], "the HTTP span is still open while the body streams"
    (span,) = spans.http()
    assert (span.end_time - span.start_time) / 1e9 >= 0.02 * 3, "the span covers the streamed body"


def test_an_unsampled_call_of_every_client_still_carries_the_ids_and_no_baggage(model, spans, client):
    """A non-recording span has no attributes: the client's request hook tells the propagator the
    URL. (An outside caller can make a trace unsampled with ``traceparent: ...-00``.)"""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    name, instrumentor_class, call = client
    provider = TracerProvider(sampler=ALWAYS_OFF)
    PortkeyInstrumentor().instrument(
        tracer_provider=provider, gateway_urls=[f"http://127.0.0.1:{model.port}"]
    )
    if not instrumentor_class().is_instrumented_by_opentelemetry:
        instrumentor_class().instrument(tracer_provider=provider)
    with provider.get_tracer("t").start_as_current_span("dropped") as root, portkey_metadata(_user="u1"):
        assert call(chat_url(model), {}, CHAT) == 200
    sent = model.received[-1].headers
    assert sent["x-portkey-trace-id"] == format(root.get_span_context().trace_id, "032x"), name
    assert sent["traceparent"].split("-")[2] == sent["x-portkey-parent-span-id"]
    assert sent["x-portkey-span-name"] == "POST /v1/chat/completions"
    default_service = provider.resource.attributes["service.name"]  # unknown_service:<executable>
    assert json.loads(sent["x-portkey-metadata"]) == {"_user": "u1", "service": default_service}, "as sampled"
    assert "baggage" not in sent
    assert spans.all() == []


@pytest.mark.parametrize("name", ["requests", "urllib3"])
def test_a_streamed_answer_read_whole_ends_its_span_at_once(model, spans, name):
    """requests without ``stream=True`` (urllib3 with its default preload) has read the body by the
    time the response hook runs: the span ends with the call, not whenever the GC gets to it."""
    instrumentor_class, call = CLIENTS[name]
    PortkeyInstrumentor().instrument(gateway_urls=[f"http://127.0.0.1:{model.port}"])
    instrumentor_class().instrument()
    with tracer.start_as_current_span("app"):
        assert call(chat_url(model), {"x-portkey-provider": "openai"}, {**CHAT, "stream": True}) == 200
        assert len(spans.http()) == 1, "ended before the caller's span did"
