"""In-process: real httpx/httpx2 clients, sync and async, against the scripted model as a gateway."""

import logging

import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation

from otel_portkey._contract.ids import format_span_id, format_trace_id
from otel_portkey._otel import bridge as bridge_module
from otel_portkey._otel import diagnostics
from otel_portkey._otel import headers as header_layouts

from clients import post

CASES = [(f, m) for f in ("httpx", "httpx2") for m in ("sync", "async")]
PORTKEY = ("x-portkey-trace-id", "x-portkey-parent-span-id", "x-portkey-span-id", "x-portkey-span-name")


def chat_url(model, host="127.0.0.1"):
    return f"http://{host}:{model.port}/v1/chat/completions"


@pytest.mark.parametrize(("flavour", "mode"), CASES)
def test_gateway_bound_request_carries_the_span_ids(bridge, model, spans, flavour, mode):
    response = post(flavour, mode, chat_url(model))
    assert response.status_code == 200
    sent = model.received[-1].headers
    (http_span,) = spans.http()
    assert sent["x-portkey-trace-id"] == format_trace_id(http_span.context.trace_id)
    assert sent["x-portkey-parent-span-id"] == format_span_id(http_span.context.span_id)
    assert len(sent["x-portkey-span-id"]) == 16
    assert sent["x-portkey-span-id"] != sent["x-portkey-parent-span-id"]
    assert sent["x-portkey-span-name"] == "POST /v1/chat/completions"
    assert http_span.attributes["portkey.span_id"] == sent["x-portkey-span-id"]
    assert http_span.attributes["portkey.trace_id"] == sent["x-portkey-trace-id"]


@pytest.mark.parametrize(("flavour", "mode"), CASES)
def test_the_gateway_node_is_named_after_the_calling_span(bridge, model, spans, flavour, mode):
    with trace.get_tracer("test").start_as_current_span("chat gpt-4o") as parent:
        post(flavour, mode, chat_url(model))
    sent = model.received[-1].headers
    assert sent["x-portkey-span-name"] == "chat gpt-4o"
    assert sent["x-portkey-trace-id"] == format_trace_id(parent.get_span_context().trace_id)


@pytest.mark.parametrize(("flavour", "mode"), CASES)
def test_other_requests_get_nothing(bridge, model, spans, flavour, mode):
    post(flavour, mode, chat_url(model, host="localhost"))
    sent = model.received[-1].headers
    assert not [name for name in sent if name.startswith("x-portkey-")]
    assert "traceparent" in sent  # the request is traced, just not bridged
    assert spans.http() == []


@pytest.mark.parametrize(("flavour", "mode"), CASES)
def test_a_portkey_header_makes_any_url_gateway_bound(bridge, model, spans, flavour, mode):
    post(flavour, mode, chat_url(model, host="localhost"), headers={"x-portkey-provider": "openai"})
    assert "x-portkey-trace-id" in model.received[-1].headers


@pytest.mark.parametrize(("flavour", "mode"), CASES)
def test_the_callers_own_trace_id_and_headers_are_kept(bridge, model, spans, flavour, mode):
    mine = {
        "x-portkey-trace-id": "my-own-trace",
        "x-portkey-span-name": "my step",
        "authorization": "Bearer k",
    }
    post(flavour, mode, chat_url(model), headers=mine)
    sent = model.received[-1].headers
    assert sent["x-portkey-trace-id"] == "my-own-trace"
    assert sent["x-portkey-span-name"] == "my step"
    assert sent["authorization"] == "Bearer k"
    (http_span,) = spans.http()
    assert http_span.attributes["portkey.trace_id"] == "my-own-trace"


@pytest.mark.parametrize(("flavour", "mode"), CASES)
def test_the_gateways_answer_lands_on_the_span(bridge, model, spans, flavour, mode):
    model.add_response_headers(
        {
            "x-portkey-trace-id": "echoed-trace",
            "x-portkey-cache-status": "HIT",
            "x-portkey-retry-attempt-count": "2",
            "x-portkey-provider": "openai",
            "x-portkey-last-used-option-index": "config.targets[1]",
        }
    )
    post(flavour, mode, chat_url(model))
    (http_span,) = spans.http()
    attributes = http_span.attributes
    assert attributes["portkey.trace_id"] == "echoed-trace"
    assert attributes["portkey.cache.status"] == "HIT"
    assert attributes["portkey.retry.attempt_count"] == 2
    assert attributes["portkey.provider"] == "openai"
    assert attributes["portkey.last_used_option_index"] == "config.targets[1]"
    assert http_span.status.is_ok


@pytest.mark.parametrize(("flavour", "mode"), CASES)
def test_a_gateway_exception_marks_the_span(bridge, model, spans, flavour, mode):
    model.add_response_headers({"x-portkey-gateway-exception": "true"})
    post(flavour, mode, chat_url(model))
    (http_span,) = spans.http()
    assert http_span.attributes["portkey.gateway.exception"] is True
    assert http_span.status.status_code == trace.StatusCode.ERROR


@pytest.mark.parametrize(("flavour", "mode"), CASES)
def test_a_failing_bridge_never_breaks_the_request(bridge, model, spans, flavour, mode, monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(bridge_module, "new_span_id", broken)
    monkeypatch.setattr(diagnostics, "_reported", set())
    with caplog.at_level(logging.WARNING, logger="otel_portkey"):
        first = post(flavour, mode, chat_url(model))
        second = post(flavour, mode, chat_url(model))
    assert first.status_code == second.status_code == 200
    assert first.json()["choices"][0]["message"]["content"] == "echo: hi"
    warnings = [r for r in caplog.records if "adding Portkey headers failed" in r.getMessage()]
    assert len(warnings) == 1
    assert "boom" not in caplog.text  # only the exception type is logged


@pytest.mark.parametrize(("flavour", "mode"), CASES)
def test_a_broken_header_object_leaves_the_request_working(bridge, model, spans, flavour, mode, monkeypatch):
    module = __import__(flavour)
    setitem = module.Headers.__setitem__

    def refuse_portkey_headers(self, key, value):
        if "portkey" in key.lower():
            raise TypeError("read-only")
        setitem(self, key, value)

    monkeypatch.setattr(module.Headers, "__setitem__", refuse_portkey_headers)
    monkeypatch.setattr(header_layouts, "_layouts", {})  # the layout probe now fails: public API only
    response = post(flavour, mode, chat_url(model))
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "echo: hi"
    assert not [n for n in model.received[-1].headers if n.startswith("x-portkey-")]


@pytest.mark.parametrize(("flavour", "mode"), CASES)
def test_suppressed_instrumentation_adds_nothing(bridge, model, spans, flavour, mode):
    with suppress_instrumentation():
        post(flavour, mode, chat_url(model))
    assert not [n for n in model.received[-1].headers if n.startswith("x-portkey-")]
    assert spans.all() == []


# The hooks driven directly, with real httpx requests and SDK spans from providers of their own.
GATEWAY = "http://gateway.test:8787"


def _provider(service):
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    return TracerProvider(resource=Resource.create({"service.name": service}))


def _call(bridge, span, headers=None, url=f"{GATEWAY}/v1/chat/completions", answer=()):
    import httpx
    from opentelemetry.instrumentation.httpx import RequestInfo, ResponseInfo

    request = httpx.Request("POST", url, headers=headers or {})
    info = RequestInfo(request.method, request.url, request.headers, None, {})
    bridge.request_hook(span, info)
    bridge.response_hook(span, info, ResponseInfo(200, httpx.Headers(list(answer)), None, {}))
    return request.headers


def _hooks(**settings):
    from direct_hooks import DirectHooks
    from otel_portkey.config import PortkeySettings

    return DirectHooks(PortkeySettings.from_env({}, gateway_urls=[GATEWAY], **settings))


def test_each_tracer_providers_resource_gives_its_own_service_metadata():
    import json

    bridge = _hooks()
    tracers = {name: _provider(name).get_tracer("t") for name in ("checkout", "search")}
    for name in ("checkout", "search", "checkout", "search"):
        sent = _call(bridge, tracers[name].start_span("POST"))
        assert json.loads(sent["x-portkey-metadata"])["service"] == name


def test_context_metadata_is_kept_first_when_there_are_more_entries_than_a_span_keeps():
    import json

    from otel_portkey import portkey_metadata

    bridge = _hooks(metadata={f"static{i}": "v" for i in range(70)})
    with portkey_metadata(session="s-1"):
        sent = json.loads(
            _call(bridge, _provider("svc").get_tracer("t").start_span("POST"))["x-portkey-metadata"]
        )
    assert len(sent) == 64
    assert sent["session"] == "s-1"  # most specific: kept
    assert "service" not in sent  # least specific (the resource): left out


class _SpanWithoutWeakReferences:
    """A span type that cannot be weakly referenced (``__slots__``), delegating to an SDK span."""

    __slots__ = ("_span",)

    def __init__(self, span):
        self._span = span

    def __getattr__(self, name):
        return getattr(self._span, name)


def test_a_span_without_weak_references_still_gets_the_gateways_answer():
    bridge = _hooks()
    tracer = _provider("svc").get_tracer("t")
    span = _SpanWithoutWeakReferences(tracer.start_span("POST"))
    answer = [("x-portkey-cache-status", "HIT"), ("x-portkey-trace-id", "echoed")]
    sent = _call(bridge, span, answer=answer)
    assert "x-portkey-trace-id" in sent
    assert span.attributes["portkey.cache.status"] == "HIT"
    other = _SpanWithoutWeakReferences(tracer.start_span("GET"))
    _call(bridge, other, url="http://elsewhere.test/", answer=answer)  # not gateway-bound
    assert "portkey.cache.status" not in other.attributes
