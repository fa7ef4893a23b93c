"""Per Portkey-bound call: bare client, + OTel httpx instrumentation, + the bridge (with and
without context metadata), for httpx and httpx2, sync and async, against a loopback model."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable

import httpx
import httpx2
from harness import (
    Config,
    bare,
    bridged,
    instrumented,
    interleave_samples,
    paired_cpu,
    quiet_gc,
    sdk_provider,
    table,
    timed,
    us,
)
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor, HTTPXClientInstrumentor

from otel_portkey import portkey_metadata

MODULES = {"httpx": (httpx, HTTPXClientInstrumentor), "httpx2": (httpx2, HTTPX2ClientInstrumentor)}
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
PORTKEY_HEADERS = {"x-portkey-provider": "openai", "authorization": "Bearer sk-bench"}


def configurations(flavour: str, gateway: str) -> dict[str, Config]:
    _, instrumentor = MODULES[flavour]
    return {
        "bare client": bare,
        "+ httpx instrumentation": instrumented(instrumentor),
        "+ bridge": bridged(instrumentor, gateway),
        "+ bridge, metadata": bridged(instrumentor, gateway),
    }


def run_calls(flavour: str, mode: str, url: str, count: int) -> Callable[[str], tuple[float, float]]:
    module, _ = MODULES[flavour]
    tracer = trace.get_tracer("bench")

    def sync() -> tuple[float, float]:
        with module.Client() as client:
            client.post(url, json=BODY, headers=PORTKEY_HEADERS)  # warm the connection

            def one() -> None:
                with tracer.start_as_current_span("chat gpt-4o"):
                    client.post(url, json=BODY, headers=PORTKEY_HEADERS).read()

            return timed(count, one)

    def async_() -> tuple[float, float]:
        async def main() -> tuple[float, float]:
            async with module.AsyncClient() as client:
                await client.post(url, json=BODY, headers=PORTKEY_HEADERS)
                with quiet_gc():
                    cpu, wall = time.thread_time(), time.perf_counter()
                    for _ in range(count):
                        with tracer.start_as_current_span("chat gpt-4o"):
                            await (await client.post(url, json=BODY, headers=PORTKEY_HEADERS)).aread()
                    return (time.thread_time() - cpu) / count, (time.perf_counter() - wall) / count

        return asyncio.run(main())

    measure = sync if mode == "sync" else async_

    def run(name: str) -> tuple[float, float]:
        if name.endswith("metadata"):
            with portkey_metadata(_user="u-1", session="s-1"):
                return measure()
        return measure()

    return run


def bench(gateway: str, count: int, rounds: int) -> tuple[str, list[float]]:
    sdk_provider()
    url = f"{gateway}/v1/chat/completions"
    rows, ratios = [], []
    for flavour in MODULES:
        for mode in ("sync", "async"):
            samples = interleave_samples(
                configurations(flavour, gateway), run_calls(flavour, mode, url, count), rounds
            )
            plain = {
                name: (statistics.median(c for c, _ in v), statistics.median(w for _, w in v))
                for name, v in samples.items()
            }
            bare = plain["bare client"][0]
            inst = bare + paired_cpu(samples, "+ httpx instrumentation", "bare client")
            bridge = inst + paired_cpu(samples, "+ bridge", "+ httpx instrumentation")
            bridge_md = inst + paired_cpu(samples, "+ bridge, metadata", "+ httpx instrumentation")
            instrumentation_cost = inst - bare
            ratio = (bridge - inst) / instrumentation_cost if instrumentation_cost > 0 else float("nan")
            ratio_md = (bridge_md - inst) / instrumentation_cost if instrumentation_cost > 0 else float("nan")
            ratios += [ratio, ratio_md]
            rows.append(
                [
                    f"{flavour} {mode}",
                    us(bare),
                    us(inst),
                    us(bridge),
                    us(bridge_md),
                    f"{ratio:.1%}",
                    f"{ratio_md:.1%}",
                    us(plain["+ bridge"][1] - plain["+ httpx instrumentation"][1]),
                ]
            )
    header = [
        "client",
        "bare CPU/call",
        "+ httpx instr.",
        "+ bridge",
        "+ bridge, metadata",
        "bridge / instr. cost",
        "same, with metadata",
        "bridge wall/call",
    ]
    return table(f"Per call ({count} calls x {rounds} interleaved rounds, medians)", header, rows), ratios
