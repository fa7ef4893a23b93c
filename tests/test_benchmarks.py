"""The benchmark harness still runs (smoke mode: a few iterations). No timing is asserted here:
figures live in BENCHMARKS.md and come from ``make bench``."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent


def test_benchmarks_run_in_smoke_mode():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for section in (
        "### Per call",
        "### Per call of each client",
        "### The seam per client",
        "### Span processor",
        "### Memory over many calls",
        "### Metrics per call",
        "### Metrics on the bridge's hooks",
        "### Where the metrics' time goes",
        "### Metrics memory over",
        "### Start-up",
        "### Targets",
    ):
        assert section in result.stdout
    rows = [
        line
        for line in result.stdout.splitlines()
        if line.startswith(("| httpx sync", "| httpx async", "| httpx2 "))
    ]
    assert len(rows) == 8, "httpx and httpx2, sync and async, offline and on loopback"
    for client in ("requests", "urllib", "urllib3", "aiohttp"):
        assert sum(line.startswith(f"| {client} |") for line in result.stdout.splitlines()) == 2, client


def test_the_gateway_benchmark_runs_in_smoke_mode(oss_gateway):  # the fixture: the gateway is installed
    """``benchmarks/bench_gateway.py`` (not part of ``run.py``: it runs node processes) still runs:
    both gateways answer, the traced one exported a span per call. No figure is asserted."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_gateway.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "### Per call through the OSS gateway" in result.stdout
    assert "### The gateway process's resident memory" in result.stdout
    for row in ("| model directly (no gateway) |", "| gateway, tracing off |", "| gateway, tracing on |"):
        assert result.stdout.count(row) >= 1, row
    exported = re.search(r"exported (\d+) SERVER and (\d+) CLIENT spans for its (\d+) calls", result.stdout)
    assert exported is not None, result.stdout
    assert exported[1] == exported[2] == exported[3], (
        "one node and one attempt per call to the traced gateway"
    )
