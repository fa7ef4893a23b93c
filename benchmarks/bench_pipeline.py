"""How far the Collector configurations go on this machine (BENCHMARKS.md, "Collector pipeline").

    .venv/bin/python benchmarks/bench_pipeline.py            # the figures (about 5 minutes)
    .venv/bin/python benchmarks/bench_pipeline.py --smoke    # small counts: checks that it runs

Needs the Jaeger and Collector that ``make components`` builds. Every process runs on loopback with
its own free ports and a temporary storage directory, and is stopped on the way out.

1. Throughput: seed-agent traces (12 spans each, the bridge's attributes on the four gateway calls)
   sent as fast as this process can, pre-encoded as OTLP/protobuf, over 4 keep-alive OTLP/HTTP
   connections, through
   - the single durable Collector (collector-config.yaml, persistent queues), and
   - the tier (examples/scale-out/: load balancer + 2 samplers, OTELCOL_KEEP_PERCENT=100),
   both exporting to a Jaeger (in memory) and to a second Jaeger standing in for Portkey's OTLP
   endpoint. Timed from the first request until the Collectors' own
   ``otelcol_exporter_sent_spans`` say every span reached both sinks. Rounds alternate the two.
   CPU per 1,000 spans of every process: utime + stime from /proc/<pid>/stat over the round.
2. Disk: the same traces sent to a Collector whose backends are down; the storage directory's size
   (allocated blocks) and the queue's own ``otelcol_exporter_queue_size`` (bytes) per 10,000 spans.
3. Memory: a sampler with OTELCOL_KEEP_PERCENT=0 holding traces undecided (decision_wait 10 min):
   its resident memory per 1,000 traces held.

Figures, never assertions; the machine is shared, so each figure is a median over rounds.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from harness import table  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue  # noqa: E402
from opentelemetry.proto.trace.v1.trace_pb2 import Span  # noqa: E402

from otel_portkey.testing import free_port  # noqa: E402

from components import COLLECTOR_CONFIG, Jaeger, built_components  # noqa: E402
from scale_out import (  # noqa: E402
    SAMPLER_CONFIG,
    Otelcol,
    Tier,
    collector_env,
    cpu_seconds,
    directory_bytes,
    wait_until,
)

SPANS_PER_TRACE = 12
Round = tuple[float, float, dict[str, float], int]  # ingest s, delivered s, CPU s per process, refusals
PORTKEY_KEY = "pk-bench"
# The samplers' file_storage without an fsync per write: still safe from a kill of the process (the
# kernel holds what was written), not from a power loss.
NO_FSYNC = ("yaml:extensions::file_storage::fsync: false",)


def _kv(key: str, value: str | int) -> KeyValue:
    any_value = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
    return KeyValue(key=key, value=any_value)


def _span(
    trace_id: bytes,
    span_id: bytes,
    parent_id: bytes,
    name: str,
    kind: Span.SpanKind.ValueType,
    start_ns: int,
    duration_ns: int,
    attributes: dict[str, str | int] | None = None,
) -> Span:
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent_id,
        name=name,
        kind=kind,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + duration_ns,
        attributes=[_kv(key, value) for key, value in (attributes or {}).items()],
    )


def _trace(trace_id: bytes, start_ns: int) -> list[Span]:
    """One seed-agent run as tests/scale_out_app.py exports it: root, 4 x (chat > POST), 3 tools."""
    root_id = os.urandom(8)
    spans = [_span(trace_id, root_id, b"", "seed agent run", Span.SPAN_KIND_INTERNAL, start_ns, 66_000_000)]
    at = start_ns + 1_000_000
    for turn in range(4):
        chat_id, post_id = os.urandom(8), os.urandom(8)
        chat: dict[str, str | int] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
        }
        spans.append(
            _span(trace_id, chat_id, root_id, "chat gpt-4o", Span.SPAN_KIND_CLIENT, at, 14_000_000, chat)
        )
        post: dict[str, str | int] = {
            "http.method": "POST",
            "http.url": "http://127.0.0.1:8787/v1/chat/completions",
            "http.status_code": 200,
            "portkey.metadata.service": "seed-agent",
            "portkey.span_id": os.urandom(8).hex(),
            "portkey.trace_id": trace_id.hex(),
            "portkey.cache.status": "DISABLED",
            "portkey.provider": "openai",
            "portkey.last_used_option_index": "config",
            "portkey.retry.attempt_count": 0,
        }
        spans.append(
            _span(trace_id, post_id, chat_id, "POST", Span.SPAN_KIND_CLIENT, at + 200_000, 12_800_000, post)
        )
        at += 15_000_000
        if turn < 3:
            tool = "multiply" if turn == 1 else "exponentiate"
            spans.append(
                _span(
                    trace_id,
                    os.urandom(8),
                    root_id,
                    f"execute_tool {tool}",
                    Span.SPAN_KIND_INTERNAL,
                    at,
                    30_000,
                    {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool},
                )
            )
            at += 100_000
    return spans


def payloads(traces: int, traces_per_request: int) -> list[bytes]:
    """OTLP/protobuf export requests holding ``traces`` fresh seed-agent traces."""
    bodies = []
    now = time.time_ns()
    for first in range(0, traces, traces_per_request):
        request = ExportTraceServiceRequest()
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.extend(
            [
                _kv("service.name", "seed-agent"),
                _kv("service.instance.id", f"bench-{first}"),
                _kv("telemetry.sdk.language", "python"),
                _kv("telemetry.sdk.name", "opentelemetry"),
                _kv("telemetry.sdk.version", "1.45.1"),
            ]
        )
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name = "scale_out_app"
        for _ in range(min(traces_per_request, traces - first)):
            scope_spans.spans.extend(_trace(os.urandom(16), now))
        bodies.append(request.SerializeToString())
    return bodies


def send(url: str, bodies: list[bytes], headers: dict[str, str], connections: int = 4) -> int:
    """POST every body to ``url`` (OTLP/HTTP /v1/traces) with ``headers`` (the tier's token); a refusal
    (429/503) is retried after 50 ms. Returns the number of refusals."""
    host, port = url.removeprefix("http://").split(":")
    refused = 0
    lock = threading.Lock()
    local = threading.local()

    def post(body: bytes) -> None:
        nonlocal refused
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection(host, int(port), timeout=60)
        while True:
            local.connection.request(
                "POST", "/v1/traces", body=body, headers={"content-type": "application/x-protobuf", **headers}
            )
            response = local.connection.getresponse()
            response.read()
            if response.status == 200:
                return
            if response.status not in (429, 503):
                raise RuntimeError(f"{url} answered {response.status}")
            with lock:
                refused += 1
            time.sleep(0.05)

    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(post, bodies))
    return refused


class Sinks:
    """Jaeger, and a second Jaeger standing in for Portkey's OTLP/HTTP endpoint."""

    def __init__(self, binary: str) -> None:
        self.jaeger = Jaeger(binary)
        self.portkey = Jaeger(binary)

    @property
    def portkey_endpoint(self) -> str:
        return self.portkey.otlp_http  # spans go to <base>/v1/traces

    def pids(self) -> dict[str, int]:
        assert self.jaeger.process is not None
        assert self.portkey.process is not None
        return {"Jaeger": self.jaeger.process.pid, "Portkey stand-in (a Jaeger)": self.portkey.process.pid}

    def stop(self) -> None:
        self.jaeger.stop()
        self.portkey.stop()


def sent_to_sinks(collectors: list[Otelcol]) -> tuple[float, float]:
    jaeger = portkey = 0.0
    for collector in collectors:
        metrics = collector.metrics()
        jaeger += metrics.total("otelcol_exporter_sent_spans", exporter="otlp_grpc/jaeger")
        portkey += metrics.total("otelcol_exporter_sent_spans", exporter="otlp_http/portkey")
    return jaeger, portkey


def all_delivered(spans: int, exporting: list[Otelcol]) -> Callable[[], bool]:
    return lambda: min(sent_to_sinks(exporting)) >= spans


def all_decided(traces: int, samplers: list[Otelcol]) -> Callable[[], bool]:
    """Every trace decided by the samplers, and every kept span in both sinks (their own counts)."""

    def decided() -> bool:
        metrics = [sampler.metrics() for sampler in samplers]
        seen = sum(m.total("otelcol_processor_tail_sampling_new_trace_id_received") for m in metrics)
        held = sum(m.total("otelcol_processor_tail_sampling_sampling_traces_on_memory") for m in metrics)
        kept = sum(
            m.total("otelcol_processor_tail_sampling_global_count_traces_sampled", decision="sampled")
            for m in metrics
        )
        return seen >= traces and held == 0 and min(sent_to_sinks(samplers)) >= kept * SPANS_PER_TRACE

    return decided


def through(bodies: list[bytes], entry: Otelcol, done: Callable[[], bool], pids: dict[str, int]) -> Round:
    """(ingest s, done s, CPU seconds per process, refusals) for ``bodies`` sent to ``entry``."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    own = os.times()
    started = time.perf_counter()
    refused = send(entry.otlp_http, bodies, entry.auth_headers)
    ingested = time.perf_counter() - started
    if not wait_until(done, timeout=600, interval=0.05):
        raise RuntimeError("the pipeline did not finish within 10 minutes")
    delivered = time.perf_counter() - started
    cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    after = os.times()
    cpu["load generator (this process)"] = after.user + after.system - own.user - own.system
    return ingested, delivered, cpu, refused


def single_round(binaries: dict[str, str], bodies: list[bytes], spans: int, storage: Path) -> Round:
    sinks = Sinks(binaries["JAEGER"])
    try:
        env = collector_env(sinks.jaeger.otlp_grpc, sinks.portkey_endpoint, PORTKEY_KEY, storage)
        env["OTELCOL_METRICS_LEVEL"] = "basic"
        collector = Otelcol(binaries["OTELCOL"], COLLECTOR_CONFIG, env, serve_own_metrics=True)
        try:
            pids = {"Collector": collector.pid, **sinks.pids()}
            return through(bodies, collector, all_delivered(spans, [collector]), pids)
        finally:
            collector.stop()
    finally:
        sinks.stop()


def tier_round(
    binaries: dict[str, str],
    bodies: list[bytes],
    spans: int,
    storage: Path,
    keep: int = 100,
    overlays: tuple[str, ...] = (),
) -> Round:
    sinks = Sinks(binaries["JAEGER"])
    try:
        tier = Tier(
            binaries["OTELCOL"],
            storage,
            sinks.jaeger.otlp_grpc,
            sinks.portkey_endpoint,
            PORTKEY_KEY,
            sampler_env={"OTELCOL_KEEP_PERCENT": str(keep), "OTELCOL_DECISION_WAIT": "1s"},
            sampler_overlays=overlays,
            common_env={"OTELCOL_METRICS_LEVEL": "basic"},
        )
        try:
            pids = {
                "load balancer": tier.entry.pid,
                **{f"sampler {i}": s.pid for i, s in enumerate(tier.samplers, 1)},
                **sinks.pids(),
            }
            if keep == 100:
                return through(bodies, tier.entry, all_delivered(spans, tier.samplers), pids)
            return through(bodies, tier.entry, all_decided(spans // SPANS_PER_TRACE, tier.samplers), pids)
        finally:
            tier.stop()
    finally:
        sinks.stop()


def bench_throughput(binaries: dict[str, str], traces: int, rounds: int, per_request: int) -> str:
    bodies = payloads(traces, per_request)
    spans = traces * SPANS_PER_TRACE
    runners: dict[str, Callable[..., Round]] = {
        "single durable Collector": single_round,
        "tier, KEEP_PERCENT=100": tier_round,
        "tier, KEEP_PERCENT=100, samplers without fsync": functools.partial(tier_round, overlays=NO_FSYNC),
        "tier, KEEP_PERCENT=10 (until every trace is decided)": functools.partial(tier_round, keep=10),
    }
    results: dict[str, list[Round]] = {name: [] for name in runners}
    for number in range(rounds):
        shift = number % len(runners)
        for name in list(runners)[shift:] + list(runners)[:shift]:
            with tempfile.TemporaryDirectory(prefix="otel-portkey-bench-") as storage:
                results[name].append(runners[name](binaries, bodies, spans, Path(storage)))
    size = sum(map(len, bodies)) / spans
    rows = []
    cpu_rows = []
    for name, runs in results.items():
        ingest = statistics.median(spans / r[0] for r in runs)
        delivered = statistics.median(spans / r[1] for r in runs)
        refused = sum(r[3] for r in runs)
        rows.append([name, f"{ingest:,.0f}", f"{delivered:,.0f}", str(refused)])
        for process in runs[0][2]:
            per_k = statistics.median(r[2][process] / (spans / 1000) for r in runs)
            cpu_rows.append([name, process, f"{per_k * 1000:,.1f} ms"])
    lines = [
        table(
            f"Throughput: {traces:,} traces ({spans:,} spans, {per_request} traces = "
            f"{per_request * SPANS_PER_TRACE} spans per request, {size:.0f} bytes per span encoded), "
            f"median of {rounds} rounds",
            ["pipeline", "ingest, spans/s", "until in both sinks, spans/s", "requests refused (retried)"],
            rows,
        ),
        table("CPU per 1,000 spans, per process (utime + stime)", ["pipeline", "process", "CPU"], cpu_rows),
    ]
    return "\n".join(lines)


def bench_disk(binaries: dict[str, str], traces: int, per_request: int) -> str:
    """Backends down: every span stays queued on disk."""
    bodies = payloads(traces, per_request)
    spans = traces * SPANS_PER_TRACE
    closed = f"127.0.0.1:{free_port()}"
    rows = []
    with tempfile.TemporaryDirectory(prefix="otel-portkey-bench-") as directory:
        storage = Path(directory) / "single"
        env = collector_env(closed, f"http://{closed}", PORTKEY_KEY, storage)
        env["OTELCOL_METRICS_LEVEL"] = "basic"
        collector = Otelcol(binaries["OTELCOL"], COLLECTOR_CONFIG, env, serve_own_metrics=True)
        try:
            empty = directory_bytes(storage)
            send(collector.otlp_http, bodies, collector.auth_headers)
            time.sleep(2)
            queued = collector.metrics()
            used = directory_bytes(storage) - empty
            for exporter in ("otlp_grpc/jaeger", "otlp_http/portkey"):
                in_queue = queued.total("otelcol_exporter_queue_size", exporter=exporter)
                rows.append(
                    [f"single Collector, {exporter}", f"{in_queue / spans * 10_000 / 2**20:.2f} MiB", "", ""]
                )
            rows.append(
                [
                    "single Collector, the directory (both queues)",
                    "",
                    f"{used / spans * 10_000 / 2**20:.2f} MiB",
                    f"{used / 2**20:.1f} MiB for {spans:,} spans",
                ]
            )
        finally:
            collector.stop()
        storage = Path(directory) / "loadbalancer"
        env = collector_env(closed, f"http://{closed}", PORTKEY_KEY, storage)
        env.update(OTELCOL_METRICS_LEVEL="basic", OTELCOL_SAMPLERS=f"[{closed}]")
        from scale_out import LOADBALANCER_CONFIG

        balancer = Otelcol(binaries["OTELCOL"], LOADBALANCER_CONFIG, env)
        try:
            empty = directory_bytes(storage)
            send(balancer.otlp_http, bodies, balancer.auth_headers)
            time.sleep(2)
            in_queue = balancer.metrics().total("otelcol_exporter_queue_size", exporter="load_balancing")
            used = directory_bytes(storage) - empty
            rows.append(
                [
                    "load balancer, samplers down",
                    f"{in_queue / spans * 10_000 / 2**20:.2f} MiB",
                    f"{used / spans * 10_000 / 2**20:.2f} MiB",
                    f"{used / 2**20:.1f} MiB for {spans:,} spans",
                ]
            )
        finally:
            balancer.stop()
    return table(
        f"Persistent queue, backends down: {spans:,} spans queued, per 10,000 spans",
        ["queue", "queue's own count (bytes sizer)", "on disk (allocated)", "total"],
        rows,
    )


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def bench_memory(binaries: dict[str, str], traces: int, per_request: int) -> str:
    """A sampler holding undecided traces (KEEP_PERCENT=0, decision_wait 10 min)."""
    bodies = payloads(traces, per_request)
    closed = f"127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory(prefix="otel-portkey-bench-") as directory:
        env = collector_env(closed, f"http://{closed}", PORTKEY_KEY, Path(directory))
        env.update(OTELCOL_METRICS_LEVEL="basic", OTELCOL_KEEP_PERCENT="0", OTELCOL_DECISION_WAIT="600s")
        sampler = Otelcol(binaries["OTELCOL"], SAMPLER_CONFIG, env)
        try:
            time.sleep(1)
            before = rss_bytes(sampler.pid)
            send(sampler.otlp_http, bodies, sampler.auth_headers)
            wait_until(
                lambda: (
                    sampler.metrics().total("otelcol_processor_tail_sampling_sampling_traces_on_memory")
                    >= traces
                ),
                timeout=60,
            )
            time.sleep(2)
            held = sampler.metrics().total("otelcol_processor_tail_sampling_sampling_traces_on_memory")
            grown = rss_bytes(sampler.pid) - before
        finally:
            sampler.stop()
    return table(
        "Sampler memory while traces wait for their decision",
        ["traces held (its own count)", "spans", "resident memory grown", "per 1,000 traces held"],
        [
            [
                f"{held:,.0f}",
                f"{held * SPANS_PER_TRACE:,.0f}",
                f"{grown / 2**20:.1f} MiB",
                f"{grown / max(held, 1) * 1000 / 2**20:.2f} MiB",
            ]
        ],
    )


def machine() -> str:
    memory = next(
        (
            int(line.split()[1]) // 2**20
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        ),
        0,
    )
    return f"{harness.machine()}, {memory} GiB"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="small counts: checks that it runs")
    args = parser.parse_args()
    binaries = built_components()
    traces = 200 if args.smoke else 10_000
    print(f"# Collector pipeline{' (smoke mode: figures are not meaningful)' if args.smoke else ''}\n")
    print(f"Machine: {machine()}; {Path(binaries['OTELCOL']).name}, {Path(binaries['JAEGER']).name}\n")
    print(bench_throughput(binaries, traces, rounds=1 if args.smoke else 3, per_request=50))
    print(bench_throughput(binaries, traces // 5, rounds=1 if args.smoke else 3, per_request=1))
    print(bench_disk(binaries, traces, per_request=50))
    print(bench_memory(binaries, traces, per_request=50))
    return 0


if __name__ == "__main__":
    sys.exit(main())
