"""Generates otel-portkey.json, the Grafana (10+) dashboard for otel-portkey, with Grafana's own
Python SDK (grafana-foundation-sdk, pinned in pyproject.toml's dev extra):

    python examples/grafana/generate.py          # rewrites examples/grafana/otel-portkey.json

Edit the panels here, never the JSON: tests/test_dashboard.py regenerates it and fails when the
file differs, and runs every panel's PromQL against a real Prometheus.

What it reads (examples/prometheus/prometheus.yml scrapes both):
  - the app's metrics through the Collector's `prometheus` exporter, with `honor_labels: true`, so
    `job` is the app's service.name: portkey_gateway_* (the bridge), http_*_request_duration_seconds
    (the OSS gateway under `otel-portkey gateway --otlp-endpoint`, job = its service name),
    otel_sdk_* (an app's SDK with OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED=true);
  - the Collector's own telemetry (otelcol_*), scraped as job `otel-collector-self`.

Every panel groups only by bounded labels: the resource's service (job), portkey_provider,
gen_ai_request_model, portkey_cache_status, portkey_fallback, http_response_status_code,
error_type, the upstream host (server_address), and the Collector's receiver/exporter names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.builders.common import VizLegendOptions
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import LegendDisplayMode, LegendPlacement
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    VariableHide,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

OUTPUT = Path(__file__).resolve().parent / "otel-portkey.json"
UID = "otel-portkey"
# Every panel and query names the datasource through the variable, never a uid of one Grafana.
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")

CALLS = "portkey_gateway_request_duration_seconds_count"
BUCKETS = "portkey_gateway_request_duration_seconds_bucket"
RETRIES = "portkey_gateway_retries_total"
# The variables, as one selector: "All" is the regex .*, which also matches a call without the label
# (e.g. no gen_ai_request_model when no GenAI span made the call).
SELECTED = 'job=~"$service", portkey_provider=~"$provider", gen_ai_request_model=~"$model"'
WINDOW = "$__rate_interval"
PER_MODEL = "portkey_provider, gen_ai_request_model"
FAILED = 'error_type!=""'
GATEWAY = 'job="$gateway"'
COLLECTOR = 'job=~"$collector"'


def rate(metric: str, extra: str = "") -> str:
    matchers = f"{SELECTED}, {extra}" if extra else SELECTED
    return f"rate({metric}{{{matchers}}}[{WINDOW}])"


def ratio(numerator_matchers: str, numerator: str = CALLS) -> str:
    """Per provider and model, the share of calls matching ``numerator_matchers``; 0 (not nothing)
    for a provider and model with calls but none matching."""
    calls = f"sum by ({PER_MODEL}) ({rate(CALLS)})"
    part = f"sum by ({PER_MODEL}) ({rate(numerator, numerator_matchers)})"
    return f"({part} or 0 * {calls}) / {calls}"


def query(ref: str, expr: str, legend: str, exemplar: bool = False) -> prometheus.Dataquery:
    return (
        prometheus.Dataquery()
        .ref_id(ref)
        .expr(expr)
        .legend_format(legend)
        .range()
        .exemplar(exemplar)
        .datasource(DATASOURCE)
    )


def graph(
    title: str, description: str, unit: str, targets: list[prometheus.Dataquery], width: int = 8
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .min(0)
        .height(8)
        .span(width)
        .legend(
            VizLegendOptions()
            .display_mode(LegendDisplayMode.LIST)
            .placement(LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )
    for target in targets:
        panel = panel.with_target(target)
    return panel


def variables() -> list[Any]:
    label_values = "label_values({selector}, {label})"
    every = VariableOption(selected=True, text="All", value="$__all")

    def over_calls(name: str, label: str, selector: str, description: str) -> dashboard.QueryVariable:
        return (
            dashboard.QueryVariable(name)
            .label(name)
            .description(description)
            .datasource(DATASOURCE)
            .query(label_values.format(selector=selector, label=label))
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(every)
        )

    return [
        dashboard.DatasourceVariable("datasource")
        .label("Prometheus")
        .description("The Prometheus that scrapes the Collector (examples/prometheus/prometheus.yml).")
        .type("prometheus"),
        over_calls("service", "job", CALLS, "The app's service.name (the job label, honor_labels)."),
        over_calls("provider", "portkey_provider", f'{CALLS}{{job=~"$service"}}', "portkey.provider"),
        over_calls(
            "model",
            "gen_ai_request_model",
            f'{CALLS}{{job=~"$service", portkey_provider=~"$provider"}}',
            "gen_ai.request.model of the GenAI span that made the call",
        ),
        dashboard.QueryVariable("gateway")
        .label("gateway")
        .description(
            "The OSS gateway's service name (`otel-portkey gateway --otlp-endpoint ... --service-name`)."
        )
        .datasource(DATASOURCE)
        .query("label_values(http_server_request_duration_seconds_count, job)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .current(VariableOption(selected=True, text="portkey-gateway", value="portkey-gateway")),
        dashboard.QueryVariable("collector")
        .label("collector")
        .description("The scrape job of the Collector's own telemetry.")
        .datasource(DATASOURCE)
        .query("label_values(otelcol_receiver_accepted_spans, job)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .include_all(True)
        .all_value(".*")
        .current(every)
        .hide(VariableHide.DONT_HIDE),
    ]


def calls_row() -> list[timeseries.Panel]:
    quantile = "histogram_quantile({q}, sum by (le) ({rate}))"
    return [
        graph(
            "Calls/s per provider and model",
            "Portkey-bound calls per second, sampled or not (portkey.gateway.request.duration's count).",
            "reqps",
            [
                query(
                    "A",
                    f"sum by ({PER_MODEL}) ({rate(CALLS)})",
                    "{{portkey_provider}} {{gen_ai_request_model}}",
                )
            ],
        ),
        graph(
            "Error ratio by error.type",
            "Share of the selected calls that failed, by error.type: the exception's class (no answer), "
            "portkey.gateway_exception, or the status code of an answer >= 400.",
            "percentunit",
            [
                query(
                    "A",
                    f"sum by (error_type) ({rate(CALLS, FAILED)})"
                    f" / ignoring (error_type) group_left sum({rate(CALLS)})",
                    "{{error_type}}",
                )
            ],
        ),
        graph(
            "Latency p50 / p95 / p99",
            "From the request to the end of the call (a stream: when it ends), over the selection; the "
            "exemplars (dots) lead to the call's trace. Per provider and model: the recording rule "
            "portkey:gateway_request_duration_seconds:p95_5m (every service).",
            "s",
            [
                query("A", quantile.format(q=0.5, rate=rate(BUCKETS)), "p50"),
                query("B", quantile.format(q=0.95, rate=rate(BUCKETS)), "p95", exemplar=True),
                query("C", quantile.format(q=0.99, rate=rate(BUCKETS)), "p99"),
                query(
                    "D",
                    "portkey:gateway_request_duration_seconds:p95_5m"
                    '{portkey_provider=~"$provider", gen_ai_request_model=~"$model"}',
                    "p95 {{portkey_provider}} {{gen_ai_request_model}} (rule)",
                ),
            ],
        ),
    ]


def portkey_row() -> list[timeseries.Panel]:
    per_model = "{{portkey_provider}} {{gen_ai_request_model}}"
    return [
        graph(
            "Cache-hit ratio",
            "Share of calls Portkey's cache answered (portkey.cache.status HIT or SEMANTIC HIT).",
            "percentunit",
            [query("A", ratio('portkey_cache_status=~"HIT|SEMANTIC HIT"'), per_model)],
            width=6,
        ),
        graph(
            "Fallback ratio",
            "Share of calls a target past the first of a fallback strategy answered (portkey.fallback).",
            "percentunit",
            [query("A", ratio('portkey_fallback="true"'), per_model)],
            width=6,
        ),
        graph(
            "Retries per call",
            "The gateway's retries (x-portkey-retry-attempt-count) per call.",
            "short",
            [
                query(
                    "A",
                    f"(sum by ({PER_MODEL}) ({rate(RETRIES)}) or 0 * sum by ({PER_MODEL}) ({rate(CALLS)}))"
                    f" / sum by ({PER_MODEL}) ({rate(CALLS)})",
                    per_model,
                )
            ],
            width=6,
        ),
        graph(
            "Calls/s per portkey.cache.status",
            "HIT, SEMANTIC HIT, MISS, SEMANTIC MISS, REFRESH, DISABLED.",
            "reqps",
            [query("A", f"sum by (portkey_cache_status) ({rate(CALLS)})", "{{portkey_cache_status}}")],
            width=6,
        ),
    ]


def gateway_row() -> list[timeseries.Panel]:
    def gateway_rate(metric: str) -> str:
        return f"rate({metric}{{{GATEWAY}}}[{WINDOW}])"

    return [
        graph(
            "Upstream attempts/s per provider host and status",
            "Each attempt the OSS gateway made upstream (http.client.request.duration), retries and "
            "fallbacks included; needs `otel-portkey gateway --otlp-endpoint`.",
            "reqps",
            [
                query(
                    "A",
                    "sum by (server_address, http_response_status_code) "
                    f"({gateway_rate('http_client_request_duration_seconds_count')})",
                    "{{server_address}} {{http_response_status_code}}",
                )
            ],
            width=12,
        ),
        graph(
            "Gateway overhead per call",
            "The gateway's own time per call it answered: its server duration minus its upstream "
            "attempts' durations (its work plus its waits between retries).",
            "s",
            [
                query(
                    "A",
                    f"(sum({gateway_rate('http_server_request_duration_seconds_sum')})"
                    f" - sum({gateway_rate('http_client_request_duration_seconds_sum')}))"
                    f" / sum({gateway_rate('http_server_request_duration_seconds_count')})",
                    "overhead",
                )
            ],
            width=12,
        ),
    ]


def pipeline_row() -> list[Any]:
    def own(metric: str, by: str) -> str:
        return f"sum by ({by}) (rate({metric}{{{COLLECTOR}}}[{WINDOW}]))"

    return [
        graph(
            "Collector: spans accepted / refused per second",
            "Refused: the Collector answered the app's export with an error (a full queue, the memory "
            "limiter); the SDK retries, then drops them.",
            "short",
            [
                query("A", own("otelcol_receiver_accepted_spans", "receiver"), "accepted {{receiver}}"),
                query("B", own("otelcol_receiver_refused_spans", "receiver"), "refused {{receiver}}"),
            ],
        ),
        graph(
            "Collector: metric points accepted / refused per second",
            "The apps' metrics (these panels' data among them) on their way to the prometheus exporter.",
            "short",
            [
                query(
                    "A", own("otelcol_receiver_accepted_metric_points", "receiver"), "accepted {{receiver}}"
                ),
                query("B", own("otelcol_receiver_refused_metric_points", "receiver"), "refused {{receiver}}"),
            ],
        ),
        graph(
            "Collector: queue size against capacity",
            "Each exporter's sending queue, as a share of its capacity (bytes for the persistent "
            "trace queues of collector-config.yaml); the alert OtelCollectorQueueNearlyFull fires past "
            "80 %.",
            "percentunit",
            [
                query(
                    "A",
                    f"max by (exporter) (otelcol_exporter_queue_size{{{COLLECTOR}}}"
                    f" / otelcol_exporter_queue_capacity{{{COLLECTOR}}})",
                    "{{exporter}}",
                )
            ],
        ),
        graph(
            "Collector: enqueue and send failures per second",
            "Enqueue failures: spans a full queue refused. Send failures: spans an exporter gave up on "
            "(a permanent error such as 401, or retries exhausted).",
            "short",
            [
                query(
                    "A",
                    own("otelcol_exporter_enqueue_failed_spans", "exporter"),
                    "enqueue failed {{exporter}}",
                ),
                query("B", own("otelcol_exporter_send_failed_spans", "exporter"), "send failed {{exporter}}"),
            ],
        ),
        graph(
            "App SDK: spans dropped per second",
            "Spans the app's BatchSpanProcessor dropped because its queue was full "
            "(otel.sdk.processor.span.processed with error.type=queue_full; needs "
            "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED=true in the app).",
            "short",
            [
                query(
                    "A",
                    "sum by (job) (rate(otel_sdk_processor_span_processed_total"
                    f'{{job=~"$service", error_type="queue_full"}}[{WINDOW}]))',
                    "{{job}}",
                )
            ],
        ),
        stat.Panel()
        .title("App SDK: spans waiting in the queue")
        .description(
            "The fullest BatchSpanProcessor queue of the selected services "
            "(otel.sdk.processor.span.queue.size); its capacity is OTEL_BSP_MAX_QUEUE_SIZE, 2048 by "
            "default (under opentelemetry-instrument the SDK records otel.sdk.processor.span.queue.capacity "
            "before a MeterProvider exists, so it never arrives)."
        )
        .datasource(DATASOURCE)
        .unit("short")
        .height(8)
        .span(8)
        .with_target(
            query("A", 'max by (job) (otel_sdk_processor_span_queue_size{job=~"$service"})', "{{job}}")
        ),
    ]


def build() -> dict[str, Any]:
    """The dashboard as the JSON object Grafana imports."""
    board = (
        dashboard.Dashboard("otel-portkey: LLM calls through Portkey, and the telemetry pipeline")
        .uid(UID)
        .tags(["otel-portkey", "portkey", "opentelemetry"])
        .description(
            "Generated by examples/grafana/generate.py from otel-portkey's metrics, the OSS gateway's and "
            "the Collector's own; every panel is tested against a real Prometheus (tests/test_dashboard.py)."
        )
        .editable()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .time("now-1h", "now")
        .refresh("30s")
        .timezone("browser")
        .variables(variables())
    )
    rows = [
        ("Calls", calls_row()),
        ("What Portkey did", portkey_row()),
        ("Inside the gateway", gateway_row()),
        ("The pipeline", pipeline_row()),
    ]
    for title, panels in rows:
        board = board.with_row(dashboard.Row(title))
        for panel in panels:
            board = board.with_panel(panel)
    model: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    for number, panel in enumerate(model["panels"], start=1):
        panel["id"] = number  # stable ids: Grafana's links to a panel use them
    return model


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
