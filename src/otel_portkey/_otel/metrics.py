"""The bridge's metrics: one data point per call to a Portkey gateway, sampled or not.

:meth:`GatewayMetrics.start` runs from the request side, in the call's CLIENT span: it stands a
:class:`_Call` in for the span's ``end``, so the point is recorded when the span ends, whatever
ended it (the answer, a streamed answer's last chunk, an exception before any answer), and then
the span ends as it would have. The response side hands the gateway's answer to the same
:class:`_Call` (:func:`call_of`). Unsampled spans are counted too: they do not record attributes,
so the answer is kept on the :class:`_Call` itself.

Instruments come from the global ``MeterProvider`` (what ``opentelemetry-instrument`` sets up from
``OTEL_METRICS_EXPORTER``; without one they cost a no-op call) unless one is given. The duration's
exemplars carry the call's trace and span id, so a slow bucket leads to the trace in Jaeger.
Nothing here raises into the application.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import metrics, trace

from .._contract.call_metrics import (
    ATTR_ERROR_TYPE,
    DURATION_BUCKETS,
    METRIC_REQUEST_DURATION,
    METRIC_RETRIES,
    OTHER,
    AttributeBound,
    call_attributes,
    retry_count,
    routing_config,
)
from .diagnostics import report_once
from .processor import Caller
from .sdk_internals import waiting_for_provider

_STATUS_ATTRIBUTES = ("http.response.status_code", "http.status_code")


class GatewayMetrics:
    """``portkey.gateway.request.duration`` (histogram, s) and ``portkey.gateway.retries``
    (counter, {retry}), with one :class:`AttributeBound` for both."""

    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        from .. import __version__

        meter = metrics.get_meter("otel_portkey", __version__, meter_provider)
        self._duration = meter.create_histogram(
            METRIC_REQUEST_DURATION,
            unit="s",
            description="Duration of calls to a Portkey gateway, from the request to the end of the "
            "call's HTTP client span (a streamed answer: its end)",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._retries = meter.create_counter(
            METRIC_RETRIES,
            unit="{retry}",
            description="Retries a Portkey gateway made for the calls it answered "
            "(its x-portkey-retry-attempt-count)",
        )
        self.bound = AttributeBound()

    def start(
        self,
        span: trace.Span,
        url: str,
        caller: Caller | None,
        config: str | None = None,
        hooked: bool = True,
    ) -> None:
        """Record a point when ``span`` (a Portkey-bound call's CLIENT span) ends. ``caller`` is the
        span that made the call (its GenAI operation and model), ``config`` the request's
        ``x-portkey-config``; ``hooked``: the client's response hook will hand over the answer (a
        call seen by the propagator alone has none, and no answer then means no error)."""
        try:
            if waiting_for_provider(self._duration):  # no MeterProvider yet: the point would be dropped
                return
            end = span.end
            if isinstance(end, _Call):  # the same span started twice: keep the first
                return
            span.end = _Call(self, span, end, url, caller, config, hooked)  # type: ignore[method-assign]
        except (AttributeError, TypeError):  # a span that takes no attribute: not counted
            pass

    def record(self, call: _Call, span: trace.Span, seconds: float) -> None:
        recording = span.is_recording()
        span_attributes: Mapping[str, Any] = (getattr(span, "attributes", None) or {}) if recording else {}
        # The answer as read (span limits may have cut what the span kept); a span's attributes
        # only for a call whose answer the bridge never saw.
        answer = call.answer if call.answered or not recording else span_attributes
        status = call.status
        if status is None:
            for key in _STATUS_ATTRIBUTES:
                value = span_attributes.get(key)
                if isinstance(value, int):
                    status = value
                    break
        exception = None
        if not call.answered:  # no answer: the call raised, and its exception is being raised now
            recorded = span_attributes.get(ATTR_ERROR_TYPE)
            raised = sys.exc_info()[1]
            if raised is call.handling:  # the app was already handling it when the call began
                raised = None
            if isinstance(recorded, str):
                exception = recorded
            elif raised is not None:
                exception = type(raised).__qualname__
            elif status is None and call.hooked:  # (no hook: no answer was ever to be seen)
                exception = OTHER
        attributes, new_series = self.bound.bound_series(
            call_attributes(
                answer,
                status,
                exception,
                call.server,
                call.operation,
                call.model,
                routing_config(call.config),
            )
        )
        context = trace.set_span_in_context(span)
        self._duration.record(seconds, attributes, context=context)
        retries = retry_count(answer)
        if retries or new_series:  # a series starts at 0 (so the first retries count in rate()); no
            self._retries.add(retries, attributes, context=context)  # other 0 is worth its 10 µs


class _Call:
    """One call in flight: stands in for its span's ``end`` until the span ends, then records the
    call's point and ends the span (once). Holds the answer for spans that record none."""

    __slots__ = (
        "_ending",
        "answer",
        "answered",
        "config",
        "handling",
        "hooked",
        "model",
        "operation",
        "server",
        "started",
        "status",
    )

    def __init__(
        self,
        gateway_metrics: GatewayMetrics,
        span: trace.Span,
        end: Callable[..., None],
        url: str,
        caller: Caller | None,
        config: str | None = None,
        hooked: bool = True,
    ) -> None:
        self.started = time.perf_counter()
        self.handling = sys.exc_info()[1]  # an exception the app handles around the call: not its error
        # What ending the span takes (its own ``end``, the span, the metrics), taken out once by
        # whichever thread ends the span first (``list.pop`` is atomic): the point is recorded
        # once, the span ended once, and no cycle through the span stays after.
        self._ending: list[tuple[Callable[..., None], trace.Span, GatewayMetrics]] = [
            (end, span, gateway_metrics)
        ]
        self.config = config
        self.hooked = hooked
        self.server = _host(url)
        self.operation, self.model = (caller.operation, caller.model) if caller else (None, None)
        self.answer: Mapping[str, object] = {}
        self.answered = False
        self.status: int | None = None

    def answered_with(self, answer: Mapping[str, object], status: object) -> None:
        self.answered = True
        self.answer = answer
        if isinstance(status, int) and not isinstance(status, bool):
            self.status = status

    def __call__(self, end_time: int | None = None) -> None:
        try:
            end, span, gateway_metrics = self._ending.pop()
        except IndexError:  # ended already
            return
        try:
            if getattr(span, "__dict__", {}).get("end") is self:
                del span.end
            gateway_metrics.record(self, span, time.perf_counter() - self.started)
        except Exception as error:
            report_once("recording Portkey gateway metrics", error)
        end(end_time)


def call_of(span: object) -> _Call | None:
    """The :class:`_Call` standing in for ``span``'s end, if metrics are counting its call."""
    end = getattr(span, "__dict__", {}).get("end")
    return end if isinstance(end, _Call) else None


@functools.lru_cache(maxsize=256)
def _host(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None
