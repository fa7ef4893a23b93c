"""The demo's metrics, read back from what the agent exported: an OTLP/HTTP metrics receiver on
loopback, and the summary of the bridge's ``portkey.gateway.*`` instruments it received.

The agent exports its metrics as a user's app would (``OTEL_METRICS_EXPORTER=otlp`` under
``opentelemetry-instrument``); :class:`OtlpMetricsReceiver` decodes each export with the official
``opentelemetry-proto`` messages, and :func:`summarize` turns the last state of every series into
calls, calls per provider, retries, fallbacks, cache statuses and p50/p95, the quantiles estimated
from the histogram's buckets as Prometheus's ``histogram_quantile`` does
(:func:`histogram_quantile`).
"""

from __future__ import annotations

import gzip
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from .._contract.call import (
    ATTR_CACHE_STATUS,
    ATTR_FALLBACK,
    ATTR_PROVIDER,
    METRIC_REQUEST_DURATION,
    METRIC_RETRIES,
)
from .._peers.loopback import LoopbackHandler, LoopbackServer, LoopbackService
from .._peers.otlp_receiver import _attributes, answer, relay

METRICS_PATH = "/v1/metrics"
DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
NONE = "(none)"  # the key of calls whose answer named no provider or cache status (a failed call)


@dataclass(frozen=True)
class ReceivedPoint:
    """One data point of a sum or a histogram, as it arrived over OTLP."""

    metric: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    start_ns: int
    time_ns: int
    delta: bool  # delta temporality: points add up; else cumulative: the latest one holds the total
    value: float = 0.0  # a sum's value; a histogram's count
    bounds: tuple[float, ...] = ()  # a histogram's explicit bucket boundaries
    bucket_counts: tuple[int, ...] = ()  # len(bounds) + 1 (the last one is (bounds[-1], +Inf))

    def series(self) -> tuple[object, ...]:
        return (
            self.metric,
            tuple(sorted(self.resource.items(), key=str)),
            tuple(sorted(self.attributes.items(), key=str)),
            self.start_ns,
        )


def decode_points(payload: bytes, names: Iterable[str] | None = None) -> list[ReceivedPoint]:
    """The sum and histogram points of an OTLP ``ExportMetricsServiceRequest`` (only the metrics
    named in ``names``, when given)."""
    wanted = set(names) if names is not None else None
    request = ExportMetricsServiceRequest()
    request.ParseFromString(payload)
    points = []
    for resource_metrics in request.resource_metrics:
        resource = _attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if wanted is not None and metric.name not in wanted:
                    continue
                kind = metric.WhichOneof("data")
                if kind not in ("histogram", "sum"):
                    continue
                data = getattr(metric, kind)
                delta = data.aggregation_temporality == DELTA
                for point in data.data_points:
                    if kind == "histogram":
                        value, bounds, counts = float(point.count), point.explicit_bounds, point.bucket_counts
                    else:
                        number = point.as_int if point.WhichOneof("value") == "as_int" else point.as_double
                        value, bounds, counts = float(number), (), ()
                    points.append(
                        ReceivedPoint(
                            metric.name,
                            _attributes(point.attributes),
                            resource,
                            point.start_time_unix_nano,
                            point.time_unix_nano,
                            delta,
                            value,
                            tuple(bounds),
                            tuple(counts),
                        )
                    )
    return points


class OtlpMetricsReceiver(LoopbackService):
    """``with OtlpMetricsReceiver() as receiver: ... receiver.points`` — takes ``POST /v1/metrics``
    (protobuf, optionally gzip, whole or chunked) and keeps the points of the bridge's instruments. With
    ``forward_to`` (an OTLP/HTTP base URL) each export is relayed to ``<forward_to>/v1/metrics``
    too, best effort (a receiver there that takes no metrics is counted in ``forward_failures``)."""

    thread_name = "otlp-metrics-receiver"
    names = (METRIC_REQUEST_DURATION, METRIC_RETRIES)

    def __init__(self, forward_to: str | None = None) -> None:
        self._points: list[ReceivedPoint] = []
        self._lock = threading.Lock()
        self.forward_to = forward_to
        self.forward_failures = 0
        receiver = self

        class Handler(LoopbackHandler):
            def do_POST(self) -> None:
                body = self.request_body()  # whole or chunked (OpenTelemetry for Node sends chunks)
                if body is None:
                    return
                status = 404
                if self.path == METRICS_PATH:
                    try:
                        if (self.headers.get("content-encoding") or "").lower() == "gzip":
                            body = gzip.decompress(body)
                        points = decode_points(body, receiver.names)
                        status = 200
                    except Exception:  # not an OTLP metrics export
                        status = 400
                if status == 200:
                    with receiver._lock:
                        receiver._points += points
                    if receiver.forward_to:
                        receiver._forward(body)
                answer(self, status, ExportMetricsServiceResponse().SerializeToString())

        self._server = LoopbackServer(Handler)

    def _forward(self, payload: bytes) -> None:
        if not relay(f"{self.forward_to}{METRICS_PATH}", payload):
            with self._lock:
                self.forward_failures += 1

    @property
    def endpoint(self) -> str:
        """The full URL for ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``."""
        return f"{self.url}{METRICS_PATH}"

    @property
    def points(self) -> list[ReceivedPoint]:
        with self._lock:
            return list(self._points)

    def wait_for(
        self, predicate: Callable[[list[ReceivedPoint]], bool], timeout: float = 5.0
    ) -> list[ReceivedPoint]:
        """Wait until ``predicate(points)`` is true; return the points either way."""
        deadline = time.monotonic() + timeout
        while not predicate(self.points) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.points


def histogram_quantile(q: float, bounds: Sequence[float], counts: Sequence[int]) -> float | None:
    """The ``q``-quantile (0 <= q <= 1) of a histogram, estimated as Prometheus's
    ``histogram_quantile`` does: find the bucket holding the ``q * count``-th observation and
    interpolate linearly within it; the lowest bucket starts at 0, and a quantile falling in the
    open bucket above the last boundary is that boundary. ``counts`` are per bucket, OTLP style
    (``len(bounds) + 1`` of them, not cumulative). None when there are no observations or no
    boundary. (Unlike Prometheus, ``q = 0`` skips empty leading buckets instead of dividing 0 by 0.)
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"a quantile is between 0 and 1, not {q}")
    if len(counts) != len(bounds) + 1:
        raise ValueError(f"{len(bounds)} boundaries make {len(bounds) + 1} buckets, not {len(counts)}")
    total = sum(counts)
    if total == 0 or not bounds:
        return None
    rank = q * total
    below = 0  # observations in the buckets before this one
    for index, upper in enumerate(bounds):
        count = counts[index]
        if count and below + count >= rank:
            lower = bounds[index - 1] if index else 0.0
            if index == 0 and upper <= 0:
                return upper
            return lower + (upper - lower) * (rank - below) / count
        below += count
    return bounds[-1]  # in the +Inf bucket


def merged(points: Iterable[ReceivedPoint]) -> list[ReceivedPoint]:
    """One point per series holding its total: cumulative series by their latest point, delta
    series by the sum of their points."""
    latest: dict[tuple[object, ...], ReceivedPoint] = {}
    for point in sorted(points, key=lambda p: p.time_ns):
        key = point.series()
        before = latest.get(key)
        if before is not None and point.delta:
            counts = tuple(a + b for a, b in zip(before.bucket_counts, point.bucket_counts, strict=False))
            point = ReceivedPoint(
                point.metric,
                point.attributes,
                point.resource,
                point.start_ns,
                point.time_ns,
                True,
                before.value + point.value,
                point.bounds,
                counts if point.bounds == before.bounds else point.bucket_counts,
            )
        latest[key] = point
    return list(latest.values())


@dataclass(frozen=True)
class MetricsSummary:
    """What the bridge's metrics say about the demo's calls, as they were exported."""

    calls: int
    providers: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    fallbacks: int = 0
    cache_statuses: dict[str, int] = field(default_factory=dict)
    p50_seconds: float | None = None
    p95_seconds: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "providers": self.providers,
            "retries": self.retries,
            "fallbacks": self.fallbacks,
            "cache_statuses": self.cache_statuses,
            "p50_seconds": _rounded(self.p50_seconds),
            "p95_seconds": _rounded(self.p95_seconds),
        }

    def text(self) -> str:
        """One line: ``4 calls (openai 4)  retries 0  fallbacks 0  cache DISABLED 4  p50 ... p95 ...``."""
        providers = ", ".join(f"{name} {count}" for name, count in self.providers.items())
        cache = ", ".join(f"{status} {count}" for status, count in self.cache_statuses.items())
        return (
            f"{self.calls} calls ({providers or 'no provider'})  retries {self.retries}  "
            f"fallbacks {self.fallbacks}  cache {cache or '-'}  "
            f"p50 {_duration(self.p50_seconds)}  p95 {_duration(self.p95_seconds)}"
        )


def summarize(points: Iterable[ReceivedPoint]) -> MetricsSummary | None:
    """The summary of ``portkey.gateway.request.duration`` and ``portkey.gateway.retries``; None
    when no call was recorded."""
    totals = merged(points)
    durations = [p for p in totals if p.metric == METRIC_REQUEST_DURATION and p.value > 0]
    if not durations:
        return None
    providers: Counter[str] = Counter()
    cache: Counter[str] = Counter()
    fallbacks = 0
    for point in durations:
        calls = int(point.value)
        providers[str(point.attributes.get(ATTR_PROVIDER, NONE))] += calls
        cache[str(point.attributes.get(ATTR_CACHE_STATUS, NONE))] += calls
        if point.attributes.get(ATTR_FALLBACK) is True:
            fallbacks += calls
    bounds = Counter(p.bounds for p in durations).most_common(1)[0][0]
    buckets = [0] * (len(bounds) + 1)
    for point in durations:
        if point.bounds == bounds:
            buckets = [a + b for a, b in zip(buckets, point.bucket_counts, strict=True)]
    retries = sum(p.value for p in totals if p.metric == METRIC_RETRIES)
    return MetricsSummary(
        calls=sum(int(p.value) for p in durations),
        providers=dict(providers.most_common()),
        retries=int(retries),
        fallbacks=fallbacks,
        cache_statuses=dict(cache.most_common()),
        p50_seconds=histogram_quantile(0.5, bounds, buckets),
        p95_seconds=histogram_quantile(0.95, bounds, buckets),
    )


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 4)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"
