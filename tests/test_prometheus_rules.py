"""examples/prometheus: promtool (Debian's Prometheus package) checks the rules and the scrape
configuration and runs the rules' unit tests; copies with one expectation or one rule changed fail."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "prometheus"
RULES = EXAMPLES / "portkey-rules.yaml"
RULE_TESTS = EXAMPLES / "portkey-rules.test.yaml"
PIPELINE_RULES = EXAMPLES / "pipeline-rules.yaml"
PIPELINE_TESTS = EXAMPLES / "pipeline-rules.test.yaml"


def promtool(binary: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary, *map(str, args)], capture_output=True, text=True, timeout=120, check=False)


def test_rules_pass_promtool_check(prometheus_binary: dict[str, str]) -> None:
    result = promtool(prometheus_binary["PROMTOOL"], "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 10 rules found" in result.stdout


def test_example_scrape_config_passes_promtool_check(prometheus_binary: dict[str, str]) -> None:
    result = promtool(prometheus_binary["PROMTOOL"], "check", "config", EXAMPLES / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rule files found" in result.stdout  # portkey- and pipeline-rules.yaml, beside it


def test_rules_pass_their_unit_tests(prometheus_binary: dict[str, str]) -> None:
    # several runs: `sum` adds series in an order that changes from run to run, so an expected value
    # that holds only for one order (0.2 against 0.19999999999999996) fails some runs, not all
    for _ in range(8):
        result = promtool(prometheus_binary["PROMTOOL"], "test", "rules", RULE_TESTS)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("changed", "old", "new", "failing"),
    [
        # an expected value: the fallback ratio is 0.25, not 0.3
        (RULE_TESTS, "value: 0.25", "value: 0.3", "portkey:fallback:ratio_rate5m"),
        # a rule without its request-rate floor: bedrock/titan's one failing call a minute would page
        (
            RULES,
            "ratio_rate5m > 0.05\n          and portkey:gateway_requests:rate5m >= 0.1",
            "ratio_rate5m > 0.05",
            "PortkeyGatewayErrors",
        ),
        # a shorter `for:`: the alert fires while the unit tests expect it pending
        (RULES, "for: 10m", "for: 1m", "PortkeyFallbackRatioHigh"),
    ],
    ids=["expected-value", "no-floor", "short-for"],
)
def test_a_changed_copy_fails(
    prometheus_binary: dict[str, str], tmp_path: Path, changed: Path, old: str, new: str, failing: str
) -> None:
    for source in (RULES, RULE_TESTS):
        shutil.copy(source, tmp_path / source.name)
    copy = tmp_path / changed.name
    text = copy.read_text()
    assert text.count(old) == 1
    copy.write_text(text.replace(old, new))

    result = promtool(prometheus_binary["PROMTOOL"], "test", "rules", tmp_path / RULE_TESTS.name)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED" in result.stdout + result.stderr
    assert failing in result.stdout + result.stderr


def test_pipeline_rules_pass_promtool_check(prometheus_binary: dict[str, str]) -> None:
    result = promtool(prometheus_binary["PROMTOOL"], "check", "rules", PIPELINE_RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout


def test_pipeline_rules_pass_their_unit_tests(prometheus_binary: dict[str, str]) -> None:
    for _ in range(3):  # `sum` adds series in no fixed order (see above)
        result = promtool(prometheus_binary["PROMTOOL"], "test", "rules", PIPELINE_TESTS)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("changed", "old", "new", "failing"),
    [
        # a higher threshold: Jaeger's queue at 90 % would not warn
        (PIPELINE_RULES, ") > 0.8", ") > 0.95", "OtelCollectorQueueNearlyFull"),
        # no guard on the capacity: an exporter reporting 0 would divide by zero and warn
        (
            PIPELINE_RULES,
            "(otelcol_exporter_queue_capacity > 0)",
            "otelcol_exporter_queue_capacity",
            "OtelCollectorQueueNearlyFull",
        ),
        # a shorter `for:`: the send failures fire while the unit tests expect them pending
        (PIPELINE_RULES, "for: 10m", "for: 1m", "OtelCollectorSendFailures"),
        # every processed span counted, not only those dropped: checkout's 10 exported spans/s too
        (PIPELINE_RULES, '_total{error_type="queue_full"}[', "_total[", "OtelSdkSpansDropped"),
        # refusals summed per Collector, not per receiver: the expected labels differ
        (PIPELINE_RULES, "(job, instance, receiver)", "(job, instance)", "OtelCollectorRefusingSpans"),
        # an expected label: the failing exporter is Portkey's, not Jaeger's
        (
            PIPELINE_TESTS,
            "exporter: otlp_http/portkey",
            "exporter: otlp_grpc/jaeger",
            "OtelCollectorSendFailures",
        ),
    ],
    ids=[
        "queue-threshold",
        "queue-no-capacity-guard",
        "send-short-for",
        "sdk-every-span",
        "refused-by",
        "expected-label",
    ],
)
def test_a_changed_copy_of_the_pipeline_rules_fails(
    prometheus_binary: dict[str, str], tmp_path: Path, changed: Path, old: str, new: str, failing: str
) -> None:
    for source in (PIPELINE_RULES, PIPELINE_TESTS):
        shutil.copy(source, tmp_path / source.name)
    copy = tmp_path / changed.name
    text = copy.read_text()
    assert text.count(old) == 1
    copy.write_text(text.replace(old, new))

    result = promtool(prometheus_binary["PROMTOOL"], "test", "rules", tmp_path / PIPELINE_TESTS.name)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED" in result.stdout + result.stderr
    assert failing in result.stdout + result.stderr
