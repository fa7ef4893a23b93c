"""Start-up: ``import otel_portkey`` (python -X importtime) and ``opentelemetry-instrument`` with and
without the bridge."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness import table

PYTHON = sys.executable
INSTRUMENT = str(Path(sys.executable).with_name("opentelemetry-instrument"))
SDKS = ("openai", "portkey_ai", "langchain", "httpx", "httpx2", "requests", "google.protobuf")


def import_cost(runs: int) -> tuple[float, list[str]]:
    """Median microseconds ``import otel_portkey`` adds, and which heavy modules it pulled in."""
    samples = []
    loaded: list[str] = []
    for _ in range(runs):
        result = subprocess.run(
            [
                PYTHON,
                "-X",
                "importtime",
                "-c",
                f"import otel_portkey, sys; print([m for m in {SDKS!r} if m in sys.modules])",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        line = next(line for line in result.stderr.splitlines() if line.rstrip().endswith("| otel_portkey"))
        samples.append(int(line.split("|")[1]))
        loaded = eval(result.stdout.strip())  # a list literal printed above
    return statistics.median(samples), loaded


def instrument_start(runs: int, others: bool = True) -> dict[str, float]:
    """``others=False`` (smoke mode) loads no other instrumentation: seconds faster, figures not
    comparable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none")
    if others:
        disabled = []
    else:
        from importlib.metadata import entry_points

        disabled = [
            ep.name for ep in entry_points(group="opentelemetry_instrumentor") if ep.name != "otel_portkey"
        ]
    variants = {
        "without the bridge": {
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": ",".join([*disabled, "otel_portkey"])
        },
        "with the bridge": {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": ",".join(disabled)},
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(runs):
        for name, extra in variants.items():
            started = time.perf_counter()
            subprocess.run([INSTRUMENT, PYTHON, "-c", "pass"], env={**env, **extra}, check=True)
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in samples.items()}


def bench(runs: int, others: bool = True) -> tuple[str, dict[str, float]]:
    import_us, loaded = import_cost(runs)
    starts = instrument_start(runs, others)
    added = starts["with the bridge"] - starts["without the bridge"]
    rows = [
        [
            "import otel_portkey",
            f"{import_us / 1000:.1f} ms",
            "heavy modules loaded: " + (", ".join(loaded) or "none"),
        ],
        [
            "opentelemetry-instrument python -c pass, without the bridge",
            f"{starts['without the bridge'] * 1000:.0f} ms",
            "",
        ],
        [
            "the same, with the bridge",
            f"{starts['with the bridge'] * 1000:.0f} ms",
            f"added: {added * 1000:+.0f} ms",
        ],
    ]
    return table(f"Start-up (medians of {runs} runs)", ["what", "time", "note"], rows), {
        "import_ms": import_us / 1000,
        "instrument_added_ms": added * 1000,
    }
