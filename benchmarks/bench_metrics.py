"""What the bridge's metrics cost (issue 19, item 6): CPU per call beside the bridge without
metrics and beside no bridge, where that CPU goes, and memory over many calls with many models.

    python benchmarks/bench_metrics.py            # the four tables (a few minutes)
    python benchmarks/bench_metrics.py --smoke    # a few iterations: checks that it runs

The metrics go to an SDK ``MeterProvider`` read by a ``PeriodicExportingMetricReader``, as users
run it (``OTEL_METRICS_EXPORTER=otlp``), whose exporter counts the points instead of sending them
and whose interval (an hour) never elapses during a timed loop: what a call pays (the instruments'
``record``/``add`` into the SDK's aggregations, exemplars included) does not depend on the exporter,
which runs once per interval on the reader's own thread. The memory table collects and exports once
at the end, through the same reader, to count the streams it holds.

Four tables:

1. The whole httpx/httpx2 call with the network taken out (``bench_offline``'s in-memory pool),
   configurations interleaved, CPU differences paired per round.
2. The bridge's hooks alone, driven on real httpx requests and responses and SDK spans (as
   ``bench_memory`` drives them), the metrics' work added stage by stage: the same difference
   without the client's noise, and what each part costs where it runs.
3. Each piece of the metrics' work alone in a tight loop, so a figure above the target can be
   attributed.
4. Memory (tracemalloc, RSS) over many calls naming many models, and the streams exported.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from bench_memory import rss_bytes
from bench_offline import FLAVOURS, GATEWAY, URL, _run
from harness import (
    Config,
    DiscardingExporter,
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
from opentelemetry.instrumentation.httpx import RequestInfo, ResponseInfo
from opentelemetry.sdk.metrics import (
    AlwaysOffExemplarFilter,
    ExemplarFilter,
    MeterProvider,
    TraceBasedExemplarFilter,
)
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from otel_portkey import PortkeySpanProcessor
from otel_portkey._contract.call import (
    ATTR_MODEL,
    METRIC_REQUEST_DURATION,
    METRIC_RETRIES,
    AttributeBound,
    call_attributes,
)
from otel_portkey._otel.bridge import Bridge, GatewayCall, GatewayMetrics, _host, call_of
from otel_portkey._otel.client_hooks import httpx_hooks
from otel_portkey._otel.processor import Caller
from otel_portkey.config import PortkeySettings

# The calling GenAI span's attributes, as a GenAI instrumentation sets them: the call's point
# carries its operation and model.
OPERATION, MODEL = "gen_ai.operation.name", "gen_ai.request.model"
CALLER = {OPERATION: "chat", MODEL: "gpt-4o"}
CHAT_CALLER = Caller("chat gpt-4o", "chat", "gpt-4o")  # as the processor records that span
# The gateway's answer as the bridge reads it (``answer_attributes`` of bench_offline's headers).
ANSWER = {
    "portkey.cache.status": "MISS",
    "portkey.retry.attempt_count": 0,
    "portkey.provider": "openai",
    "portkey.last_used_option_index": "config",
}
FILTERS: dict[str, Callable[[], ExemplarFilter]] = {
    "trace_based": TraceBasedExemplarFilter,
    "always_off": AlwaysOffExemplarFilter,
}


class CountingExporter(MetricExporter):
    """Stands in for the OTLP exporter: counts each metric's data points, their exemplars and the
    distinct values of the model attribute in the last export, and sends nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.points: dict[str, int] = {}
        self.exemplars: dict[str, int] = {}
        self.models: dict[str, int] = {}

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        points: dict[str, int] = {}
        exemplars: dict[str, int] = {}
        models: dict[str, set[object]] = {}
        for resource in metrics_data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    data: list[Any] = list(metric.data.data_points)
                    points[metric.name] = points.get(metric.name, 0) + len(data)
                    exemplars[metric.name] = exemplars.get(metric.name, 0) + sum(
                        len(point.exemplars or ()) for point in data
                    )
                    models.setdefault(metric.name, set()).update(
                        (point.attributes or {}).get(ATTR_MODEL) for point in data
                    )
        self.points, self.exemplars = points, exemplars
        self.models = {name: len(values) for name, values in models.items()}
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


def meter_provider(exemplar_filter: str = "trace_based") -> tuple[MeterProvider, CountingExporter]:
    """An SDK MeterProvider as users run it, exporting to a :class:`CountingExporter` once an hour
    (collect now with ``force_flush``); ``exemplar_filter`` as ``OTEL_METRICS_EXEMPLAR_FILTER``."""
    exporter = CountingExporter()
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    return MeterProvider([reader], exemplar_filter=FILTERS[exemplar_filter]()), exporter


# ---- 1. the whole call, network taken out ----------------------------------------------------------


CALL_CONFIGS = (
    "no bridge (httpx instrumentation)",
    "bridge, metrics off",
    "bridge + metrics, no MeterProvider",
    "bridge + metrics, SDK (exemplars trace_based)",
    "bridge + metrics, SDK (exemplars always_off)",
)


def _call_configs(flavour: str, providers: dict[str, MeterProvider]) -> dict[str, Config]:
    instrumentor = FLAVOURS[flavour][2]
    return dict(
        zip(
            CALL_CONFIGS,
            (
                instrumented(instrumentor),
                bridged(instrumentor, GATEWAY, metrics=False),
                # Metrics on with no MeterProvider anywhere: the API's no-op instruments (what a
                # user without OTEL_METRICS_EXPORTER gets, metrics being on by default).
                bridged(instrumentor, GATEWAY, metrics=True),
                bridged(instrumentor, GATEWAY, metrics=True, meter_provider=providers["trace_based"]),
                bridged(instrumentor, GATEWAY, metrics=True, meter_provider=providers["always_off"]),
            ),
            strict=True,
        )
    )


def bench_calls(
    count: int,
    rounds: int,
    clients: Sequence[str] = ("httpx2 sync", "httpx2 async", "httpx sync", "httpx async"),
) -> tuple[str, dict[str, float]]:
    """Per call CPU of each configuration and the paired differences; returns the table and, per
    client, what metrics into the SDK (exemplars trace_based) add over the bridge without them."""
    sdk_provider()
    providers = {name: meter_provider(name)[0] for name in FILTERS}
    columns: dict[str, list[str]] = {}
    added: dict[str, float] = {}
    try:
        for client in clients:
            flavour, mode = client.split()
            samples = interleave_samples(
                _call_configs(flavour, providers), _run(flavour, mode, count, CALLER), rounds
            )
            medians = {name: statistics.median(c for c, _ in values) for name, values in samples.items()}
            bridge = paired_cpu(samples, CALL_CONFIGS[1], CALL_CONFIGS[0])
            noop = paired_cpu(samples, CALL_CONFIGS[2], CALL_CONFIGS[1])
            sdk = paired_cpu(samples, CALL_CONFIGS[3], CALL_CONFIGS[1])
            sdk_off = paired_cpu(samples, CALL_CONFIGS[4], CALL_CONFIGS[1])
            added[client] = sdk
            columns[client] = [
                *(us(medians[name]) for name in CALL_CONFIGS),
                us(bridge),
                us(noop),
                us(sdk),
                us(sdk_off),
                f"{sdk / bridge:.0%}",
                f"{medians[CALL_CONFIGS[3]] / medians[CALL_CONFIGS[1]]:.3f}x",
            ]
    finally:
        for provider in providers.values():
            provider.shutdown()
    labels = [
        *(f"CPU per call: {name}" for name in CALL_CONFIGS),
        "bridge adds (metrics off, paired)",
        "metrics add, no MeterProvider (paired)",
        "**metrics add, SDK, exemplars trace_based (paired)**",
        "metrics add, SDK, exemplars always_off (paired)",
        "metrics (trace_based) / the bridge's own cost",
        "whole call, bridge + metrics ÷ bridge",
    ]
    rows = [[label, *(columns[client][i] for client in clients)] for i, label in enumerate(labels)]
    title = f"Metrics per call, network taken out ({count} calls x {rounds} interleaved rounds, CPU medians)"
    return table(title, ["", *clients], rows), added


# ---- 2. the hooks alone ------------------------------------------------------------------------------


class _HookPath:
    """bench_memory's call: real httpx requests and responses, real SDK spans (a GenAI-like parent,
    the CLIENT span), the bridge's httpx hooks driven directly. One bridge per configuration."""

    def __init__(self, retries: int = 0) -> None:
        provider = TracerProvider()
        provider.add_span_processor(PortkeySpanProcessor())
        provider.add_span_processor(SimpleSpanProcessor(DiscardingExporter()))
        self.tracer = provider.get_tracer("bench")
        self.settings = PortkeySettings.from_env({}, gateway_urls=[GATEWAY])
        self.body = b'{"model": "gpt-4o"}'
        self.answer_headers = {
            "content-type": "application/json",
            "x-portkey-cache-status": "MISS",
            "x-portkey-retry-attempt-count": str(retries),
            "x-portkey-provider": "openai",
            "x-portkey-last-used-option-index": "config",
        }

    def bridge(self, gateway_metrics: GatewayMetrics | None) -> Bridge:
        return Bridge(self.settings, gateway_metrics=gateway_metrics)

    def caller(self, bridge: Bridge | None) -> Callable[[dict[str, str]], None]:
        """One call inside a parent span with ``caller`` attributes; no hooks without a bridge."""
        hooks = httpx_hooks(lambda: bridge) if bridge is not None else None
        tracer, body, answer_headers = self.tracer, self.body, self.answer_headers

        def call(caller: dict[str, str]) -> None:
            request = httpx.Request("POST", URL, content=body)
            with (
                tracer.start_as_current_span("chat", attributes=caller),
                tracer.start_as_current_span("POST", kind=trace.SpanKind.CLIENT) as span,
            ):
                info = RequestInfo(b"POST", request.url, request.headers, request.stream, request.extensions)
                if hooks is not None:
                    hooks["request_hook"](span, info)
                response = httpx.Response(200, headers=answer_headers)
                if hooks is not None:
                    hooks["response_hook"](
                        span, info, ResponseInfo(200, response.headers, response.stream, response.extensions)
                    )

        return call


def start_call(metrics: GatewayMetrics, span: Any) -> None:
    """What the request side does for a bound call's metrics: a GatewayCall in for ``span.end``,
    with the point due when the span ends (when a MeterProvider is there)."""
    if metrics.ready():
        GatewayCall.begin(span, metrics, hooked=True, counted=(_host(URL), CHAT_CALLER, None))
    else:
        GatewayCall.begin(span, None, hooked=True)


class _Idle:
    """An instrument that does nothing, not even the API's no-op dispatch."""

    def record(self, *args: Any, **kwargs: Any) -> None:
        return None

    def add(self, *args: Any, **kwargs: Any) -> None:
        return None


class _NoRecord(GatewayMetrics):
    """The GatewayCall's point machinery alone: a point is due when the span ends, and nothing is recorded."""

    def __init__(self) -> None:
        super().__init__()
        self._duration = self._retries = _Idle()  # type: ignore[assignment]

    def record(self, *args: Any) -> None:
        return None


def _stage(meter: Any = None, duration: bool = True, retries: bool = True) -> GatewayMetrics:
    """GatewayMetrics on ``meter``, with either instrument replaced by one that does nothing."""
    stage = GatewayMetrics(meter)
    if not duration:
        stage._duration = _Idle()  # type: ignore[assignment]
    if not retries:
        stage._retries = _Idle()  # type: ignore[assignment]
    return stage


Stage = Callable[[dict[str, MeterProvider]], GatewayMetrics | None]
OFF = "bridge, metrics off"
# Each stage adds one part of the metrics' work to the one it is compared with, inside the same hook
# path, so the paired differences say what each part costs where it runs (the steps cost more here
# than in a tight loop: the call's other work keeps the caches cold). (name, metrics, compared with)
NO_METER_PROVIDER = "metrics on, no MeterProvider (one check, then nothing)"
CALL = "the GatewayCall's point at span end (record does nothing)"
ATTRIBUTES = "+ the point's attributes and context (instruments do nothing)"
HISTOGRAM = "+ SDK histogram, exemplars always_off (no counter)"
COUNTER = "+ SDK counter too (adds only for a new series), exemplars always_off"
AS_USERS_RUN_THEM = "+ exemplars trace_based: **as users run them**"
HOOK_STAGES: tuple[tuple[str, Stage, str], ...] = (
    (OFF, lambda m: None, ""),
    (NO_METER_PROVIDER, lambda m: GatewayMetrics(), OFF),
    (CALL, lambda m: _NoRecord(), OFF),
    (ATTRIBUTES, lambda m: _stage(None, duration=False, retries=False), CALL),
    (HISTOGRAM, lambda m: _stage(m["always_off"], retries=False), ATTRIBUTES),
    (COUNTER, lambda m: GatewayMetrics(m["always_off"]), HISTOGRAM),
    (AS_USERS_RUN_THEM, lambda m: GatewayMetrics(m["trace_based"]), COUNTER),
)
RETRIED_OFF = "calls the gateway retried once, bridge, metrics off"
RETRIED = "calls the gateway retried once, metrics as users run them (the counter adds each time)"
NO_BRIDGE = "no bridge: the spans and objects alone"


def bench_hooks(count: int, rounds: int) -> tuple[str, dict[str, float]]:
    """The bridge's hooks on real objects (``_HookPath``), metrics built up stage by stage, and the
    same for calls the gateway retried (each of them adds to the retries counter)."""
    path, retried = _HookPath(), _HookPath(retries=1)
    providers = {name: meter_provider(name)[0] for name in FILTERS}
    calls = {NO_BRIDGE: path.caller(None)}
    for name, make, _ in HOOK_STAGES:
        calls[name] = path.caller(path.bridge(make(providers)))
    calls[RETRIED_OFF] = retried.caller(retried.bridge(None))
    calls[RETRIED] = retried.caller(retried.bridge(GatewayMetrics(providers["trace_based"])))
    for call in calls.values():
        call(CALLER)

    def run(name: str) -> tuple[float, float]:
        call = calls[name]
        return timed(count, lambda: call(CALLER))

    try:
        samples = interleave_samples({name: lambda: lambda: None for name in calls}, run, rounds)
    finally:
        for provider in providers.values():
            provider.shutdown()
    medians = {name: statistics.median(c for c, _ in values) for name, values in samples.items()}
    rows = [
        [NO_BRIDGE, us(medians[NO_BRIDGE]), "—", "—"],
        [OFF, us(medians[OFF]), f"{us(paired_cpu(samples, OFF, NO_BRIDGE))} (the bridge)", "—"],
    ]
    added = {}
    for name, _, compared in HOOK_STAGES[1:]:
        added[name] = paired_cpu(samples, name, OFF)
        rows.append([name, us(medians[name]), us(paired_cpu(samples, name, compared)), us(added[name])])
    added[RETRIED] = paired_cpu(samples, RETRIED, RETRIED_OFF)
    rows.append([RETRIED_OFF, us(medians[RETRIED_OFF]), "—", "—"])
    rows.append([RETRIED, us(medians[RETRIED]), "—", us(added[RETRIED])])
    title = (
        f"Metrics on the bridge's hooks, stage by stage ({count} calls x {rounds} interleaved rounds, "
        "CPU medians)"
    )
    header = [
        "configuration",
        "CPU per call",
        "added by this stage (paired)",
        "metrics add (paired with metrics off)",
    ]
    return table(title, header, rows), added


# ---- 3. the pieces alone -----------------------------------------------------------------------------


def _cpu(step: Callable[[Any], Any], items: Callable[[], list[Any]], rounds: int) -> float:
    """Median over rounds of the CPU per ``step(item)``, minus the loop's own cost."""
    per_round = []
    for _ in range(rounds):
        batch = items()
        with quiet_gc():
            started = time.thread_time()
            for item in batch:
                step(item)
            spent = time.thread_time() - started
            started = time.thread_time()
            for item in batch:
                _nothing(item)
            spent -= time.thread_time() - started
        per_round.append(spent / len(batch))
    return statistics.median(per_round)


def _nothing(item: Any) -> None:
    return None


def bench_pieces(count: int, rounds: int) -> tuple[str, dict[str, float]]:
    """Each piece of the metrics' work timed alone in a tight loop, on SDK spans in a GenAI-like
    parent; the SDK's instruments with exemplars trace_based and always_off."""
    provider = TracerProvider()
    provider.add_span_processor(PortkeySpanProcessor())
    tracer = provider.get_tracer("bench")
    in_parent = trace.set_span_in_context(tracer.start_span("chat", attributes=CALLER))
    meters = {name: meter_provider(name)[0] for name in FILTERS}
    sdk = {name: GatewayMetrics(mp) for name, mp in meters.items()}
    noop = GatewayMetrics()  # the global MeterProvider: none is set, so the API's proxy
    traced, untraced = sdk["trace_based"], sdk["always_off"]
    host = _host(URL)
    attributes = call_attributes(ANSWER, 200, None, host, "chat", "gpt-4o")
    bound = AttributeBound()
    for n in range(bound.max_distinct - 1):
        bound.bound({ATTR_MODEL: f"model-{n}"})
    bounded = bound.bound(dict(attributes))  # the 100th model: the bound is full from here on
    beyond = {**attributes, ATTR_MODEL: "a-model-beyond-the-limit"}

    def spans() -> list[Any]:
        return [
            tracer.start_span("POST", context=in_parent, kind=trace.SpanKind.CLIENT) for _ in range(count)
        ]

    def started(metrics: GatewayMetrics) -> Callable[[], list[Any]]:
        """Spans whose call is counted by ``metrics`` and has its answer."""

        def make() -> list[Any]:
            batch = spans()
            for span in batch:
                start_call(metrics, span)
                call = call_of(span)
                assert call is not None
                call.answered_with(ANSWER, 200)
            return batch

        return make

    def repeat(value: Any) -> Callable[[], list[Any]]:
        return lambda: [value] * count

    def copies(value: dict[str, Any]) -> Callable[[], list[Any]]:
        return lambda: [dict(value) for _ in range(count)]

    span = spans()[0]
    context = trace.set_span_in_context(span)
    call = call_of(started(traced)()[0])
    assert call is not None
    duration = {name: metrics._duration for name, metrics in sdk.items()}
    retries = {name: metrics._retries for name, metrics in sdk.items()}
    for name in FILTERS:  # the streams exist before timing (a stream's first point creates it)
        duration[name].record(0.3, bounded, context=context)
        retries[name].add(0, bounded, context=context)

    def start(s: Any) -> None:
        start_call(traced, s)

    def start_noop(s: Any) -> None:
        start_call(noop, s)

    def answer(s: Any) -> None:
        call_of(s).answered_with(ANSWER, 200)  # type: ignore[union-attr]

    def end(s: Any) -> None:
        s.end()

    def record(metrics: GatewayMetrics) -> Callable[[Any], None]:
        return lambda _: metrics.record(call, span, 0.3)

    def histogram(name: str, with_context: bool = True) -> Callable[[Any], None]:
        instrument = duration[name]
        if with_context:
            return lambda a: instrument.record(0.3, a, context=context)
        return lambda a: instrument.record(0.3, a)

    def counter(name: str) -> Callable[[Any], None]:
        instrument = retries[name]
        return lambda a: instrument.add(0, a, context=context)

    pieces: dict[str, tuple[Callable[[Any], Any], Callable[[], list[Any]]]] = {
        "start": (start, spans),
        "start, no MeterProvider": (start_noop, spans),
        "_host": (_host, repeat(URL)),
        "answer": (answer, started(untraced)),
        "plain end": (end, spans),
        "end, always_off": (end, started(untraced)),
        "end, trace_based": (end, started(traced)),
        "record, always_off": (record(untraced), repeat(None)),
        "record, trace_based": (record(traced), repeat(None)),
        "call_attributes": (
            lambda _: call_attributes(ANSWER, 200, None, host, "chat", "gpt-4o"),
            repeat(None),
        ),
        "bound, kept": (bound.bound, copies(attributes)),
        "bound, beyond": (bound.bound, copies(beyond)),
        "context": (trace.set_span_in_context, repeat(span)),
        "histogram, trace_based": (histogram("trace_based"), repeat(bounded)),
        "histogram, always_off": (histogram("always_off"), repeat(bounded)),
        "histogram, no context": (histogram("trace_based", with_context=False), repeat(bounded)),
        "histogram, no attributes": (histogram("always_off"), repeat(None)),
        "counter, trace_based": (counter("trace_based"), repeat(bounded)),
        "counter, always_off": (counter("always_off"), repeat(bounded)),
    }
    figures = {name: _cpu(step, items, rounds) for name, (step, items) in pieces.items()}
    for mp in meters.values():
        mp.shutdown()
    figures["sum, no MeterProvider"] = figures["start, no MeterProvider"]
    for name in ("always_off", "trace_based"):
        figures[f"sum, {name}"] = (
            figures["start"] + figures["answer"] + figures[f"end, {name}"] - figures["plain end"]
        )
    labels = [
        ("start", "request side: `GatewayCall.begin` (the call in for `span.end`)"),
        ("_host", "&emsp;of which `_host(url)` (`urlsplit(url).hostname`, cached per URL)"),
        ("start, no MeterProvider", "request side, no MeterProvider: `GatewayMetrics.start` returns at once"),
        ("answer", "response side: `call_of(span)` + `answered_with`"),
        ("plain end", "span end without metrics: `span.end()` (not counted)"),
        ("end, always_off", "span end with metrics, SDK, exemplars always_off"),
        ("end, trace_based", "span end with metrics, SDK, exemplars trace_based"),
        (
            "record, always_off",
            "&emsp;`GatewayMetrics.record`, SDK, always_off (a known series: no counter add)",
        ),
        ("record, trace_based", "&emsp;`GatewayMetrics.record`, SDK, trace_based"),
        ("call_attributes", "&emsp;&emsp;`call_attributes()`"),
        ("bound, kept", "&emsp;&emsp;`AttributeBound.bound()`, values kept"),
        ("bound, beyond", "&emsp;&emsp;`AttributeBound.bound()`, a model beyond the limit (`_OTHER`)"),
        ("context", "&emsp;&emsp;`trace.set_span_in_context(span)`"),
        (
            "histogram, trace_based",
            "&emsp;&emsp;SDK `Histogram.record(context=)`, trace_based: exemplar taken",
        ),
        ("histogram, always_off", "&emsp;&emsp;SDK `Histogram.record(context=)`, always_off: no exemplar"),
        (
            "histogram, no context",
            "&emsp;&emsp;SDK `Histogram.record()` without context (none current): no exemplar",
        ),
        ("counter, trace_based", "&emsp;&emsp;SDK `Counter.add(context=)`, trace_based"),
        ("counter, always_off", "&emsp;&emsp;SDK `Counter.add(context=)`, always_off"),
        (
            "histogram, no attributes",
            "&emsp;&emsp;(SDK `Histogram.record`, no attributes, always_off: its floor)",
        ),
        ("sum, no MeterProvider", "**no MeterProvider: the check in start**"),
        ("sum, always_off", "**start + answer + end with metrics - plain end, SDK, exemplars always_off**"),
        ("sum, trace_based", "**the same, SDK, exemplars trace_based**"),
    ]
    rows = [[label, us(figures[key])] for key, label in labels]
    title = f"Where the metrics' time goes, each piece alone ({count} items x {rounds} rounds, CPU medians)"
    return table(title, ["piece", "CPU"], rows), figures


# ---- 4. memory ----------------------------------------------------------------------------------


@contextmanager
def _traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def bench_memory(calls: int, models: int) -> tuple[str, dict[str, float]]:
    """``calls`` calls whose parent spans name ``models`` distinct models in turn, with the bridge
    without metrics, then with metrics into an SDK MeterProvider (exemplars trace_based, then
    always_off: an exemplar bucket keeps the attributes of the last point it sampled)."""
    path = _HookPath()
    checkpoints = sorted({calls // 10, calls // 2, calls})

    def callers(n: int) -> dict[str, str]:
        return {OPERATION: "chat", MODEL: f"model-{n % models:05d}"}

    # Warm up every code path on a bridge and a MeterProvider of their own, so that what follows
    # counts the measured bridge's own memory: its bound and its streams fill from empty.
    warm_provider, _ = meter_provider()
    warm = path.caller(path.bridge(GatewayMetrics(warm_provider)))
    for n in range(1000):
        warm(callers(n))
    warm_provider.shutdown()

    rows: list[list[str]] = []
    figures: dict[str, float] = {}
    configurations = (
        ("bridge, metrics off", None),
        ("bridge + metrics, SDK, exemplars trace_based", "trace_based"),
        ("bridge + metrics, SDK, exemplars always_off", "always_off"),
    )
    for label, exemplar_filter in configurations:
        with_metrics = exemplar_filter is not None
        provider, exporter = meter_provider(exemplar_filter or "trace_based")
        gateway_metrics = GatewayMetrics(provider) if with_metrics else None
        call = path.caller(path.bridge(gateway_metrics))
        gc.collect()
        with _traced():
            start, rss_start = tracemalloc.get_traced_memory()[0], rss_bytes()
            done = 0
            for checkpoint in checkpoints:
                for n in range(done, checkpoint):
                    call(callers(n))
                done = checkpoint
                gc.collect()
                current, peak = tracemalloc.get_traced_memory()
                figures[f"{label}, {checkpoint}"] = current - start
                rows.append(
                    [
                        label,
                        f"{checkpoint:,}",
                        f"{(current - start) / 1024:,.1f} KiB",
                        f"{(peak - start) / 1024:,.1f} KiB",
                        f"{(rss_bytes() - rss_start) / 1024:,.0f} KiB",
                        str(gateway_metrics.bound.distinct(ATTR_MODEL)) if gateway_metrics else "—",
                        "",
                    ]
                )
            provider.force_flush()  # one collection and export through the reader, as every interval
            gc.collect()
            current, peak = tracemalloc.get_traced_memory()
            figures[f"{label}, collected"] = current - start
        duration, retries = (
            exporter.points.get(METRIC_REQUEST_DURATION, 0),
            exporter.points.get(METRIC_RETRIES, 0),
        )
        points = (
            f"{duration} / {retries} ({exporter.models.get(METRIC_REQUEST_DURATION, 0)} model values); "
            f"exemplars {exporter.exemplars.get(METRIC_REQUEST_DURATION, 0)} / "
            f"{exporter.exemplars.get(METRIC_RETRIES, 0)}"
            if with_metrics
            else "—"
        )
        if with_metrics:
            figures["duration points"] = max(duration, figures.get("duration points", 0))
            figures["retries points"] = max(retries, figures.get("retries points", 0))
        rows.append(
            [
                label,
                "then collected",
                f"{(current - start) / 1024:,.1f} KiB",
                f"{(peak - start) / 1024:,.1f} KiB",
                f"{(rss_bytes() - rss_start) / 1024:,.0f} KiB",
                str(gateway_metrics.bound.distinct(ATTR_MODEL)) if gateway_metrics else "—",
                points,
            ]
        )
        provider.shutdown()
    header = [
        "configuration",
        "calls",
        "tracemalloc growth",
        "tracemalloc peak above start",
        "RSS growth",
        "model values kept by the bound",
        "exported after collecting: points duration / retries; exemplars",
    ]
    title = (
        f"Metrics memory over {calls:,} calls naming {models:,} distinct models (hooks path, real objects)"
    )
    return table(title, header, rows), figures


def bench(smoke: bool = False) -> tuple[str, dict[str, float]]:
    """All four tables; figures: the metrics' added CPU per call (worst whole call, hooks alone,
    sum of the pieces) and the memory growth between the first checkpoint and the last."""
    calls_table, per_call = bench_calls(count=3 if smoke else 200, rounds=1 if smoke else 25)
    hooks_table, hooks = bench_hooks(count=10 if smoke else 2000, rounds=1 if smoke else 21)
    pieces_table, pieces = bench_pieces(count=20 if smoke else 3000, rounds=1 if smoke else 11)
    calls = 300 if smoke else 100_000
    memory_table, memory = bench_memory(calls=calls, models=calls // 10)
    traced, untraced = (
        "bridge + metrics, SDK, exemplars trace_based",
        "bridge + metrics, SDK, exemplars always_off",
    )
    figures = {
        "whole call, worst": max(per_call.values()),
        "hooks": hooks[AS_USERS_RUN_THEM],
        "hooks, retried calls": hooks[RETRIED],
        "hooks, no MeterProvider": hooks[NO_METER_PROVIDER],
        "pieces": pieces["sum, trace_based"],
        "pieces, no MeterProvider": pieces["sum, no MeterProvider"],
        "memory growth after the first checkpoint": memory[f"{traced}, {calls}"]
        - memory[f"{traced}, {calls // 10}"],
        "memory growth after the first checkpoint, always_off": memory[f"{untraced}, {calls}"]
        - memory[f"{untraced}, {calls // 10}"],
        "duration points": memory["duration points"],
        "retries points": memory["retries points"],
    }
    return "\n".join((calls_table, hooks_table, pieces_table, memory_table)), figures


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="few iterations, to check it runs")
    args = parser.parse_args()
    report, figures = bench(smoke=args.smoke)
    print(report)
    for name, value in figures.items():
        print(
            f"{name}: {value * 1e6:.2f} µs"
            if isinstance(value, float) and abs(value) < 1e-3
            else f"{name}: {value:,}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
