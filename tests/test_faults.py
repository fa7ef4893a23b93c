"""Faults, each run with and without the bridge: the application must see exactly the same."""

import contextlib
import json
import threading

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_portkey import PortkeyInstrumentor, PortkeySpanExporter
from otel_portkey.testing import OssGateway, OtlpReceiver, free_port, route_headers

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "fault"}]}


def outcome(call):
    """What the application sees: status and body, or the exception's type and message."""
    try:
        response = call()
    except Exception as error:  # the comparison is the point
        return ("raised", type(error).__name__, str(error))
    body = (
        response.json()
        if response.headers.get("content-type", "").startswith("application/json")
        else response.text
    )
    if isinstance(body, dict):
        body.pop("id", None)
        body.pop("created", None)
    return (response.status_code, json.dumps(body, sort_keys=True))


def with_and_without_bridge(gateway_urls, call, before_each=lambda: None):
    results = []
    for bridged in (False, True):
        if bridged:
            PortkeyInstrumentor().instrument(gateway_urls=gateway_urls)
        before_each()
        results.append(outcome(call))
        if bridged:
            PortkeyInstrumentor().uninstrument()
    return results


def gateway_call(base_url, model, timeout=10.0, config=None):
    headers = {**route_headers(model.base_url), "authorization": "Bearer sk-test"}
    if config:
        headers["x-portkey-config"] = json.dumps(config)
    return lambda: httpx.post(f"{base_url}/chat/completions", headers=headers, json=BODY, timeout=timeout)


def test_gateway_refused(model):
    url = f"http://127.0.0.1:{free_port()}"
    plain, bridged = with_and_without_bridge([url], gateway_call(f"{url}/v1", model))
    assert plain == bridged
    assert plain[:2] == ("raised", "ConnectError")


@pytest.mark.integration
def test_gateway_timing_out(oss_gateway, model):
    plain, bridged = with_and_without_bridge(
        [oss_gateway.url],
        gateway_call(oss_gateway.base_url, model, timeout=0.3),
        lambda: model.slow_next(1, 1.0),
    )
    assert plain == bridged
    assert plain[:2] == ("raised", "ReadTimeout")


@pytest.mark.integration
@pytest.mark.parametrize("status", [500, 503])
def test_gateway_answering_5xx(oss_gateway, model, spans, status):
    plain, bridged = with_and_without_bridge(
        [oss_gateway.url], gateway_call(oss_gateway.base_url, model), lambda: model.fail_next(1, status)
    )
    assert plain == bridged
    assert plain[0] == status
    (span,) = spans.http()
    assert span.status.status_code == trace.StatusCode.ERROR
    assert span.attributes["portkey.retry.attempt_count"] == 0


@pytest.mark.integration
def test_429_with_retries_exhausted(oss_gateway, model, spans):
    config = {"retry": {"attempts": 1, "on_status_codes": [429]}}
    plain, bridged = with_and_without_bridge(
        [oss_gateway.url],
        gateway_call(oss_gateway.base_url, model, config=config),
        lambda: model.fail_next(2, 429),
    )
    assert plain == bridged
    assert plain[0] == 429
    (span,) = spans.http()
    assert span.attributes["portkey.retry.attempt_count"] == -1


@contextlib.contextmanager
def installed_gateway(port):
    """The OSS gateway on ``port``, as ``make components`` installed it (nothing is installed here)."""
    gateway = OssGateway(port=port).start(install=False)
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.mark.integration
def test_gateway_restarted_mid_run(oss_gateway, model, spans):  # oss_gateway: installed, or skip/fail
    port = free_port()
    PortkeyInstrumentor().instrument(gateway_urls=[f"http://127.0.0.1:{port}"])
    call = gateway_call(f"http://127.0.0.1:{port}/v1", model)
    with installed_gateway(port):
        assert call().status_code == 200
    assert outcome(call)[:2] == ("raised", "ConnectError")
    with installed_gateway(port):
        assert call().status_code == 200
    ok = [s for s in spans.http() if s.status.status_code != trace.StatusCode.ERROR]
    assert len(ok) == 2
    assert all(s.attributes["portkey.trace_id"] == format(s.context.trace_id, "032x") for s in ok)


def test_malformed_gateway_headers(model, spans):
    """The scripted model plays a gateway answering nonsense Portkey headers."""
    model.add_response_headers(
        {
            "x-portkey-retry-attempt-count": "lots",
            "x-portkey-cache-status": "H" * 10_000,
            "x-portkey-trace-id": " ",
            "x-portkey-gateway-exception": "maybe",
            "x-portkey-last-used-option-index": "",
        }
    )
    url = f"http://127.0.0.1:{model.port}"
    plain, bridged = with_and_without_bridge([url], gateway_call(f"{url}/v1", model))
    assert plain == bridged
    assert plain[0] == 200
    (span,) = spans.http()
    assert "portkey.retry.attempt_count" not in span.attributes
    assert len(span.attributes["portkey.cache.status"]) == 256
    assert span.attributes["portkey.trace_id"] == format(
        span.context.trace_id, "032x"
    )  # blank echo: what was sent
    assert "portkey.gateway.exception" not in span.attributes
    assert span.status.status_code != trace.StatusCode.ERROR


@pytest.mark.integration
def test_a_stream_closed_early_by_the_client(oss_gateway, model, spans):
    PortkeyInstrumentor().instrument(gateway_urls=[oss_gateway.url])
    model.stream_slowly(0.05)
    headers = {**route_headers(model.base_url), "authorization": "Bearer sk-test"}
    with httpx.stream(
        "POST", f"{oss_gateway.base_url}/chat/completions", headers=headers, json={**BODY, "stream": True}
    ) as response:
        chunks = response.iter_raw()
        assert next(chunks)
    (span,) = spans.http()
    assert span.attributes["portkey.trace_id"] == format(span.context.trace_id, "032x")
    # the gateway and the model carry on serving
    assert gateway_call(oss_gateway.base_url, model)().status_code == 200


def test_an_otlp_endpoint_that_hangs_does_not_hold_the_app_and_drops_are_counted(model):
    release = threading.Event()
    with OtlpReceiver() as stuck:
        original = stuck._forward  # block the receiver's handler until released
        stuck.forward_to = "http://127.0.0.1:9"

        def hang(payload):
            release.wait(30)
            original(payload)

        stuck._forward = hang
        provider = TracerProvider()
        exporter = PortkeySpanExporter(endpoint=stuck.endpoint, api_key="pk", timeout=1)
        processor = BatchSpanProcessor(
            exporter, schedule_delay_millis=50, max_queue_size=64, max_export_batch_size=16
        )
        provider.add_span_processor(processor)
        PortkeyInstrumentor().instrument(
            tracer_provider=provider, gateway_urls=[f"http://127.0.0.1:{model.port}"]
        )
        call = gateway_call(f"http://127.0.0.1:{model.port}/v1", model)
        tracer = provider.get_tracer("app")
        for _ in range(200):  # far more spans than the queue holds, while the endpoint hangs
            with tracer.start_as_current_span("request"):
                assert call().status_code == 200
        calls_done_while_stuck = not release.is_set()
        release.set()
        processor.shutdown()
    assert calls_done_while_stuck, "every call finished while the OTLP endpoint hung"
    assert exporter.dropped_spans > 0, "the timed-out exports are counted"
