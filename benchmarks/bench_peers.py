"""What peers add on the same calls, next to the bridge: the official GenAI instrumentations for
openai and portkey-ai, and OpenLLMetry's openai instrumentation (when installed: ``make bench``)."""

from __future__ import annotations

import importlib
import statistics
from collections.abc import Callable
from typing import Any

import openai
from harness import interleave_samples, paired_cpu, sdk_provider, table, timed, us
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor, HTTPXClientInstrumentor
from portkey_ai import Portkey

from otel_portkey import PortkeyInstrumentor

MESSAGES = [{"role": "user", "content": "hi"}]


def _instrumentor(module: str, name: str) -> Any | None:
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError:
        return None


def _config(http: Any, extra: Any | None, **kwargs: Any) -> Callable[[], Callable[[], None]]:
    def setup() -> Callable[[], None]:
        http().instrument()
        if extra is not None:
            extra().instrument(**kwargs)

        def teardown() -> None:
            if extra is not None:
                extra().uninstrument()
            http().uninstrument()

        return teardown

    return setup


def bench(gateway: str, count: int, rounds: int) -> str:
    sdk_provider()
    tracer = trace.get_tracer("bench")
    rows = []
    suites = {
        "openai 3.x SDK (httpx2)": (
            HTTPX2ClientInstrumentor,
            lambda: openai.OpenAI(
                base_url=f"{gateway}/v1", api_key="sk-bench", default_headers={"x-portkey-provider": "openai"}
            ),
            {
                "GenAI openai": _instrumentor(
                    "opentelemetry.instrumentation.genai.openai", "OpenAIInstrumentor"
                ),
                "OpenLLMetry openai": _instrumentor(
                    "opentelemetry.instrumentation.openai", "OpenAIInstrumentor"
                ),
            },
        ),
        "portkey-ai SDK (httpx)": (
            HTTPXClientInstrumentor,
            lambda: Portkey(base_url=f"{gateway}/v1", provider="openai", Authorization="Bearer sk-bench"),
            {
                "GenAI portkey": _instrumentor(
                    "opentelemetry.instrumentation.genai.portkey", "PortkeyInstrumentor"
                )
            },
        ),
    }
    for suite, (http, make_client, peers) in suites.items():
        configs = {"SDK + httpx instrumentation": _config(http, None)}
        configs["+ otel-portkey bridge"] = _config(http, PortkeyInstrumentor, gateway_urls=[gateway])
        missing = []
        for name, peer in peers.items():
            if peer is None:
                missing.append(name)
            else:
                configs[f"+ {name}"] = _config(http, peer)

        def run(name: str, make_client: Callable[[], Any] = make_client) -> tuple[float, float]:
            client = make_client()
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

            def one() -> None:
                with tracer.start_as_current_span("app"):
                    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

            return timed(count, one)

        samples = interleave_samples(configs, run, rounds)
        base = "SDK + httpx instrumentation"
        for name, values in samples.items():
            cpu = statistics.median(c for c, _ in values)
            added = "—" if name == base else us(paired_cpu(samples, name, base))
            rows.append([suite, name, us(cpu), added])
        for name in missing:
            rows.append([suite, f"+ {name}", "not installed", "(run `make bench`)"])
    header = ["client", "configuration", "CPU per call", "added by the instrumentation"]
    return table(
        f"Next to peers ({count} calls x {rounds} interleaved rounds, paired CPU medians)", header, rows
    )
