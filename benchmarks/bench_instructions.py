"""What one httpx2 call costs, in CPU instructions counted by valgrind's callgrind: repeatable on a
shared, noisy machine, where CPU-time figures drift by more than the differences measured.

Each configuration runs in a process of its own under callgrind, twice (``FEW`` and ``MANY`` calls
after a warm-up); the difference divided by the extra calls is the instructions of one call, start-up
and imports cancelled. The network is taken out as in ``bench_offline`` (the transport's pool answers
from memory). Configurations, in ``opentelemetry-instrument``'s order:

* ``instrumented``: the httpx2 instrumentation alone;
* ``contract``: plus the hand-written contract hooks (``bench_offline._contract_hooks``), the floor;
* ``bridge``: plus the bridge attached as ``opentelemetry-instrument`` attaches it, metrics off;
* ``bridge, metrics``: the same with an SDK ``MeterProvider`` (exemplars ``trace_based``);
* ``contract, point``: the contract hooks plus a hand-written response hook recording the same
  histogram point and counter add, with the same attributes, on the same SDK ``MeterProvider``: the
  floor of what recording the two points costs;
* ``other request, bridge`` / ``other request``: a request that is not Portkey-bound, with and
  without the bridge installed (what the bridge costs everything else, its span processor on the
  call's two spans included); ``..., processor off``: the same with the processor switched off, so
  only the seam (the hooks and the propagator) is left.

``python benchmarks/bench_instructions.py [--src DIR ...]`` (each ``--src`` a tree's ``src``, e.g. a
``git worktree`` of an earlier commit: its figures go side by side). About a minute per configuration
and tree.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FEW, MANY = 100, 600
CONFIGS = (
    "instrumented",
    "contract",
    "bridge",
    "bridge, metrics",
    "contract, point",
    "other request",
    "other request, bridge",
    "other request, bridge, processor off",
)

# Run inside the measured process: one configuration, ``count`` calls after a warm-up.
CHILD = r"""
import sys
sys.path.insert(0, {here!r})
config, count = sys.argv[1], int(sys.argv[2])
import httpx2
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
import bench_offline, harness

harness.sdk_provider()
meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
gateway = bench_offline.GATEWAY
hooks = bench_offline._contract_hooks()
if config == "contract, point":
    meter = meters.get_meter("bench")
    duration = meter.create_histogram("portkey.gateway.request.duration", unit="s")
    retries = meter.create_counter("portkey.gateway.retries", unit="{{retry}}")
    answer_hook = hooks["response_hook"]

    def response_hook(span, request, response):
        answer_hook(span, request, response)
        get = response.headers.get
        attributes = {{
            "portkey.fallback": False,
            "portkey.provider": get("x-portkey-provider", ""),
            "portkey.cache.status": get("x-portkey-cache-status", ""),
            "http.response.status_code": response.status_code,
            "server.address": "gateway.bench",
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o",
        }}
        context = trace.set_span_in_context(span)
        duration.record(0.3, attributes, context=context)
        retries.add(int(get("x-portkey-retry-attempt-count", "0")), attributes, context=context)

    hooks["response_hook"] = response_hook
if config.startswith("contract"):
    harness.instrumented(HTTPX2ClientInstrumentor, **hooks)()
elif config.startswith("bridge"):
    with_metrics = config == "bridge, metrics"
    if with_metrics:
        metrics.set_meter_provider(meters)
    from otel_portkey import PortkeyInstrumentor
    from otel_portkey._otel import instrumentor as bridge_module
    bridge_module._auto_instrumentation_starting()  # as opentelemetry-instrument orders them
    HTTPX2ClientInstrumentor().instrument()
    PortkeyInstrumentor().instrument(gateway_urls=[gateway], metrics=with_metrics)
    bridge_module._auto_instrumentation_finished()
elif config.startswith("other request, bridge"):
    harness.auto_bridged(HTTPX2ClientInstrumentor, gateway)()
    if config.endswith("processor off"):  # the seam alone: hooks and propagator, no span processor
        from otel_portkey import PortkeySpanProcessor
        provider = trace.get_tracer_provider()
        for processor in provider._active_span_processor._span_processors:
            if isinstance(processor, PortkeySpanProcessor):
                processor.enabled = False
else:
    harness.instrumented(HTTPX2ClientInstrumentor)()
url = bench_offline.URL if not config.startswith("other") else "http://elsewhere.bench/v1/x"
tracer = trace.get_tracer("bench")
caller = {{"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"}}
headers = {{"authorization": "Bearer sk-bench"}}
with bench_offline._client("httpx2", "sync") as client:
    for _ in range(count + 20):  # 20 warm-up calls: caches filled, layouts probed
        with tracer.start_as_current_span("chat gpt-4o", attributes=caller):
            client.post(url, json=bench_offline.BODY, headers=headers).read()
"""


def instructions(src: str | None, config: str, count: int) -> int:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if src:
        env["PYTHONPATH"] = src
    result = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-c",
            CHILD.format(here=str(HERE)),
            config,
            str(count),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    found = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode != 0 or found is None:
        raise RuntimeError(f"{config} failed: {result.stderr[-2000:]}")
    return int(found.group(1))


def per_call(src: str | None, config: str) -> float:
    return (instructions(src, config, MANY) - instructions(src, config, FEW)) / (MANY - FEW)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--src", action="append", default=None, help="a tree's src (default: this one)")
    parser.add_argument("--only", action="append", default=None, help="configurations to run")
    options = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is needed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 1
    trees = options.src or [str(HERE.parent / "src")]
    configs = options.only or list(CONFIGS)
    figures = {tree: {config: per_call(tree, config) for config in configs} for tree in trees}
    print("### Instructions per httpx2 call (callgrind, network taken out)\n")
    print("| configuration | " + " | ".join(trees) + " |")
    print("|---|" + "---|" * len(trees))
    for config in configs:
        print(f"| {config} | " + " | ".join(f"{figures[t][config]:,.0f}" for t in trees) + " |")
    print()
    for tree in trees:
        f = figures[tree]
        lines = [f"**{tree}**:"]
        if {"instrumented", "contract", "bridge"} <= f.keys():
            contract = f["contract"] - f["instrumented"]
            bridge = f["bridge"] - f["instrumented"]
            lines.append(
                f"bridge adds {bridge:,.0f}, contract adds {contract:,.0f}: {bridge / contract:.2f}x"
            )
        if {"bridge", "bridge, metrics", "contract", "contract, point"} <= f.keys():
            ours = f["bridge, metrics"] - f["bridge"]
            floor = f["contract, point"] - f["contract"]
            lines.append(
                f"metrics add {ours:,.0f}, the SDK's own two points {floor:,.0f}: beyond {ours - floor:,.0f}"
            )
        if {"other request", "other request, bridge"} <= f.keys():
            lines.append(
                f"a request not Portkey-bound: {f['other request, bridge'] - f['other request']:,.0f}"
            )
        print("; ".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
