"""PortkeyPropagator: traceparent everywhere, baggage only where the request is not for Portkey."""

import logging

import httpx
from opentelemetry import baggage, context, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagate import get_global_textmap
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from otel_portkey import PortkeyInstrumentor, portkey_metadata
from otel_portkey._otel import diagnostics
from otel_portkey._otel.bridge import Bridge
from otel_portkey._otel.client_hooks import PortkeyPropagator
from otel_portkey._otel.headers import has_portkey_header
from otel_portkey.config import PortkeySettings

GATEWAY = "http://gw.test"
tracer = trace.get_tracer("opentelemetry.instrumentation.test")  # as an HTTP client instrumentation's


class UrlBridge(Bridge):
    """A bridge whose gateways are whatever ``url_is_gateway`` says."""

    def __init__(self, url_is_gateway):
        super().__init__(PortkeySettings.from_env({}))
        self.url_is_gateway = url_is_gateway


def propagator():
    return PortkeyPropagator(get_global_textmap(), UrlBridge(lambda url: url.startswith(GATEWAY)))


def injected(carrier, url="http://other.test/x", prop=None):
    with (
        portkey_metadata(_user="u1"),
        tracer.start_as_current_span("POST", kind=trace.SpanKind.CLIENT, attributes={"url.full": url}),
    ):
        (prop or propagator()).inject(carrier)
    return carrier


def test_other_requests_keep_their_baggage():
    carrier = injected({})
    assert carrier["baggage"] == "portkey.metadata._user=u1"
    assert "traceparent" in carrier


def test_a_request_with_a_portkey_header_gets_traceparent_and_no_baggage():
    for carrier in ({"x-portkey-provider": "openai"}, httpx.Headers({"X-Portkey-Provider": "openai"})):
        sent = injected(carrier)
        assert "baggage" not in sent
        assert "traceparent" in sent


def test_a_request_to_a_gateway_url_gets_no_baggage():
    assert "baggage" not in injected({}, url=f"{GATEWAY}/v1/chat/completions")


def test_a_span_an_sdk_made_for_itself_is_not_taken_for_the_http_call():
    """anthropic traces itself and injects inside its own CLIENT span; the HTTP span inside it
    must be the one the gateway hangs under, so the propagator leaves such a span alone."""
    own = trace.get_tracer("anthropic")
    with own.start_as_current_span("anthropic.messages.create", kind=trace.SpanKind.CLIENT) as span:
        span.set_attribute("url.full", f"{GATEWAY}/v1/messages")
        carrier = {}
        propagator().inject(carrier)
    assert "x-portkey-trace-id" not in carrier, "not taken for a Portkey-bound HTTP call"
    assert "traceparent" in carrier


def test_a_baggage_header_already_on_a_gateway_request_is_removed():
    """An SDK that injects the context itself (anthropic does) puts inbound baggage on the request
    before the HTTP instrumentation does: a gateway request loses every copy of it."""
    for carrier in (
        {"x-portkey-provider": "openai", "baggage": "_user=mallory", "Baggage": "x=1"},
        httpx.Headers([("x-portkey-provider", "openai"), ("baggage", "_user=mallory"), ("BAGGAGE", "y=2")]),
    ):
        sent = injected(carrier)
        assert not [name for name in sent if name.lower() == "baggage"]
        assert "traceparent" in sent
    assert injected({"baggage": "mine=1"})["baggage"] == "portkey.metadata._user=u1", "others: as usual"


def test_a_composite_holding_the_wrapper_does_not_loop(model, spans):
    """An app that wraps the current global propagator into its own composite after the bridge."""
    from opentelemetry.propagators.composite import CompositePropagator

    before = get_global_textmap()
    PortkeyInstrumentor().instrument(gateway_urls=[f"http://127.0.0.1:{model.port}"])
    propagate.set_global_textmap(CompositePropagator([get_global_textmap()]))
    try:
        token = context.attach(baggage.set_baggage("portkey.metadata._user", "u1"))
        try:
            for _ in range(3):
                httpx.post(
                    f"http://127.0.0.1:{model.port}/v1/chat/completions", json={"model": "m", "messages": []}
                )
            httpx.post(f"http://127.0.0.1:{model.port}/other", json={})
        finally:
            context.detach(token)
        gateway_calls, other = model.received[:3], model.received[3]
        for received in gateway_calls:
            assert "x-portkey-trace-id" in received.headers
            assert "traceparent" in received.headers
            assert "baggage" not in received.headers
        PortkeyInstrumentor().uninstrument()
        httpx.post(f"http://127.0.0.1:{model.port}/v1/chat/completions", json={"model": "m", "messages": []})
        assert "x-portkey-trace-id" not in model.received[-1].headers, "a wrapper left inside is inert"
    finally:
        propagate.set_global_textmap(before)
    assert other.path == "/other"


def test_a_failing_check_never_breaks_the_request():
    def broken(url):
        raise RuntimeError("boom")

    sent = injected({}, prop=PortkeyPropagator(get_global_textmap(), UrlBridge(broken)))
    assert sent["baggage"] == "portkey.metadata._user=u1", "injected as without the bridge"
    assert "traceparent" in sent


def test_header_detection_in_each_kind_of_carrier():
    from requests.structures import CaseInsensitiveDict
    from urllib3 import HTTPHeaderDict

    for kind in (dict, CaseInsensitiveDict, HTTPHeaderDict, httpx.Headers):
        assert has_portkey_header(kind({"X-Portkey-Trace-Id": "t", "accept": "*/*"})), kind
        assert not has_portkey_header(kind({"accept": "*/*", "x-portke": "no"})), kind
    assert not has_portkey_header(object())


def test_the_bridge_wraps_the_global_propagator_and_unwraps_it(model):
    before = get_global_textmap()
    PortkeyInstrumentor().instrument(gateway_urls=[f"http://127.0.0.1:{model.port}"])
    wrapper = get_global_textmap()
    assert isinstance(wrapper, PortkeyPropagator)
    assert wrapper.inner is before
    PortkeyInstrumentor().uninstrument()
    assert get_global_textmap() is before


def test_a_propagator_set_after_the_bridge_is_wrapped_again_by_the_next_gateway_call(model, caplog):
    before = get_global_textmap()
    PortkeyInstrumentor().instrument(gateway_urls=[f"http://127.0.0.1:{model.port}"])
    replacement = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    propagate.set_global_textmap(replacement)
    token = context.attach(baggage.set_baggage("portkey.metadata._user", "u1"))
    try:
        with caplog.at_level(logging.WARNING):
            for _ in range(2):
                httpx.post(
                    f"http://127.0.0.1:{model.port}/v1/chat/completions", json={"model": "m", "messages": []}
                )
    finally:
        context.detach(token)
    # The request hook runs before the instrumentation injects: the first call is already covered.
    assert ["baggage" in r.headers for r in model.received] == [False, False]
    assert "traceparent" in model.received[0].headers
    assert get_global_textmap().inner is replacement
    assert len([r for r in caplog.records if "propagator was replaced" in r.getMessage()]) == 1
    PortkeyInstrumentor().uninstrument()
    assert get_global_textmap() is replacement
    propagate.set_global_textmap(before)


def test_the_request_hooks_decision_spares_the_propagator_and_the_response_hook_any_reading():
    """A request that is not Portkey-bound: the propagator takes the hook's word for it (the same
    carrier), and the response hook reads no header of the answer."""
    import requests
    from opentelemetry.sdk.trace import TracerProvider
    from requests.structures import CaseInsensitiveDict

    from otel_portkey._otel.bridge import request_decision
    from otel_portkey._otel.client_hooks import CLIENTS

    class Unreadable:
        @property
        def headers(self):
            raise AssertionError("the answer of a request that is not Portkey-bound was read")

    bridge = Bridge(PortkeySettings.from_env(gateway_urls=["http://gateway.test:8787"]))
    hooks = next(client for client in CLIENTS if client.name == "requests").hooks(lambda: bridge)
    span = TracerProvider().get_tracer("opentelemetry.instrumentation.test").start_span("POST")
    request = requests.Request("POST", "http://other.test/v1/x", headers={"accept": "*/*"}).prepare()
    carrier = request.headers
    assert isinstance(carrier, CaseInsensitiveDict)
    hooks["request_hook"](span, request)
    decided = request_decision.get()
    assert decided is not None
    assert decided.carrier_id == id(carrier)  # its id: the decision keeps no reference to the request
    assert not decided.bound
    hooks["response_hook"](span, request, Unreadable())  # raises inside if it reads
    assert "recording the Portkey response:AssertionError" not in diagnostics._reported
    bound = requests.Request("POST", "http://x/", headers={"X-Portkey-Provider": "openai"}).prepare()
    hooks["request_hook"](span, bound)
    assert request_decision.get().bound  # bound by its header alone
