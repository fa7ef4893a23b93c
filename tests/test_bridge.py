"""In-process: real httpx/httpx2 clients, sync and async, against the scripted model as a gateway."""

import logging
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation

from otel_portkey._contract.ids import format_span_id, format_trace_id, is_span_id
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


def _metrics():
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    return bridge_module.GatewayMetrics(MeterProvider(metric_readers=[InMemoryMetricReader()]))


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


@pytest.mark.unit
@given(st.integers(min_value=0, max_value=2**32))
def test_new_span_ids_are_valid_for_any_seed(seed):
    assert is_span_id(bridge_module.new_span_id(random.Random(seed)))


@pytest.mark.unit
def test_new_span_id_never_returns_the_all_zero_id():
    class ZeroFirst(random.Random):
        draws = 0

        def getrandbits(self, k):
            self.draws += 1
            return 0 if self.draws == 1 else 0xABC

    rng = ZeroFirst()
    assert bridge_module.new_span_id(rng) == "0000000000000abc"
    assert rng.draws == 2


@pytest.mark.unit
def test_nothing_of_the_request_outlives_it():
    """The request's header mapping (its ``Authorization``) is not kept once the call is made: not by
    the decision left for the propagator, not by the call, not by any cache of the bridge's; an
    inline ``x-portkey-config`` is kept as its routing strategies only."""
    import gc
    import json
    import weakref

    import requests

    from otel_portkey._otel.client_hooks import CLIENTS
    from otel_portkey.config import PortkeySettings

    secret = "sk-live-do-not-keep-4242"
    config = {"strategy": {"mode": "fallback"}, "targets": [{"provider": "openai", "api_key": secret}]}
    bridge = bridge_module.Bridge(
        PortkeySettings.from_env({}, gateway_urls=[GATEWAY]), gateway_metrics=_metrics()
    )
    hooks = next(client for client in CLIENTS if client.name == "requests").hooks(lambda: bridge)
    span = _provider("svc").get_tracer("t").start_span("POST")
    request = requests.Request(
        "POST",
        f"{GATEWAY}/v1/chat/completions",
        headers={"Authorization": f"Bearer {secret}", "x-portkey-config": json.dumps(config)},
    ).prepare()
    hooks["request_hook"](span, request)
    assert "x-portkey-trace-id" in request.headers
    headers = weakref.ref(request.headers)
    del request
    gc.collect()
    assert headers() is None, "the header mapping is gone with its request"
    call = bridge_module.call_of(span)
    assert call is not None
    assert call.routing == {"strategy": {"mode": "fallback"}, "targets": [{}]}
    kept = repr(
        (
            bridge_module.request_decision.get(),
            [getattr(call, name) for name in call.__slots__[1:] if hasattr(call, name)],
        )
    ) + repr(vars(bridge))
    assert secret not in kept
    span.end()
    assert bridge_module.call_of(span) is None, "the call is gone with its span's end"


@pytest.mark.unit
def test_a_tracer_provider_set_after_the_bridge_gets_its_processor_on_the_next_call(monkeypatch, caplog):
    """``instrument()`` with no SDK provider yet (a gunicorn master), the SDK provider set later
    (``post_fork``): the next gateway call gives it the processor, and that call's node is named
    after the calling span. Until then, a provider that is not the SDK's is said once."""
    from opentelemetry.trace import ProxyTracerProvider

    from otel_portkey._otel import processor
    from otel_portkey._otel.processor import ProcessorAttachment
    from otel_portkey.config import PortkeySettings

    provider: list[object] = [ProxyTracerProvider()]
    monkeypatch.setattr(processor.trace, "get_tracer_provider", lambda: provider[0])
    attachment = ProcessorAttachment(PortkeySettings.from_env({}).baggage_trust)
    assert not attachment.attach()
    hooks = _hooks()
    hooks.bridge.processor_pending = attachment
    early = _provider("early").get_tracer("t")  # a span made by a provider the bridge cannot see
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            with early.start_as_current_span("chat gpt-4o"):
                sent = _call(hooks, early.start_span("POST"))
    assert sent["x-portkey-span-name"] == "POST /v1/chat/completions"
    assert caplog.text.count("not the OpenTelemetry SDK's") == 1, caplog.text
    assert "ProxyTracerProvider" in caplog.text
    sdk = _provider("late")
    provider[0] = sdk
    tracer = sdk.get_tracer("t")
    for expected in ("POST /v1/chat/completions", "chat gpt-4o"):
        with tracer.start_as_current_span("chat gpt-4o"):
            sent = _call(hooks, tracer.start_span("POST", kind=trace.SpanKind.CLIENT))
        assert sent["x-portkey-span-name"] == expected
    # the call that found the provider started before the processor was there; the next one did not
    assert hooks.bridge.processor_pending is None, "and it is not looked for again"
    assert hooks.bridge._resource is sdk.resource, "unsampled calls get its resource metadata too"
    assert attachment.switched_on is not None
    assert attachment.switched_on.enabled


@pytest.mark.unit
def test_an_inbound_request_finds_a_late_tracer_provider_before_its_spans_start(monkeypatch):
    """A server's instrumentation extracts the inbound request's context before it starts the
    server span: the bridge's propagator looks for the provider there, so even the first gateway
    call in that request is named after its calling span."""
    from opentelemetry.propagate import get_global_textmap
    from opentelemetry.trace import ProxyTracerProvider

    from otel_portkey._otel import processor
    from otel_portkey._otel.client_hooks import PortkeyPropagator
    from otel_portkey._otel.processor import ProcessorAttachment
    from otel_portkey.config import PortkeySettings

    provider: list[object] = [ProxyTracerProvider()]
    monkeypatch.setattr(processor.trace, "get_tracer_provider", lambda: provider[0])
    attachment = ProcessorAttachment(PortkeySettings.from_env({}).baggage_trust)
    assert not attachment.attach()
    hooks = _hooks()
    hooks.bridge.processor_pending = attachment
    propagator = PortkeyPropagator(get_global_textmap(), hooks.bridge)
    sdk = _provider("late")
    provider[0] = sdk
    propagator.extract({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
    tracer = sdk.get_tracer("t")
    with tracer.start_as_current_span("chat gpt-4o"):
        sent = _call(hooks, tracer.start_span("POST", kind=trace.SpanKind.CLIENT))
    assert sent["x-portkey-span-name"] == "chat gpt-4o"


@pytest.mark.integration  # a child process
def test_a_forked_child_gets_every_lock_of_the_bridge_free():
    """A fork taken while another thread holds the bridge's locks: the child's locks are new ones,
    free (``os.register_at_fork``), so its first gateway call cannot hang on them."""
    import os
    import threading

    from otel_portkey import PortkeyInstrumentor
    from otel_portkey._otel import client_hooks, processor
    from otel_portkey._otel.kept_trace_ids import portkey_trace_ids

    PortkeyInstrumentor().instrument(gateway_urls=[GATEWAY])
    held = [client_hooks._changing, processor._registering, portkey_trace_ids._lock]
    for lock in held:
        lock.acquire()
    try:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: every lock must be free
            free = all(
                lock.acquire(timeout=1)
                for lock in (client_hooks._changing, processor._registering, portkey_trace_ids._lock)
            )
            os.write(write, b"1" if free else b"0")
            os._exit(0)
        os.close(write)
        answer = os.read(read, 1)
        os.waitpid(pid, 0)
    finally:
        for lock in held:
            lock.release()
        PortkeyInstrumentor().uninstrument()
    assert answer == b"1"
    assert threading.active_count() >= 1
