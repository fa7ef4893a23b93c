"""The real Prometheus (Debian's package) run by tests/components.py: it scrapes itself, and it keeps
the exemplars of an OpenMetrics target shaped like the Collector's exporter while
examples/prometheus/portkey-rules.yaml records from that target's series."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from otel_portkey.testing import free_port

from components import Prometheus, PrometheusError

pytestmark = pytest.mark.integration

RULES = Path(__file__).resolve().parent.parent / "examples" / "prometheus" / "portkey-rules.yaml"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def test_prometheus_scrapes_itself(prometheus_binary: dict[str, str]) -> None:
    port = free_port()
    prometheus = Prometheus(prometheus_binary["PROMETHEUS"], [f"127.0.0.1:{port}"], port=port)
    try:
        result = prometheus.wait_for("up == 1", lambda result: len(result) == 1)
        assert [sample["metric"] for sample in result] == [
            {"__name__": "up", "job": "otel-portkey", "instance": f"127.0.0.1:{port}"}
        ]
        assert result[0]["value"][1] == "1"
        assert prometheus.rules() == []
        with pytest.raises(PrometheusError, match="bad_data"):
            prometheus.query("up ==")
    finally:
        prometheus.stop()


class _Target:
    """An OpenMetrics target shaped like the Collector's `prometheus` exporter: one call more per
    scrape (0.25 s, a cache HIT, one retry), each bucket with an exemplar; it records the Accept
    header of every scrape."""

    def __init__(self) -> None:
        self.accept: list[str] = []
        self.scrapes = 0
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                target.accept.append(self.headers.get("Accept", ""))
                target.scrapes += 1
                body = target.exposition(target.scrapes).encode()
                self.send_response(200)
                self.send_header("Content-Type", OPENMETRICS)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def exposition(calls: int) -> str:
        labels = (
            'gen_ai_operation_name="chat",gen_ai_request_model="gpt-4o",http_response_status_code="200",'
            'portkey_cache_status="HIT",portkey_fallback="false",portkey_provider="openai",'
            'server_address="127.0.0.1"'
        )
        exemplar = f'# {{span_id="{SPAN_ID}",trace_id="{TRACE_ID}"}} 0.25 {time.time():.3f}'
        name = "portkey_gateway_request_duration_seconds"
        return "\n".join(
            [
                f"# TYPE {name} histogram",
                f"# UNIT {name} seconds",
                f'{name}_bucket{{{labels},le="0.5"}} {calls} {exemplar}',
                f'{name}_bucket{{{labels},le="+Inf"}} {calls}',
                f"{name}_sum{{{labels}}} {calls * 0.25}",
                f"{name}_count{{{labels}}} {calls}",
                "# TYPE portkey_gateway_retries counter",
                f"portkey_gateway_retries_total{{{labels}}} {calls}",
                "# EOF",
                "",
            ]
        )

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def target() -> Iterator[_Target]:
    server = _Target()
    yield server
    server.stop()


def test_openmetrics_exemplars_and_the_portkey_rules(
    prometheus_binary: dict[str, str], target: _Target
) -> None:
    start = time.time()
    prometheus = Prometheus(prometheus_binary["PROMETHEUS"], [target.address], rule_files=[RULES])
    try:
        per_model = {"portkey_provider": "openai", "gen_ai_request_model": "gpt-4o"}
        requests = prometheus.wait_for(
            "portkey:gateway_requests:rate5m",
            lambda result: bool(result) and float(result[0]["value"][1]) > 0,
        )
        assert [sample["metric"] for sample in requests] == [
            {"__name__": "portkey:gateway_requests:rate5m", **per_model}
        ]
        # Prometheus 2.x asks for OpenMetrics first, without any scrape setting.
        assert target.accept[0].startswith("application/openmetrics-text;version=1.0.0,")

        exemplars = prometheus.exemplars(
            "portkey_gateway_request_duration_seconds_bucket", start - 60, time.time() + 60
        )
        assert len(exemplars) == 1
        assert exemplars[0]["seriesLabels"]["le"] == "0.5"
        assert exemplars[0]["exemplars"][0]["labels"] == {"trace_id": TRACE_ID, "span_id": SPAN_ID}
        assert float(exemplars[0]["exemplars"][0]["value"]) == 0.25

        ratios = {
            "portkey:cache_hit:ratio_rate5m": 1.0,
            "portkey:fallback:ratio_rate5m": 0.0,
            "portkey:gateway_errors:ratio_rate5m": 0.0,
            "portkey:retries_per_request:ratio_rate5m": 1.0,
        }
        for name, expected in ratios.items():
            result = prometheus.wait_for(name, bool)
            assert [sample["metric"] for sample in result] == [{"__name__": name, **per_model}]
            assert float(result[0]["value"][1]) == expected, name
        p95 = prometheus.wait_for("portkey:gateway_request_duration_seconds:p95_5m", bool)
        assert float(p95[0]["value"][1]) == pytest.approx(0.475)  # 95 % of the way through (0, 0.5]

        deadline = time.monotonic() + 30
        while True:
            groups = prometheus.rules()
            health = {rule["name"]: rule["health"] for group in groups for rule in group["rules"]}
            if set(health.values()) == {"ok"} or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        assert sorted(group["name"] for group in groups) == ["portkey.alerts", "portkey.rules"]
        assert health == dict.fromkeys(
            [
                "portkey:gateway_requests:rate5m",
                "portkey:cache_hit:ratio_rate5m",
                "portkey:fallback:ratio_rate5m",
                "portkey:retries:rate5m",
                "portkey:retries_per_request:ratio_rate5m",
                "portkey:gateway_errors:ratio_rate5m",
                "portkey:gateway_request_duration_seconds:p95_5m",
                "PortkeyGatewayErrors",
                "PortkeyFallbackRatioHigh",
                "PortkeyRetryStorm",
            ],
            "ok",
        )
        # One call a second is above every floor, yet no ratio is above its threshold.
        alerts = next(group for group in groups if group["name"] == "portkey.alerts")
        assert [rule["state"] for rule in alerts["rules"]] == ["inactive"] * 3
    finally:
        prometheus.stop()
