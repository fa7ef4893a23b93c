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


def promtool(binary: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary, *map(str, args)], capture_output=True, text=True, timeout=120, check=False)


def test_rules_pass_promtool_check(prometheus_binary: dict[str, str]) -> None:
    result = promtool(prometheus_binary["PROMTOOL"], "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 10 rules found" in result.stdout


def test_example_scrape_config_passes_promtool_check(prometheus_binary: dict[str, str]) -> None:
    result = promtool(prometheus_binary["PROMTOOL"], "check", "config", EXAMPLES / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout  # portkey-rules.yaml, found beside it


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
