"""Run the benchmarks and print one report with the targets side by side.

    python benchmarks/run.py            # full run (a few minutes)
    python benchmarks/run.py --smoke    # a few iterations: checks that everything still runs

Figures are medians of interleaved repetitions and ratios measured in the same run; they are
never asserted as timings anywhere.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_calls
import bench_clients
import bench_memory
import bench_metrics
import bench_offline
import bench_peers
import bench_processor
import bench_seam
import bench_startup
import harness
from harness import model_server


def machine() -> str:
    return f"{harness.machine()}, Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="few iterations, to check the harness runs")
    args = parser.parse_args()
    smoke = args.smoke
    print(f"# otel-portkey benchmarks{' (smoke mode: figures are not meaningful)' if smoke else ''}\n")
    print(f"Machine: {machine()}\n")
    verdicts: list[tuple[str, str, bool | None]] = []
    report, ratios, beyond, over_contract = bench_offline.bench(
        count=5 if smoke else 200, rounds=1 if smoke else 60
    )
    print(report)
    worst_ratio = max(ratios)
    verdicts.append(
        (
            "bridge CPU ≤ 10 % of the httpx instrumentation's own",
            f"worst {worst_ratio:.0%}",
            worst_ratio <= 0.10,
        )
    )
    verdicts.append(
        (
            "(context) bridge beyond hand-written contract hooks, share of the instrumentation's CPU",
            f"worst {max(beyond):.0%}",
            None,
        )
    )
    httpx2 = max(v for k, v in over_contract.items() if k.startswith("httpx2"))
    httpx1 = max(v for k, v in over_contract.items() if k.startswith("httpx "))
    verdicts.append(
        (
            "bridge ≤ 1.3x the hand-written contract (httpx2 whole call, opentelemetry-instrument order)",
            f"worst {httpx2:.2f}x (httpx: {httpx1:.2f}x)",
            httpx2 <= 1.3,
        )
    )
    report, beyond_contract, not_bound_calls = bench_clients.bench(
        count=3 if smoke else 300, rounds=1 if smoke else 21
    )
    print(report)
    report, not_bound, beyond_at_seam = bench_seam.bench(
        count=10 if smoke else 2000, rounds=1 if smoke else 21
    )
    print(report)
    worst_beyond = max(beyond_contract.values())
    verdicts.append(
        (
            "per Portkey-bound call, the bridge adds at most the hand-written contract (every client)",
            f"worst {worst_beyond * 1e6:+.1f} µs beyond it (whole call), "
            f"{max(beyond_at_seam.values()) * 1e6:+.1f} µs (seam)",
            worst_beyond <= 0,
        )
    )
    worst_not_bound = max(not_bound.values())
    verdicts.append(
        (
            "a request that is not Portkey-bound pays < 1 µs (every client)",
            f"worst {worst_not_bound * 1e6:.2f} µs at the seam, "
            f"{max(not_bound_calls.values()) * 1e6:.1f} µs per whole call (span processor included)",
            worst_not_bound < 1e-6,
        )
    )
    with model_server() as gateway:
        report, _ = bench_calls.bench(gateway, count=2 if smoke else 100, rounds=1 if smoke else 25)
        print(report)
        if not smoke:  # a fresh interpreter per sample: seconds each, even in smoke mode
            print(bench_peers.bench(gateway, count=200, rounds=16))
    report, processor = bench_processor.bench(count=200 if smoke else 20_000, rounds=1 if smoke else 15)
    print(report)
    worst = max(processor.values())
    verdicts.append(("processor ≤ 2 µs per span", f"worst {worst * 1e6:.2f} µs", worst <= 2e-6))
    report, memory = bench_memory.bench(calls=200 if smoke else 100_000)
    print(report)
    growth = max(memory.values())
    verdicts.append(("memory growth < 1 MB over 100k calls", f"worst {growth / 1e6:.3f} MB", growth < 1e6))
    report, metrics = bench_metrics.bench(smoke=smoke)
    print(report)
    verdicts.append(
        (
            "metrics add ≤ 3 µs CPU per call (SDK MeterProvider, exemplars trace_based; the hooks path)",
            f"{metrics['hooks'] * 1e6:.1f} µs on the hooks ({metrics['hooks, retried calls'] * 1e6:.1f} µs "
            f"for retried calls), {metrics['whole call, worst'] * 1e6:.1f} µs worst whole call; "
            f"no MeterProvider: {metrics['hooks, no MeterProvider'] * 1e6:.1f} µs",
            metrics["hooks"] <= 3e-6,
        )
    )
    flat = metrics["memory growth after the first checkpoint"]
    points = max(metrics["duration points"], metrics["retries points"])
    verdicts.append(
        (
            "metrics memory flat over 100k calls naming 10k models (< 100 KiB after the first 10k), "
            "≤ 101 points per instrument",
            f"{flat / 1024:+.1f} KiB from 10k to 100k calls, {points:.0f} points",
            flat < 100 * 1024 and points <= 101,
        )
    )
    report, startup = bench_startup.bench(runs=1 if smoke else 7, others=not smoke)
    print(report)
    verdicts.append(
        ("import < 30 ms, no LLM SDK imported", f"{startup['import_ms']:.1f} ms", startup["import_ms"] < 30)
    )
    print("### Targets\n\n| target | measured | met |\n|---|---|---|")
    for target, measured, met in verdicts:
        print(f"| {target} | {measured} | {'—' if met is None else 'yes' if met else 'NO'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
