"""Six jobs in a ``concurrent.futures.ProcessPoolExecutor``, each making one gateway call inside its
own span, run as ``opentelemetry-instrument python pool_app.py fork|forkserver|spawn``.

Each job's span ``pool job`` is the root of its own trace, so each of the six calls carries its
own trace id to the gateway. The app does nothing for OpenTelemetry at all: no flush, no shutdown;
whether the workers' spans and metrics leave them before they exit is the bridge's promise
(DESIGN.md, "Process models"). A ``fork`` worker leaves through ``os._exit`` (so does a
``forkserver`` one): no ``atexit`` handler of the SDK runs there. ``spawn`` workers end with
``sys.exit``. Prints ``{"parent": pid, "jobs": [{"label", "pid", "status"}, ...]}``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import httpx
from gateway_call import chat
from opentelemetry import trace

JOBS = 6
WORKERS = 3

tracer = trace.get_tracer("process_models.pool_app")


def job(label: str) -> dict[str, object]:
    with (
        tracer.start_as_current_span("pool job", attributes={"test.label": label, "worker.pid": os.getpid()}),
        httpx.Client(timeout=30) as client,
    ):
        status = chat(client, label)
    return {"label": label, "pid": os.getpid(), "status": status}


def main(method: str) -> None:
    service = os.environ["OTEL_SERVICE_NAME"]
    labels = [f"{service}-job-{n}" for n in range(JOBS)]
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(max_workers=WORKERS, mp_context=context) as pool:
        jobs = list(pool.map(job, labels))
    print(json.dumps({"parent": os.getpid(), "jobs": jobs}))


if __name__ == "__main__":
    main(sys.argv[1])
