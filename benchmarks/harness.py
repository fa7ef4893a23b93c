"""Shared benchmark machinery: interleaved rounds, medians, a model server in its own process."""

from __future__ import annotations

import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from otel_portkey import PortkeyInstrumentor
from otel_portkey.testing import free_port


class DiscardingExporter(SpanExporter):
    """Exports nothing: the benchmarks measure the app's side, not a backend."""

    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def sdk_provider() -> TracerProvider:
    """The global SDK provider, set once. Spans go through a synchronous processor to an exporter
    that discards them: a batch processor's worker thread would compete for the GIL and, at these
    rates, fill its queue and drop spans, adding noise that belongs to neither side."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(DiscardingExporter()))
        trace.set_tracer_provider(provider)
    return provider


@contextmanager
def model_server() -> Iterator[str]:
    """The scripted model in a child process (its CPU is not the client's); yields its root URL."""
    port = free_port()
    code = (
        "import time\nfrom otel_portkey.testing import ScriptedModelServer\n"
        f"ScriptedModelServer(port={port}).start()\nprint('ready', flush=True)\ntime.sleep(1e9)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        if process.stdout is None or process.stdout.readline().strip() != "ready":
            raise RuntimeError("the scripted model server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


Samples = dict[str, list[tuple[float, float]]]
Config = Callable[[], Callable[[], None]]  # sets a configuration up and returns its tear-down


def bare() -> Callable[[], None]:
    """No configuration: nothing to set up or tear down."""
    return lambda: None


def instrumented(instrumentor: Any, **hooks: Any) -> Config:
    """The client instrumentation alone, given ``hooks`` (the hand-written contract's, or none)."""

    def setup() -> Callable[[], None]:
        instrumentor().instrument(**hooks)
        return lambda: instrumentor().uninstrument()

    return setup


def bridged(instrumentor: Any, gateway: str, **bridge: Any) -> Config:
    """The bridge (with ``bridge``'s arguments to ``instrument``), then the client instrumentation,
    in the order ``opentelemetry-instrument`` makes them: the instrumentation then carries the
    bridge's hooks (one made before it gets none)."""

    def setup() -> Callable[[], None]:
        PortkeyInstrumentor().instrument(gateway_urls=[gateway], **bridge)
        instrumentor().instrument()

        def teardown() -> None:
            instrumentor().uninstrument()
            PortkeyInstrumentor().uninstrument()

        return teardown

    return setup


def auto_bridged(instrumentor: Any, gateway: str) -> Config:
    """As ``opentelemetry-instrument`` attaches the bridge when the client instrumentation loads
    first: the pre-instrument entry point, the client instrumentation, then the bridge."""

    def setup() -> Callable[[], None]:
        from otel_portkey._otel import instrumentor as bridge_module

        bridge_module._auto_instrumentation_starting()
        instrumentor().instrument()
        PortkeyInstrumentor().instrument(gateway_urls=[gateway])
        bridge_module._auto_instrumentation_finished()

        def teardown() -> None:
            PortkeyInstrumentor().uninstrument()
            instrumentor().uninstrument()

        return teardown

    return setup


def interleave_samples(
    configs: dict[str, Config],
    run: Callable[[str], tuple[float, float]],
    rounds: int,
) -> Samples:
    """Per-round (cpu, wall) per-item seconds for each configuration; the order rotates every round.

    A configuration is a set-up function returning its tear-down; ``run(name)`` measures the
    configuration in force.
    """
    samples: Samples = {name: [] for name in configs}
    names = list(configs)
    for round_number in range(rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            teardown = configs[name]()
            try:
                samples[name].append(run(name))
            finally:
                teardown()
    return samples


def interleave(
    configs: dict[str, Config],
    run: Callable[[str], tuple[float, float]],
    rounds: int,
) -> dict[str, tuple[float, float]]:
    """Median (cpu, wall) per configuration over ``rounds`` (see :func:`interleave_samples`)."""
    samples = interleave_samples(configs, run, rounds)
    return {
        name: (statistics.median(c for c, _ in values), statistics.median(w for _, w in values))
        for name, values in samples.items()
    }


def paired_cpu(samples: Samples, minuend: str, subtrahend: str) -> float:
    """Median over rounds of the CPU difference between two configurations measured in the same
    round. The machine's speed drifts between rounds (a shared 2-core VM); within a round both
    ran seconds apart, so the paired difference cancels most of the drift."""
    return statistics.median(a[0] - b[0] for a, b in zip(samples[minuend], samples[subtrahend], strict=True))


@contextmanager
def quiet_gc() -> Iterator[None]:
    """No garbage collection inside a timed loop (it runs between loops instead): a collection
    lands on whichever configuration happens to be running and is the largest source of noise."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def timed(count: int, body: Callable[[], None]) -> tuple[float, float]:
    """Per-item (thread CPU seconds, wall seconds) of ``body`` run ``count`` times."""
    with quiet_gc():
        cpu, wall = time.thread_time(), time.perf_counter()
        for _ in range(count):
            body()
        return (time.thread_time() - cpu) / count, (time.perf_counter() - wall) / count


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} µs"


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def machine() -> str:
    """The system, its cores and their model, e.g. ``Linux x86_64, 2 cores (AMD EPYC ...)``."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu})"
