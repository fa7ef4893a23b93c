"""Monitoring end to end, every component real: an app under ``opentelemetry-instrument`` calls
the OSS Portkey gateway (plain calls, calls it retries, calls it falls back on, a streamed call, an
unsampled trace); the bridge's metrics go OTLP to the Collector running collector-config.yaml,
whose ``prometheus`` exporter a real Prometheus scrapes with exemplar storage on; the traces go
through the same Collector to Jaeger.

What is expected comes from the gateway's own answers (the recording hop in front of it keeps
them); what is asserted is what Prometheus and Jaeger answer.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter

import pytest

from otel_portkey.testing import RecordingProxy, ScriptedModelServer

from components import Prometheus, span_id
from conftest import skip_or_fail
from instrumented import otel_env, run_instrumented

pytestmark = pytest.mark.integration

SERVICE = "monitoring-app"
CALLS = f'portkey_gateway_request_duration_seconds_count{{exported_job="{SERVICE}"}}'
RETRIES = f'portkey_gateway_retries_total{{exported_job="{SERVICE}"}}'
BUCKETS = f'portkey_gateway_request_duration_seconds_bucket{{exported_job="{SERVICE}"}}'


@pytest.fixture
def prometheus(prometheus_binary, collector):
    try:
        server = Prometheus(prometheus_binary["PROMETHEUS"], [collector.prometheus_endpoint])
    except Exception as error:  # a Prometheus that cannot start is a missing component
        skip_or_fail(f"Prometheus did not start: {error}")
        raise
    yield server
    server.stop()


def by(result, label):
    return {sample["metric"].get(label, ""): float(sample["value"][1]) for sample in result}


def test_prometheus_answers_what_the_gateway_did_and_exemplars_lead_to_jaeger(
    oss_gateway, model, jaeger, collector, prometheus
):
    started = time.time()
    with (
        ScriptedModelServer() as retrying,
        ScriptedModelServer() as failing,
        RecordingProxy(oss_gateway.url) as hop,
    ):
        retrying.fail_next(2, status=429)  # the gateway retries the first call twice
        failing.fail_next(1000, status=500)  # the first fallback target always fails
        model.stream_slowly(0.02)
        result = run_instrumented(
            "tests/monitoring_app.py",
            otel_env(
                collector.otlp_http,
                OTEL_SERVICE_NAME=SERVICE,
                OTEL_METRICS_EXPORTER="otlp",
                # One export, at exit: the Collector's exporter shows only the latest export's
                # exemplars, so with exports faster than the scrapes some are never seen (README).
                OTEL_METRIC_EXPORT_INTERVAL="600000",
                OTEL_PORTKEY_GATEWAY_URLS=hop.url,
                GATEWAY=hop.url,
                MODEL_OK=model.base_url,
                MODEL_RETRYING=retrying.base_url,
                MODEL_FAILING=failing.base_url,
            ),
        )
        assert result.returncode == 0, result.stderr[-3000:]
        answers = [request.response_headers for request in hop.requests]
    calls = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [c["kind"] for c in calls].count("unsampled") == 1
    assert len(answers) == len(calls) == 9, "the gateway answered each call once"

    # What the gateway answered, as the hop recorded it.
    sent_providers = Counter(a.get("x-portkey-provider", "") for a in answers)
    sent_fallbacks = sum(
        1 for a in answers if re.search(r"\[\s*[1-9]\d*\s*\]", a.get("x-portkey-last-used-option-index", ""))
    )
    sent_retries = sum(max(int(a.get("x-portkey-retry-attempt-count", "0")), 0) for a in answers)
    assert sent_fallbacks == 2
    assert sent_retries >= 1

    # What Prometheus answers.
    # every query below reads the moment this one held, once no scrape then can still fail
    total, at = prometheus.settled(f"sum({CALLS})", lambda r: bool(r) and float(r[0]["value"][1]) >= 9)
    assert float(total[0]["value"][1]) == len(answers), "every call, the unsampled one included"
    assert by(prometheus.query(f"sum by (portkey_provider) ({CALLS})", at=at), "portkey_provider") == {
        provider: float(count) for provider, count in sent_providers.items()
    }
    assert by(prometheus.query(f"sum by (portkey_fallback) ({CALLS})", at=at), "portkey_fallback") == {
        "true": float(sent_fallbacks),
        "false": float(len(answers) - sent_fallbacks),
    }
    assert float(prometheus.query(f"sum({RETRIES})", at=at)[0]["value"][1]) == sent_retries
    assert by(
        prometheus.query(f"sum by (http_response_status_code) ({CALLS})", at=at), "http_response_status_code"
    ) == {"200": float(len(answers))}
    models = by(prometheus.query(f"sum by (gen_ai_request_model) ({CALLS})", at=at), "gen_ai_request_model")
    # The calling GenAI span's model; an unsampled GenAI span records none, so its call has no model.
    assert models == {"gpt-4o": float(len(answers) - 1), "": 1.0}
    assert prometheus.query(CALLS.replace("}", ',error_type!=""}'), at=at) == []

    # Exemplars: a bucket leads to its call's trace in Jaeger, to the very POST span.
    sampled = {c["trace_id"] for c in calls if c["kind"] != "unsampled"}
    (unsampled,) = (c["trace_id"] for c in calls if c["kind"] == "unsampled")
    found = prometheus.exemplars(BUCKETS, started - 60, time.time() + 60)
    exemplars = [e["labels"] for series in found for e in series["exemplars"]]
    assert exemplars, "Prometheus stored exemplars"
    trace_ids = {e["trace_id"] for e in exemplars}
    assert trace_ids <= sampled, "exemplars name the app's sampled traces"
    assert unsampled not in trace_ids
    for exemplar in exemplars[:3]:
        spans = jaeger.trace(exemplar["trace_id"], spans=3)
        (post,) = [s for s in spans if span_id(s) == exemplar["span_id"]]
        assert post["name"] == "POST"
        assert post["kind"] in (3, "SPAN_KIND_CLIENT")
    assert jaeger.trace(unsampled, timeout=1) == [], "Jaeger never got the unsampled trace"
