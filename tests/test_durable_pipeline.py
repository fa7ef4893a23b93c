"""Nothing lost between the app and Jaeger or Portkey, proved with the real processes (issue 20,
items 1 and 2): Jaeger with Badger (examples/jaeger-config.yaml) reads back after a restart what it
stored before; the Collector (collector-config.yaml, persistent queues in file_storage) killed with
SIGKILL while a backend is down delivers, once restarted and the backend is up, every span it had
accepted; stopped with SIGTERM instead, it logs "Exporting failed. Dropping data." for the batch it
was retrying, yet keeps that batch on disk and delivers it once restarted (issue 27, item 5); past its
bound a queue refuses new spans, counted by the Collector, which keeps running.

Every count asserted is one Jaeger, the Portkey stand-in or the Collector's own metrics answered.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_portkey._peers.loopback import LoopbackServer
from otel_portkey.testing import OtlpReceiver, free_port

from components import Collector, Jaeger, Metrics, span_id, trace_id_hex
from conftest import PORTKEY_STANDIN_KEY

pytestmark = pytest.mark.integration

SERVICE = "durable-app"
JAEGER_EXPORTER = "otlp_grpc/jaeger"
PORTKEY_EXPORTER = "otlp_http/portkey"
PORTKEY_PATH = "/v1/otel/v1/traces"


def make_spans(traces: int, spans_per_trace: int, service: str = SERVICE) -> list[ReadableSpan]:
    """``traces`` traces of one root and ``spans_per_trace - 1`` children each, made by the SDK."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("durable")
    for number in range(traces):
        with tracer.start_as_current_span(f"request {number}"):
            for child in range(spans_per_trace - 1):
                with tracer.start_as_current_span(f"step {child}") as span:
                    span.set_attribute("portkey.metadata._user", f"user-{number}")
    provider.shutdown()
    return list(memory.get_finished_spans())


def ids(spans: list[ReadableSpan]) -> set[tuple[str, str]]:
    return {(format(s.context.trace_id, "032x"), format(s.context.span_id, "016x")) for s in spans}


def export(collector: Collector, spans: list[ReadableSpan], per_request: int = 10) -> None:
    """The app's OTLP/HTTP exporter sends ``spans`` to the Collector, ``per_request`` per export;
    each export must be accepted (the Collector answers 200 once its queues hold the spans)."""
    exporter = OTLPSpanExporter(endpoint=f"{collector.otlp_http}/v1/traces", timeout=10)
    try:
        for start in range(0, len(spans), per_request):
            assert exporter.export(spans[start : start + per_request]) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()


def in_jaeger(
    jaeger: Jaeger, trace_ids: set[str], spans_per_trace: int, timeout: float = 30
) -> set[tuple[str, str]]:
    """Every (trace id, span id) Jaeger returns for ``trace_ids``, read one trace at a time
    (each waited for up to ``timeout``)."""
    found: set[tuple[str, str]] = set()
    for trace_id in sorted(trace_ids):
        for span in jaeger.trace(trace_id, spans=spans_per_trace, timeout=timeout):
            found.add((trace_id_hex(span["traceId"]), span_id(span)))
    return found


def queue_file(collector: Collector, exporter: str) -> Path:
    """The bbolt file file_storage keeps ``exporter``'s queue in (one per exporter and signal)."""
    name = exporter.replace("/", "_")
    (path,) = [p for p in collector.storage_dir.iterdir() if p.name.startswith(f"exporter_{name}")]
    return path


def wait_for_metric(
    collector: Collector, predicate: Callable[[Metrics], bool], timeout: float = 30
) -> Metrics:
    """The Collector's own metrics once ``predicate(samples)`` holds (or past ``timeout``, the last)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = collector.own_metrics()
        if predicate(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


def portkey_standin() -> OtlpReceiver:
    """Portkey's OTLP endpoint, stood in for: checks the path and the API key."""
    return OtlpReceiver(required_headers={"x-portkey-api-key": PORTKEY_STANDIN_KEY}, path=PORTKEY_PATH)


class LateReceiver(OtlpReceiver):
    """The Portkey stand-in on a port chosen before it listens: the Collector is pointed at it
    while nothing answers there (connection refused), and ``start()`` brings it up later."""

    def __init__(self, port: int) -> None:
        super().__init__(required_headers={"x-portkey-api-key": PORTKEY_STANDIN_KEY}, path=PORTKEY_PATH)
        self._handler: type[BaseHTTPRequestHandler] = self._server.RequestHandlerClass  # type: ignore[assignment]
        self._server.server_close()  # the port it was given goes back: only ``late_port`` is used
        self.late_port = port
        self.started = False

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.late_port}"

    def start(self) -> LateReceiver:
        self._server = LoopbackServer(self._handler, self.late_port)
        self.started = True
        return super().start()

    def stop(self) -> None:
        if self.started:
            super().stop()


@pytest.fixture
def badger_jaeger(go_binaries: dict[str, str], tmp_path: Path) -> Iterator[Jaeger]:
    jaeger = Jaeger(go_binaries["JAEGER"], badger_dir=tmp_path / "badger")
    yield jaeger
    jaeger.stop()


def test_jaeger_with_badger_reads_back_after_a_restart_what_it_stored_before(badger_jaeger):
    spans = make_spans(traces=3, spans_per_trace=4)
    exporter = OTLPSpanExporter(endpoint=f"{badger_jaeger.otlp_http}/v1/traces", timeout=10)
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    exporter.shutdown()
    trace_ids = {trace_id for trace_id, _ in ids(spans)}
    before = in_jaeger(badger_jaeger, trace_ids, spans_per_trace=4)
    assert before == ids(spans), "Jaeger stored every span before the restart"

    badger_jaeger.terminate()  # SIGTERM, as docker stop or systemd would
    assert not badger_jaeger.running
    assert badger_jaeger.badger_dir is not None
    assert any((badger_jaeger.badger_dir / "values").iterdir()), "Badger wrote its value log there"
    badger_jaeger.start()  # same directory, same ports

    after = in_jaeger(badger_jaeger, trace_ids, spans_per_trace=4)
    assert after == ids(spans)
    assert set(badger_jaeger.search(SERVICE)) == trace_ids, "its search index came back too"


def assert_holds_for(collector: Collector, spans: int, down: str, up: str) -> None:
    """By the Collector's own metrics: it accepted ``spans`` spans, sent them all through exporter
    ``up``, and holds them in exporter ``down``'s queue, none sent there and none refused."""
    held = wait_for_metric(
        collector,
        lambda m: (
            m.total("otelcol_receiver_accepted_spans") == spans
            and m.total("otelcol_exporter_queue_size", exporter=down) > 0
            and m.total("otelcol_exporter_sent_spans", exporter=up) == spans
        ),
    )
    assert held.total("otelcol_receiver_accepted_spans") == spans
    assert held.total("otelcol_exporter_queue_size", exporter=down) > 0
    assert held.total("otelcol_exporter_sent_spans", exporter=up) == spans
    assert held.total("otelcol_exporter_enqueue_failed_spans") == 0
    assert held.total("otelcol_exporter_sent_spans", exporter=down) == 0


@pytest.mark.parametrize("kill_when", ["queued", "acknowledged"])
def test_a_collector_killed_while_jaeger_is_down_delivers_every_span_once_restarted(go_binaries, kill_when):
    """``queued``: killed once its own metrics show the spans held for Jaeger (and sent to Portkey);
    ``acknowledged``: killed the moment the app's last export was answered 200."""
    spans = make_spans(traces=10, spans_per_trace=5)  # 50 spans
    trace_ids = {trace_id for trace_id, _ in ids(spans)}
    jaeger = Jaeger(go_binaries["JAEGER"], start=False)  # its ports are chosen; nothing listens yet
    with portkey_standin() as portkey:
        collector = Collector(
            go_binaries["OTELCOL"], jaeger.otlp_grpc, f"{portkey.endpoint}/v1/otel", PORTKEY_STANDIN_KEY
        )
        try:
            export(collector, spans)
            if kill_when == "queued":
                assert_holds_for(collector, len(spans), down=JAEGER_EXPORTER, up=PORTKEY_EXPORTER)

            collector.kill()  # SIGKILL: no shutdown, nothing flushed
            assert queue_file(collector, JAEGER_EXPORTER).stat().st_size > 0
            collector.start()  # same storage directory, same ports
            jaeger.start()

            # The restarted Collector says when it has sent them all (its retries back off, up
            # to 30 s apart); then Jaeger says what it holds.
            sent_after_restart = wait_for_metric(
                collector,
                lambda m: m.total("otelcol_exporter_sent_spans", exporter=JAEGER_EXPORTER) >= len(spans),
                timeout=90,
            )
            delivered = in_jaeger(jaeger, trace_ids, spans_per_trace=5, timeout=5)
            to_portkey = portkey.wait_for(lambda got: {s.trace_id for s in got} >= trace_ids, timeout=30)
        finally:
            collector.stop()
            jaeger.stop()
    assert delivered == ids(spans), f"{len(delivered)} of {len(spans)} spans reached Jaeger"
    resent = sent_after_restart.total("otelcol_exporter_sent_spans", exporter=JAEGER_EXPORTER)
    assert resent == len(spans), "the restarted Collector sent each queued span once"
    assert {(s.trace_id, s.span_id) for s in to_portkey} == ids(spans), "Portkey's copy was whole too"


def test_a_collector_killed_while_portkey_is_down_delivers_every_span_once_restarted(go_binaries, jaeger):
    spans = make_spans(traces=10, spans_per_trace=5)  # 50 spans
    portkey = LateReceiver(free_port())  # its port is chosen; nothing listens yet
    collector = Collector(
        go_binaries["OTELCOL"], jaeger.otlp_grpc, f"{portkey.endpoint}/v1/otel", PORTKEY_STANDIN_KEY
    )
    try:
        export(collector, spans)
        assert_holds_for(collector, len(spans), down=PORTKEY_EXPORTER, up=JAEGER_EXPORTER)

        collector.kill()
        assert queue_file(collector, PORTKEY_EXPORTER).stat().st_size > 0
        collector.start()
        portkey.start()

        received = portkey.wait_for(
            lambda got: {(s.trace_id, s.span_id) for s in got} >= ids(spans), timeout=60
        )
    finally:
        collector.stop()
        portkey.stop()
    delivered = {(s.trace_id, s.span_id) for s in received}
    assert delivered == ids(spans), f"{len(delivered)} of {len(spans)} spans reached the Portkey stand-in"
    assert len(received) == len(spans), "each span arrived once"
    assert portkey.rejected == [], "every export carried the API key"


def wait_for_log(collector: Collector, predicate: Callable[[str], bool], timeout: float = 30) -> str:
    """The Collector's log once ``predicate(log)`` holds (or past ``timeout``, the last)."""
    deadline = time.monotonic() + timeout
    while True:
        log = collector.log()
        if predicate(log) or time.monotonic() > deadline:
            return log
        time.sleep(0.2)


def test_a_collector_stopped_with_sigterm_says_dropping_data_yet_keeps_and_delivers_the_batch(
    go_binaries, jaeger
):
    """SIGTERM (docker stop, systemd) while Portkey is unreachable: the exporter logs, at level
    error, ``Exporting failed. Dropping data.`` for the batch it was retrying, but that batch stays
    in its persistent queue, and the restarted Collector sends every span of it, once."""
    spans = make_spans(traces=10, spans_per_trace=5)  # 50 spans
    portkey = LateReceiver(free_port())  # nothing listens there yet: connection refused
    collector = Collector(
        go_binaries["OTELCOL"], jaeger.otlp_grpc, f"{portkey.endpoint}/v1/otel", PORTKEY_STANDIN_KEY
    )
    retrying = "Exporting failed. Will retry the request after interval."
    try:
        export(collector, spans)
        assert_holds_for(collector, len(spans), down=PORTKEY_EXPORTER, up=JAEGER_EXPORTER)
        before = wait_for_log(collector, lambda log: retrying in log)
        assert retrying in before, before[-3000:]

        collector.terminate()  # SIGTERM and a clean shutdown, not SIGKILL
        shutdown_log = collector.log()
        assert queue_file(collector, PORTKEY_EXPORTER).stat().st_size > 0
        collector.start()  # same storage directory, same ports
        portkey.start()

        received = portkey.wait_for(
            lambda got: {(s.trace_id, s.span_id) for s in got} >= ids(spans), timeout=60
        )
        restart_log = collector.log()[len(shutdown_log) :]
    finally:
        collector.stop()
        portkey.stop()

    dropping = [line for line in shutdown_log.splitlines() if "Exporting failed. Dropping data." in line]
    assert dropping, shutdown_log[-3000:]
    for line in dropping:
        assert "\terror\t" in line, line
        assert f'"otelcol.component.id": "{PORTKEY_EXPORTER}"' in line, line
        assert '"error": "interrupted due to shutdown: ' in line, line
    said_dropped = sum(int(re.findall(r'"dropped_items": (\d+)', line)[0]) for line in dropping)
    assert 0 < said_dropped <= len(spans)

    (loaded,) = [
        line
        for line in restart_log.splitlines()
        if "Loaded queue metadata" in line and f'"otelcol.component.id": "{PORTKEY_EXPORTER}"' in line
    ]
    assert f'"itemsSize": {len(spans)},' in loaded, "every span it said it dropped was still on disk"
    delivered = {(s.trace_id, s.span_id) for s in received}
    assert delivered == ids(spans), f"{len(delivered)} of {len(spans)} spans reached the Portkey stand-in"
    assert len(received) == len(spans), "each span arrived once"
    assert portkey.rejected == [], "every export carried the API key"


def post(collector: Collector, spans: list[ReadableSpan]) -> int:
    """One OTLP/HTTP export, as an SDK sends it; the Collector's HTTP status."""
    request = urllib.request.Request(
        f"{collector.otlp_http}/v1/traces",
        data=encode_spans(spans).SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_past_its_bound_a_queue_refuses_new_spans_counts_them_and_the_collector_keeps_running(go_binaries):
    """The shipped bound is 256 MiB per backend; here Jaeger's queue is cut to 16 KiB (a
    ``--config=yaml:`` override of queue_size) so that a few exports fill it."""
    bound = 16384
    override = f"exporters::{JAEGER_EXPORTER}::sending_queue::queue_size: {bound}"
    with portkey_standin() as portkey:
        collector = Collector(
            go_binaries["OTELCOL"],
            f"127.0.0.1:{free_port()}",  # Jaeger never comes up
            f"{portkey.endpoint}/v1/otel",
            PORTKEY_STANDIN_KEY,
            overrides=(override,),
        )
        try:
            statuses = [post(collector, make_spans(traces=2, spans_per_trace=5)) for _ in range(30)]
            samples = collector.own_metrics()
            running = collector.running
            with urllib.request.urlopen(f"http://127.0.0.1:{collector.health_port}/", timeout=5) as health:
                healthy = health.status
        finally:
            collector.stop()
    refused = statuses.count(503)
    assert statuses.count(200) > 0, statuses
    assert refused > 0, statuses
    assert statuses.count(200) + refused == len(statuses), statuses
    assert set(statuses[statuses.index(503) :]) == {503}, "once full, it stays full while Jaeger is down"
    assert samples.total("otelcol_exporter_queue_capacity", exporter=JAEGER_EXPORTER) == bound
    assert 0 < samples.total("otelcol_exporter_queue_size", exporter=JAEGER_EXPORTER) <= bound
    assert samples.total("otelcol_exporter_enqueue_failed_spans", exporter=JAEGER_EXPORTER) == (
        refused * 10
    ), "every refused span is counted"
    assert running, "a full queue refuses data; the Collector does not fall over"
    assert healthy == 200
