"""What tracing the OSS gateway costs (BENCHMARKS.md, "The OSS gateway traced"; issue 26, item 8).

    .venv/bin/python benchmarks/bench_gateway.py               # the figures (under a minute)
    .venv/bin/python benchmarks/bench_gateway.py --soak 24000  # memory over a longer soak (~3 minutes)
    .venv/bin/python benchmarks/bench_gateway.py --smoke       # a few calls: checks that it runs

Two pinned OSS gateways run side by side on loopback, the same install, one plain and one traced as
``otel-portkey gateway --otlp-endpoint`` runs it (OpenTelemetry for Node preloaded, a SERVER span per
call and a CLIENT span per upstream attempt, batched every second, HTTP metrics every 10 s). The
traced one exports to OTLP receivers (``OtlpReceiver`` for the spans, ``OtlpMetricsReceiver`` for the
metrics, behind the one base URL the demo gives its gateway) in a child process of their own, as is
the scripted model (``ScriptedModelServer``): the timing process only sends calls.

Each call is one non-streamed chat completion sent over a kept-alive connection with the headers the
bridge sends (``traceparent`` and the ``x-portkey-*`` ids, fresh per call) and the routing to the
scripted model. Rounds interleave the configurations in alternating order: the model called
directly (no gateway), the gateway with tracing off, with tracing on. Per configuration: the median
and p95 of the wall time per call over every timed call, what the gateway adds over calling the
model directly, the gateway process's CPU per call (utime + stime from /proc/<pid>/stat over the
timed calls) and its resident memory (VmRSS from /proc/<pid>/status) idle, after the warm-up, after
the timed calls and after each twelfth of a soak of untimed calls, back to back, the two gateways
alternating (does it keep growing?), with its peak (VmHWM).

Figures, never assertions: the machine is shared, so only figures measured side by side in one
run compare.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from harness import model_server, quiet_gc, table

from otel_portkey._peers.oss_gateway import GATEWAY_VERSION, NODE_OTEL_PACKAGES, OssGateway, route_headers

DIRECT, OFF, ON = "model directly (no gateway)", "gateway, tracing off", "gateway, tracing on"
BODY = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).encode()
TICKS = os.sysconf("SC_CLK_TCK")
SOAK_SLICES = 12

RECEIVER = """
import sys
from otel_portkey._cli.demo import GatewayExports
from otel_portkey._cli.metrics_summary import OtlpMetricsReceiver
from otel_portkey._peers.otlp_receiver import OtlpReceiver

with OtlpReceiver() as spans, OtlpMetricsReceiver() as metrics:
    with GatewayExports(f"{spans.endpoint}/v1/traces", metrics.endpoint) as exports:
        print(exports.url, flush=True)
        for line in sys.stdin:  # "count": how many spans arrived, by kind
            kinds = [span.kind for span in spans.spans]
            print(kinds.count(2), kinds.count(3), len(kinds), flush=True)
"""


@contextmanager
def otlp_receivers() -> Iterator[subprocess.Popen[str]]:
    """The traced gateway's OTLP receivers in a child process; its first line is their base URL."""
    process = subprocess.Popen(
        [sys.executable, "-c", RECEIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        yield process
    finally:
        if process.stdin is not None:
            process.stdin.close()
        process.terminate()
        process.wait(timeout=10)


def received(receivers: subprocess.Popen[str]) -> tuple[int, int, int]:
    """(SERVER spans, CLIENT spans, all spans) the receivers hold."""
    assert receivers.stdin is not None
    assert receivers.stdout is not None
    receivers.stdin.write("count\n")
    receivers.stdin.flush()
    server, client, total = (int(n) for n in receivers.stdout.readline().split())
    return server, client, total


def node_pid(port: int) -> int:
    """The node process serving the gateway on ``port`` (found by its command line in /proc)."""
    wanted = f"--port={port}".encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            arguments = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if wanted in arguments and any(a.endswith(b"start-server.js") for a in arguments):
            return int(cmdline.parent.name)
    raise RuntimeError(f"no gateway process serves port {port}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid``, in KiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0])
    return found


@dataclass
class Target:
    """Where one configuration's calls go, and what was measured there."""

    port: int
    path: str
    headers: dict[str, str]
    pid: int | None = None  # the gateway's node process
    walls: list[float] = field(default_factory=list)  # seconds per timed call
    round_medians: list[float] = field(default_factory=list)
    cpu: float = 0.0  # the gateway's CPU seconds over the timed calls
    rss: dict[str, int] = field(default_factory=dict)  # KiB, at each point of the run
    soak_rss: list[int] = field(default_factory=list)  # KiB, after each slice of the soak
    soak_medians: list[float] = field(default_factory=list)  # seconds per call, each slice's median
    peak: int = 0  # KiB, VmHWM at the end

    def sample(self, when: str) -> None:
        if self.pid is not None:
            self.rss[when] = memory_kib(self.pid)["VmRSS"]


def bridge_headers() -> dict[str, str]:
    """What the bridge adds to a gateway call: a fresh trace and span per call."""
    trace_id, parent, node = secrets.token_hex(16), secrets.token_hex(8), secrets.token_hex(8)
    return {
        "traceparent": f"00-{trace_id}-{parent}-01",
        "x-portkey-trace-id": trace_id,
        "x-portkey-parent-span-id": parent,
        "x-portkey-span-id": node,
        "x-portkey-span-name": "chat gpt-4o",
    }


def calls(target: Target, count: int) -> list[float]:
    """``count`` calls on a fresh kept-alive connection (one untimed call opens it): wall seconds each."""
    connection = http.client.HTTPConnection("127.0.0.1", target.port, timeout=30)
    walls = []
    try:
        with quiet_gc():  # collected once before the batch, not inside it
            for n in range(count + 1):
                headers = {**target.headers, **bridge_headers()}
                start = time.perf_counter()
                connection.request("POST", target.path, BODY, headers)
                response = connection.getresponse()
                response.read()
                wall = time.perf_counter() - start
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status} from port {target.port}")
                if n:
                    walls.append(wall)
    finally:
        connection.close()
    return walls


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def signed_ms(seconds: float) -> str:
    return f"{seconds * 1e3:+.2f} ms"


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def bench(count: int, rounds: int, warmup: int, soak: int) -> str:
    with ExitStack() as stack:
        model = stack.enter_context(model_server())
        receivers = stack.enter_context(otlp_receivers())
        assert receivers.stdout is not None
        exports = receivers.stdout.readline().strip()
        plain = stack.enter_context(OssGateway())
        traced = stack.enter_context(OssGateway(otlp_endpoint=exports))
        model_port = int(model.rsplit(":", 1)[1])
        gateway_headers = {
            "content-type": "application/json",
            "authorization": "Bearer sk-bench",
            **route_headers(f"{model}/v1"),
        }
        targets = {
            DIRECT: Target(model_port, "/v1/chat/completions", {"content-type": "application/json"}),
            OFF: Target(plain.port, "/v1/chat/completions", gateway_headers, node_pid(plain.port)),
            ON: Target(traced.port, "/v1/chat/completions", gateway_headers, node_pid(traced.port)),
        }
        for target in targets.values():
            target.sample("at start")
        for target in targets.values():  # warm-up: Node's JIT, connections, the SDK's first exports
            calls(target, warmup)
        deadline = time.monotonic() + 30
        while received(receivers)[0] < warmup + 1 and time.monotonic() < deadline:
            time.sleep(0.1)  # until the traced gateway exported every warm-up call's span
        for target in targets.values():
            target.sample("after warm-up")
        names = list(targets)
        for round_number in range(rounds):
            order = names if round_number % 2 == 0 else names[::-1]
            for name in order:
                target = targets[name]
                before = cpu_seconds(target.pid) if target.pid is not None else 0.0
                walls = calls(target, count)
                if target.pid is not None:
                    target.cpu += cpu_seconds(target.pid) - before
                target.walls += walls
                target.round_medians.append(statistics.median(walls))
        for target in targets.values():
            target.sample("after the timed calls")
        # The soak, for memory only: untimed calls in slices, the two gateways alternating, RSS
        # sampled after each slice (V8 grows and shrinks its heap as it likes: one sample says little).
        for _ in range(SOAK_SLICES):
            for target in (targets[OFF], targets[ON]):
                target.soak_medians.append(statistics.median(calls(target, max(soak // SOAK_SLICES, 1))))
                assert target.pid is not None
                target.soak_rss.append(memory_kib(target.pid)["VmRSS"])
        for target in (targets[OFF], targets[ON]):
            assert target.pid is not None
            target.peak = memory_kib(target.pid)["VmHWM"]
        plain.stop()
        traced.stop()  # sends the spans it still holds
        server_spans, client_spans, _ = received(receivers)
    total = count * rounds
    # per gateway, each connection's opening call included
    soak_calls = SOAK_SLICES * (soak // SOAK_SLICES + 1)
    every_call = warmup + 1 + total + rounds + soak_calls
    direct = statistics.median(targets[DIRECT].walls)
    rows = []
    for name, target in targets.items():
        median = statistics.median(target.walls)
        rows.append(
            [
                name,
                ms(median),
                ms(p95(target.walls)),
                "—" if name == DIRECT else signed_ms(median - direct),
                "—" if target.pid is None else ms(target.cpu / total),
            ]
        )
    on, off = targets[ON], targets[OFF]
    paired = statistics.median(a - b for a, b in zip(on.round_medians, off.round_medians, strict=True))
    rows.append(
        [
            "**tracing on minus off**",
            signed_ms(statistics.median(on.walls) - statistics.median(off.walls)),
            signed_ms(p95(on.walls) - p95(off.walls)),
            f"{signed_ms(paired)} (paired per round)",
            signed_ms((on.cpu - off.cpu) / total),
        ]
    )
    title = (
        f"Per call through the OSS gateway {GATEWAY_VERSION}, tracing off and on "
        f"({count} calls x {rounds} interleaved rounds = {total} per configuration, "
        f"after {warmup} warm-up calls)"
    )
    header = [
        "configuration",
        "median wall per call",
        "p95 wall per call",
        "added over the model",
        "gateway CPU per call",
    ]
    report = table(title, header, rows)
    columns = {  # header: KiB of a gateway
        "RSS at start (idle)": lambda t: t.rss["at start"],
        f"after {warmup + 1} warm-up calls": lambda t: t.rss["after warm-up"],
        f"after the {total + rounds} timed calls": lambda t: t.rss["after the timed calls"],
        f"soak, median of {SOAK_SLICES} samples": lambda t: int(statistics.median(t.soak_rss)),
        "soak, highest sample": lambda t: max(t.soak_rss),
        "peak (VmHWM)": lambda t: t.peak,
    }
    memory_rows = [[name, *(mib(kib(targets[name])) for kib in columns.values())] for name in (OFF, ON)]
    memory_rows.append(
        [
            "**tracing on minus off**",
            *(f"{(kib(targets[ON]) - kib(targets[OFF])) / 1024:+.1f} MiB" for kib in columns.values()),
        ]
    )
    report += "\n" + table(
        f"The gateway process's resident memory (VmRSS; {every_call} calls each by the end, "
        f"{soak_calls} of them in the soak)",
        ["gateway", *columns],
        memory_rows,
    )
    for name in (OFF, ON):
        samples = ", ".join(f"{kib / 1024:.0f}" for kib in targets[name].soak_rss)
        walls = ", ".join(f"{seconds * 1e3:.1f}" for seconds in targets[name].soak_medians)
        report += f"\nSoak, {name}, slice by slice: RSS {samples} MiB; median per call {walls} ms."
    report += "\n"
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    packages = ", ".join(
        f"{name.removeprefix('@opentelemetry/')} {v}" for name, v in NODE_OTEL_PACKAGES.items()
    )
    report += (
        f"\nThe traced gateway exported {server_spans} SERVER and {client_spans} CLIENT spans for its "
        f"{every_call} calls. Node {node}; OpenTelemetry for Node: {packages}.\n"
    )
    return report


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="a few calls, to check that it runs")
    parser.add_argument(
        "--soak", type=int, default=3000, help="untimed calls per gateway after the timed ones (memory)"
    )
    args = parser.parse_args()
    smoke = " (smoke mode: figures are not meaningful)" if args.smoke else ""
    print(f"# The OSS gateway traced vs not{smoke}\n")
    print(f"Machine: {harness.machine()}, load average {os.getloadavg()[0]:.2f} at the start\n")
    if args.smoke:
        print(bench(count=3, rounds=2, warmup=3, soak=SOAK_SLICES))
    else:
        print(bench(count=40, rounds=20, warmup=100, soak=args.soak))
    return 0


if __name__ == "__main__":
    sys.exit(main())
