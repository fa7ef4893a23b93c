"""The Collector without a Portkey API key (issue 27, item 5): collector-config.yaml with
examples/collector-without-portkey.yaml over it sends spans to Jaeger and metrics to Prometheus, and
nothing towards Portkey: no export, no queue file, no retry, no warning.

With a key, collector-config.yaml alone fans out to Jaeger and Portkey as before: that path is
tests/test_export.py::test_collector_fans_the_seed_agent_out_to_jaeger_and_portkey (the session
``collector`` fixture) and the restarts of tests/test_durable_pipeline.py.
"""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SpanExportResult

from otel_portkey.testing import OtlpReceiver
from test_durable_pipeline import make_spans

from components import ROOT, Collector, Jaeger, span_id, trace_id_hex

pytestmark = pytest.mark.integration

WITHOUT_PORTKEY = ROOT / "examples" / "collector-without-portkey.yaml"
SERVICE = "no-key-app"
# A Collector log line: "2026-12-07T08:44:49.899Z<TAB>info<TAB>..." (its level second).
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z\t(\w+)\t")


def export_metric(collector: Collector) -> None:
    """One counter point, exported over OTLP/HTTP as an app's SDK would."""
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{collector.otlp_http}/v1/metrics", timeout=10),
        export_interval_millis=3_600_000,  # exported once, by force_flush
    )
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": SERVICE}))
    provider.get_meter("no-key").create_counter("no_key_calls").add(3)
    assert provider.force_flush(timeout_millis=10_000)
    provider.shutdown()


def scrape_until(collector: Collector, needle: str, timeout: float = 30) -> str:
    """The Collector's prometheus exporter's page once it shows ``needle`` (or past ``timeout``, the last)."""
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(f"http://{collector.prometheus_endpoint}/metrics", timeout=10) as page:
            text = page.read().decode()
        if needle in text or time.monotonic() > deadline:
            return text
        time.sleep(0.3)


def test_without_a_key_the_collector_sends_to_jaeger_and_prometheus_only_and_quietly(
    go_binaries: dict[str, str], jaeger: Jaeger, tmp_path: Path
) -> None:
    spans = make_spans(traces=3, spans_per_trace=3, service=SERVICE)
    expected = {(format(s.context.trace_id, "032x"), format(s.context.span_id, "016x")) for s in spans}
    trace_ids = {trace_id for trace_id, _ in expected}
    # Where Portkey's exporter would send, were it started: a stand-in taking any export, key or not.
    with OtlpReceiver(path="/v1/otel/v1/traces") as portkey:
        collector = Collector(
            go_binaries["OTELCOL"],
            jaeger.otlp_grpc,
            f"{portkey.endpoint}/v1/otel",
            api_key=None,  # PORTKEY_API_KEY unset
            storage_dir=tmp_path / "storage",
            extra_configs=(WITHOUT_PORTKEY,),
        )
        try:
            exporter = OTLPSpanExporter(endpoint=f"{collector.otlp_http}/v1/traces", timeout=10)
            assert exporter.export(spans) is SpanExportResult.SUCCESS
            exporter.shutdown()
            export_metric(collector)
            stored = {
                (trace_id_hex(span["traceId"]), span_id(span))
                for trace_id in sorted(trace_ids)
                for span in jaeger.trace(trace_id, spans=3)
            }
            page = scrape_until(collector, "no_key_calls")
            sent_to_jaeger = collector.own_metrics().total(
                "otelcol_exporter_sent_spans", exporter="otlp_grpc/jaeger"
            )
        finally:
            collector.terminate()  # SIGTERM: its shutdown is quiet too
            log = collector.log()
            collector.stop()
        to_portkey = portkey.exports + portkey.rejected

    assert stored == expected, f"{len(stored)} of {len(expected)} spans reached Jaeger"
    assert set(jaeger.search(SERVICE)) >= trace_ids
    assert sent_to_jaeger == len(spans)
    assert re.search(r'^no_key_calls_total\{[^}]*job="no-key-app"', page, re.MULTILINE), page[-2000:]

    assert to_portkey == [], "nothing was sent towards Portkey"
    queues = sorted(path.name for path in (tmp_path / "storage").iterdir())
    assert queues == ["exporter_otlp_grpc_jaeger_traces"], "a queue for Jaeger, none for Portkey"
    assert "otlp_http/portkey" not in log, "the Portkey exporter was never started"

    levels = [match.group(1) for line in log.splitlines() if (match := LOG_LINE.match(line))]
    assert "Shutdown complete." in log
    assert levels, log[-3000:]
    assert set(levels) == {"info"}, [line for line in log.splitlines() if line.split("\t")[1:2] != ["info"]]
