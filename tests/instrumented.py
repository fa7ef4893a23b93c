"""Run a script under ``opentelemetry-instrument`` exporting OTLP to an in-test receiver."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def otel_env(receiver_endpoint: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PORTKEY_"))}
    env.update(
        OTEL_SERVICE_NAME="seed-agent",
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver_endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    env.update(extra)
    return env


def run_instrumented(
    script: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "opentelemetry-instrument"), sys.executable, str(ROOT / script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )
