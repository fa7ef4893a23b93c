"""An app for tests/test_dashboard.py, run under ``opentelemetry-instrument`` with
OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED=true and a small span queue: the calls of
tests/monitoring_app.py (plain, retried, fallen back on, streamed, unsampled) through a Portkey
gateway; then (``PHASE=first``) a call its upstream fails (the gateway answers 500), or (second) a
call to another model and one more plain call; then a burst of spans faster than the SDK's queue can
take (the SDK drops some: error.type=queue_full), a bigger one the second time. The app exports its
metrics once, at exit: the second run's plain calls and drops outnumber the first's, so the counts
Prometheus sees grow."""

from __future__ import annotations

import contextlib
import os

import openai

from monitoring_app import FAILING, MESSAGES, call, client, main, route, tracer

BURST = 1000


def failed_call() -> None:
    with contextlib.suppress(openai.InternalServerError):
        call("failed", route(FAILING))


def burst(spans: int) -> None:
    for number in range(spans):
        tracer.start_span(f"burst {number}").end()


if __name__ == "__main__":
    main()
    if os.environ.get("PHASE") == "first":
        failed_call()
        burst(BURST)
    else:
        client(route(os.environ["MODEL_OK"])).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        call("plain", route(os.environ["MODEL_OK"]))
        burst(3 * BURST)
