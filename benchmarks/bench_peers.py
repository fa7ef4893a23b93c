"""What peers add on the same calls, next to the bridge: the official GenAI instrumentations for
openai and portkey-ai, and OpenLLMetry's openai instrumentation (when installed: ``make bench``).

Every sample runs in a fresh interpreter: OpenLLMetry's ``uninstrument`` leaves wrappers behind
(measured: an openai call went from 1.65 to 2.32 to 2.77 ms of CPU over three instrument /
uninstrument cycles), so in one process each round would pay for every earlier one, and so would
every configuration measured after it. A child process instruments once, warms up, times its
calls and prints the per-call CPU; the rounds still interleave the configurations.
"""

from __future__ import annotations

import importlib
import itertools
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from harness import interleave_samples, paired_cpu, sdk_provider, table, timed, us

MESSAGES = [{"role": "user", "content": "hi"}]
BASE = "SDK + httpx instrumentation"
BRIDGE = "+ otel-portkey bridge"
# suite -> (httpx instrumentor, peers: configuration name -> (module, instrumentor class name))
SUITES: dict[str, tuple[str, dict[str, tuple[str, str]]]] = {
    "openai 3.x SDK (httpx2)": (
        "HTTPX2ClientInstrumentor",
        {
            "+ GenAI openai": ("opentelemetry.instrumentation.genai.openai", "OpenAIInstrumentor"),
            "+ OpenLLMetry openai": ("opentelemetry.instrumentation.openai", "OpenAIInstrumentor"),
        },
    ),
    "portkey-ai SDK (httpx)": (
        "HTTPXClientInstrumentor",
        {"+ GenAI portkey": ("opentelemetry.instrumentation.genai.portkey", "PortkeyInstrumentor")},
    ),
}


def _installed(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _client(suite: str, gateway: str) -> Any:
    if suite.startswith("openai"):
        import openai

        return openai.OpenAI(
            base_url=f"{gateway}/v1", api_key="sk-bench", default_headers={"x-portkey-provider": "openai"}
        )
    from portkey_ai import Portkey

    return Portkey(base_url=f"{gateway}/v1", provider="openai", Authorization="Bearer sk-bench")


def child(suite: str, configuration: str, gateway: str, count: int) -> None:
    """Instrument one configuration, then print ``<cpu> <wall>`` seconds per call."""
    from opentelemetry import trace
    from opentelemetry.instrumentation import httpx as otel_httpx

    sdk_provider()
    http_name, peers = SUITES[suite]
    if configuration == BRIDGE:  # first, as opentelemetry-instrument orders them: then httpx gets its hooks
        from otel_portkey import PortkeyInstrumentor

        PortkeyInstrumentor().instrument(gateway_urls=[gateway])
    getattr(otel_httpx, http_name)().instrument()
    if configuration not in (BASE, BRIDGE):
        module, name = peers[configuration]
        getattr(importlib.import_module(module), name)().instrument()
    client = _client(suite, gateway)
    tracer = trace.get_tracer("bench")

    def one() -> None:
        with tracer.start_as_current_span("app"):
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    for _ in range(5):
        one()
    cpu, wall = timed(count, one)
    print(cpu, wall)


def bench(gateway: str, count: int, rounds: int) -> str:
    rows = []
    for suite, (_, peers) in SUITES.items():
        names = [BASE, BRIDGE] + [name for name, (module, _) in peers.items() if _installed(module)]
        missing = [name for name, (module, _) in peers.items() if not _installed(module)]

        samples_taken = itertools.count()

        def run(
            name: str,
            suite: str = suite,
            samples_taken: Iterator[int] = samples_taken,
            per_round: int = len(names),
        ) -> tuple[float, float]:
            # One hash seed per round, shared by the configurations of that round: the layout a
            # seed gives affects every configuration alike, and differs from round to round.
            seed = next(samples_taken) // per_round
            output = subprocess.run(
                [sys.executable, __file__, suite, name, gateway, str(count)],
                capture_output=True,
                env={**os.environ, "PYTHONHASHSEED": str(seed)},
                text=True,
                check=True,
            ).stdout.split()
            return float(output[-2]), float(output[-1])

        samples = interleave_samples({name: lambda: lambda: None for name in names}, run, rounds)
        for name, values in samples.items():
            cpu = statistics.median(c for c, _ in values)
            added = "—" if name == BASE else us(paired_cpu(samples, name, BASE))
            rows.append([suite, name, us(cpu), added])
        for name in missing:
            rows.append([suite, name, "not installed", "(run `make bench`)"])
    header = ["client", "configuration", "CPU per call", "added by the instrumentation"]
    title = (
        f"Next to peers ({count} calls x {rounds} interleaved rounds, a fresh interpreter per sample, "
        "paired CPU medians)"
    )
    return table(title, header, rows)


if __name__ == "__main__":
    child(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
