"""A WSGI app for gunicorn's pre-fork sync workers, run as
``opentelemetry-instrument gunicorn --workers 2 [--preload] wsgi_app:app``.

``GET /ready`` answers at once. ``GET /call?label=L`` makes one gateway call inside the app's span
``handle call`` (SERVER: no WSGI instrumentation is installed, so the app's own span is the
request's) and answers ``{"pid": ..., "label": ..., "status": ...}``. The httpx client is made at
import, as apps make their LLM clients: under ``--preload`` in gunicorn's master, before the fork.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import httpx
from gateway_call import chat
from opentelemetry import trace

tracer = trace.get_tracer("process_models.wsgi_app")
client = httpx.Client(timeout=30)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    answer: dict[str, object] = {"pid": os.getpid()}
    if environ.get("PATH_INFO") == "/call":
        label = parse_qs(environ.get("QUERY_STRING", "")).get("label", [""])[0]
        with tracer.start_as_current_span(
            "handle call",
            kind=trace.SpanKind.SERVER,
            attributes={"test.label": label, "worker.pid": os.getpid()},
        ):
            answer.update(label=label, status=chat(client, label))
    body = json.dumps(answer).encode()
    start_response("200 OK", [("content-type", "application/json"), ("content-length", str(len(body)))])
    return [body]
