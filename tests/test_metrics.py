"""The bridge's metrics, in process with the real OTel SDK: one point per call to a gateway, from
every client, sampled or not, streamed or failed, with bounded attributes and exemplars that lead
to the call's span. Through the real gateway, Collector and Prometheus: test_monitoring.py."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from otel_portkey import PortkeyInstrumentor, portkey_metadata
from otel_portkey._contract.call import MAX_DISTINCT_VALUES, OTHER
from otel_portkey.testing import free_port

from clients_all import CLIENTS, STREAMS

tracer = trace.get_tracer("test")
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
DURATION, RETRIES = "portkey.gateway.request.duration", "portkey.gateway.retries"
ANSWER = {
    "x-portkey-provider": "openai",
    "x-portkey-cache-status": "MISS",
    "x-portkey-retry-attempt-count": "2",
    "x-portkey-last-used-option-index": "config.targets[1]",
    "x-portkey-trace-id": "echoed-by-the-gateway",
}
ALLOWED = {
    "portkey.provider",
    "portkey.cache.status",
    "portkey.fallback",
    "http.response.status_code",
    "error.type",
    "server.address",
    "gen_ai.operation.name",
    "gen_ai.request.model",
}


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def meter_provider(reader: InMemoryMetricReader) -> MeterProvider:
    return MeterProvider(metric_readers=[reader])


@pytest.fixture(params=list(CLIENTS))
def client(request: pytest.FixtureRequest) -> tuple[str, Any, Any]:
    instrumentor_class, call = CLIENTS[request.param]
    return request.param, instrumentor_class, call


def points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    return [
        point
        for resource_metrics in (data.resource_metrics if data else ())
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def bridge(model: Any, meter_provider: MeterProvider, **kwargs: Any) -> None:
    PortkeyInstrumentor().instrument(
        gateway_urls=[f"http://127.0.0.1:{model.port}"], meter_provider=meter_provider, **kwargs
    )


def chat_url(model: Any) -> str:
    return f"http://127.0.0.1:{model.port}/v1/chat/completions"


def test_every_client_gives_one_point_per_call_with_the_gateways_answer(
    model, spans, client, reader, meter_provider
):
    name, instrumentor_class, call = client
    bridge(model, meter_provider)
    if not instrumentor_class().is_instrumented_by_opentelemetry:
        instrumentor_class().instrument()
    model.add_response_headers(ANSWER)
    with tracer.start_as_current_span("app"):
        for _ in range(3):
            assert call(chat_url(model), {}, CHAT) == 200
    (duration,) = points(reader, DURATION)
    (retries,) = points(reader, RETRIES)
    assert duration.count == 3, name
    assert retries.value == 6, "the gateway's retry count, added per call"
    assert dict(duration.attributes) == {
        "portkey.provider": "openai",
        "portkey.cache.status": "MISS",
        "portkey.fallback": True,
        "http.response.status_code": 200,
        "server.address": "127.0.0.1",
    }
    assert dict(retries.attributes) == dict(duration.attributes)
    calls = spans.http()
    assert len(calls) == 3
    exemplars = {(e.trace_id, e.span_id) for e in duration.exemplars}
    assert exemplars
    assert exemplars <= {(s.context.trace_id, s.context.span_id) for s in calls}, (
        "an exemplar names one of the calls' CLIENT spans"
    )
    assert 0 < duration.sum < 30


def test_an_unsampled_call_of_every_client_is_counted_too(model, spans, client, reader, meter_provider):
    """Head sampling drops the span, not the point: what span-derived metrics would miss."""
    name, instrumentor_class, call = client
    provider = TracerProvider(sampler=ALWAYS_OFF)
    bridge(model, meter_provider, tracer_provider=provider)
    if not instrumentor_class().is_instrumented_by_opentelemetry:
        instrumentor_class().instrument(tracer_provider=provider)
    model.add_response_headers(ANSWER)
    with provider.get_tracer("t").start_as_current_span("dropped"):
        assert call(chat_url(model), {}, CHAT) == 200
    assert spans.all() == []
    (duration,) = points(reader, DURATION)
    (retries,) = points(reader, RETRIES)
    assert duration.count == 1, name
    assert retries.value == 2
    assert duration.attributes["portkey.provider"] == "openai"
    assert duration.attributes["portkey.fallback"] is True
    assert duration.attributes["http.response.status_code"] == 200
    assert list(duration.exemplars) == [], "no exemplar points at a trace nobody keeps"


@pytest.mark.parametrize("sampled", [True, False])
@pytest.mark.parametrize("name", [name for name in STREAMS if name in CLIENTS])
def test_a_streamed_call_is_timed_to_the_end_of_its_stream(
    model, spans, name, sampled, reader, meter_provider
):
    instrumentor_class, _ = CLIENTS[name]
    provider = TracerProvider(sampler=None if sampled else ALWAYS_OFF)
    bridge(model, meter_provider, tracer_provider=provider)
    instrumentor_class().instrument(tracer_provider=provider)
    model.stream_slowly(0.02)
    with provider.get_tracer("t").start_as_current_span("app"):
        _, body = STREAMS[name](
            chat_url(model), {}, {**CHAT, "stream": True}, lambda: points(reader, DURATION)
        )
    assert b"[DONE]" in body
    (duration,) = points(reader, DURATION)
    assert duration.count == 1
    assert duration.sum >= 0.02 * 3, "the point covers the streamed body"


@pytest.mark.parametrize("sampled", [True, False])
def test_a_call_that_fails_before_any_answer_is_counted_with_its_error_type(
    model, spans, client, sampled, reader, meter_provider
):
    name, instrumentor_class, call = client
    provider = TracerProvider(sampler=None if sampled else ALWAYS_OFF)
    closed = f"http://127.0.0.1:{free_port()}"
    PortkeyInstrumentor().instrument(
        tracer_provider=provider, gateway_urls=[closed], meter_provider=meter_provider
    )
    if not instrumentor_class().is_instrumented_by_opentelemetry:
        instrumentor_class().instrument(tracer_provider=provider)
    with provider.get_tracer("t").start_as_current_span("app"), pytest.raises(Exception) as raised:  # noqa: PT011 (each client raises its own)
        call(f"{closed}/v1/chat/completions", {}, CHAT)
    (duration,) = points(reader, DURATION)
    assert duration.count == 1, name
    error = duration.attributes["error.type"]
    assert error not in ("", OTHER), name
    assert error in {cls.__qualname__ for cls in type(raised.value).__mro__} | {
        cls.__qualname__
        for cause in (raised.value.__cause__, raised.value.__context__)
        if cause
        for cls in type(cause).__mro__
    }, (name, error, raised.value)
    assert "http.response.status_code" not in duration.attributes


def test_an_error_answer_and_the_gateways_own_exception_are_error_types(model, spans, reader, meter_provider):
    import httpx

    bridge(model, meter_provider)
    model.fail_next(1, status=503)
    with tracer.start_as_current_span("app"):
        assert httpx.post(chat_url(model), json=CHAT).status_code == 503
        model.add_response_headers({"x-portkey-gateway-exception": "true"})
        model.fail_next(1, status=500)
        assert httpx.post(chat_url(model), json=CHAT).status_code == 500
    by_error = {p.attributes.get("error.type"): p for p in points(reader, DURATION)}
    assert by_error["503"].attributes["http.response.status_code"] == 503
    assert by_error["portkey.gateway_exception"].attributes["http.response.status_code"] == 500


def test_the_calling_genai_span_names_operation_and_model_and_nothing_identifying_is_an_attribute(
    model, spans, reader, meter_provider
):
    import httpx

    bridge(model, meter_provider)
    genai = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", "gen_ai.system": "openai"}
    with (
        portkey_metadata(_user="user-42", session="s-1"),
        tracer.start_as_current_span("chat gpt-4o", attributes=genai),
    ):
        httpx.post(chat_url(model), json=CHAT, headers={"x-portkey-metadata": '{"team":"a"}'})
    (duration,) = points(reader, DURATION)
    assert duration.attributes["gen_ai.operation.name"] == "chat"
    assert duration.attributes["gen_ai.request.model"] == "gpt-4o"
    assert set(duration.attributes) <= ALLOWED
    assert not {"user-42", "s-1", "a"} & {str(v) for v in duration.attributes.values()}


def test_distinct_values_beyond_the_bound_become_other_and_long_ones_are_cut(
    model, spans, reader, meter_provider
):
    import httpx

    bridge(model, meter_provider)
    with httpx.Client() as client:
        for i in range(MAX_DISTINCT_VALUES + 20):
            with tracer.start_as_current_span(
                "chat", attributes={"gen_ai.request.model": f"model-{i}" + "x" * 80}
            ):
                client.post(chat_url(model), json=CHAT)
    models = [p.attributes["gen_ai.request.model"] for p in points(reader, DURATION)]
    assert len(models) == MAX_DISTINCT_VALUES + 1
    assert models.count(OTHER) == 1
    assert max(len(m) for m in models) == 64


def test_metrics_switched_off_alone(model, spans, reader, meter_provider, monkeypatch):
    import httpx

    monkeypatch.setenv("OTEL_PORTKEY_METRICS", "false")
    bridge(model, meter_provider)
    with tracer.start_as_current_span("app"):
        httpx.post(chat_url(model), json=CHAT)
    assert points(reader, DURATION) == []
    assert points(reader, RETRIES) == []
    assert "x-portkey-trace-id" in model.received[-1].headers, "the bridge itself still works"
    assert spans.http()[0].attributes["portkey.span_id"]


def test_a_failing_meter_never_breaks_the_call(model, spans, meter_provider, monkeypatch, caplog):
    import httpx

    from otel_portkey._otel import bridge as bridge_metrics

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("meter broke")

    monkeypatch.setattr(bridge_metrics.GatewayMetrics, "record", broken)
    bridge(model, meter_provider)
    with caplog.at_level(logging.WARNING), tracer.start_as_current_span("app"):
        for _ in range(2):
            assert httpx.post(chat_url(model), json=CHAT).status_code == 200
    assert len(spans.http()) == 2, "the spans still end"
    assert sum("recording Portkey gateway metrics" in r.getMessage() for r in caplog.records) == 1


def test_without_a_meter_provider_the_global_no_op_is_used(model, spans):
    import httpx

    PortkeyInstrumentor().instrument(gateway_urls=[f"http://127.0.0.1:{model.port}"])
    with tracer.start_as_current_span("app"):
        assert httpx.post(chat_url(model), json=CHAT).status_code == 200
    assert len(spans.http()) == 1


def test_an_exception_the_app_was_already_handling_is_not_the_calls_error(
    model, spans, reader, meter_provider
):
    import httpx

    bridge(model, meter_provider)
    with tracer.start_as_current_span("app"):
        try:
            raise KeyError("the app's own")
        except KeyError:
            assert httpx.post(chat_url(model), json=CHAT).status_code == 200
    (duration,) = points(reader, DURATION)
    assert "error.type" not in duration.attributes


def test_span_limits_do_not_change_the_metrics(model, reader, meter_provider):
    """The answer is taken as read, not back from the span, which may keep none of it."""
    import httpx
    from opentelemetry.sdk.trace import SpanLimits

    provider = TracerProvider(span_limits=SpanLimits(max_span_attributes=0))
    PortkeyInstrumentor().instrument(
        tracer_provider=provider,
        gateway_urls=[f"http://127.0.0.1:{model.port}"],
        meter_provider=meter_provider,
    )
    model.add_response_headers(ANSWER)
    with provider.get_tracer("t").start_as_current_span("app"):
        httpx.post(chat_url(model), json=CHAT)
    (duration,) = points(reader, DURATION)
    (retries,) = points(reader, RETRIES)
    assert duration.attributes["portkey.provider"] == "openai"
    assert retries.value == 2


def test_a_call_seen_by_the_propagator_alone_is_counted_without_an_error(
    model, spans, reader, meter_provider
):
    """requests instrumented before the bridge: no response hook of ours, so the point has the
    status the span recorded, and no answer means no error here."""
    import requests
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    RequestsInstrumentor().instrument()
    try:
        bridge(model, meter_provider)
        with tracer.start_as_current_span("app"):
            requests.post(chat_url(model), json=CHAT, timeout=30)
    finally:
        RequestsInstrumentor().uninstrument()
    (duration,) = points(reader, DURATION)
    assert duration.count == 1
    assert "error.type" not in duration.attributes
    assert duration.attributes["http.response.status_code"] == 200


@pytest.mark.parametrize("sampled", [True, False])
def test_aiohttp_raise_for_status_still_gives_the_gateways_answer(
    model, spans, sampled, reader, meter_provider
):
    import asyncio

    import aiohttp
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor

    provider = TracerProvider(sampler=None if sampled else ALWAYS_OFF)
    bridge(model, meter_provider, tracer_provider=provider)
    AioHttpClientInstrumentor().instrument(tracer_provider=provider)
    model.add_response_headers(ANSWER)
    model.fail_next(1, status=429)

    async def run() -> None:
        async with aiohttp.ClientSession(raise_for_status=True) as session:
            await session.post(chat_url(model), json=CHAT)

    with provider.get_tracer("t").start_as_current_span("app"), pytest.raises(aiohttp.ClientResponseError):
        asyncio.run(run())
    (duration,) = points(reader, DURATION)
    assert duration.attributes["http.response.status_code"] == 429
    assert duration.attributes["error.type"] == "429"
    assert duration.attributes["portkey.provider"] == "openai"
    (retries,) = points(reader, RETRIES)
    assert retries.value == 2


@pytest.mark.parametrize(("mode", "fallback"), [("fallback", True), ("loadbalance", False)])
def test_the_second_target_is_a_fallback_only_under_a_fallback_config(
    model, spans, mode, fallback, reader, meter_provider
):
    import json

    import httpx

    bridge(model, meter_provider)
    model.add_response_headers(ANSWER)  # the gateway answers config.targets[1]
    config = {"strategy": {"mode": mode}, "targets": [{"provider": "openai"}, {"provider": "openai"}]}
    with tracer.start_as_current_span("app"):
        httpx.post(chat_url(model), json=CHAT, headers={"x-portkey-config": json.dumps(config)})
    (duration,) = points(reader, DURATION)
    assert duration.attributes["portkey.fallback"] is fallback


def test_without_a_meter_provider_the_bridge_does_no_metrics_work(model, spans):
    """The global provider is the API's proxy with nothing behind it: no call records a point (what
    the points would cost is spent only once a provider is set)."""
    import httpx
    from opentelemetry import metrics

    from otel_portkey._otel import bridge as bridge_metrics

    if not isinstance(metrics.get_meter_provider(), metrics._internal._ProxyMeterProvider):
        pytest.skip("a global MeterProvider was set in this process")
    started: list[object] = []

    def counting(*args: object) -> None:
        started.append(args)

    PortkeyInstrumentor().instrument(gateway_urls=[f"http://127.0.0.1:{model.port}"])
    original = bridge_metrics.GatewayMetrics.record
    try:
        bridge_metrics.GatewayMetrics.record = counting  # type: ignore[method-assign,assignment]
        with tracer.start_as_current_span("app"):
            assert httpx.post(chat_url(model), json=CHAT).status_code == 200
    finally:
        bridge_metrics.GatewayMetrics.record = original  # type: ignore[method-assign]
    assert started == []
    assert len(spans.http()) == 1
