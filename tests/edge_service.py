"""A FastAPI service at a public edge, for the inbound trace-context tests, run under
``opentelemetry-instrument``:

    opentelemetry-instrument python tests/edge_service.py PORT

``POST /ask``  one chat call through the gateway (``GATEWAY_URL``, routed to ``MODEL_URL``), then
               ``record_feedback(5)`` (to ``OTEL_PORTKEY_FEEDBACK_BASE_URL``); answers the gateway's
               status, the trace id the request's spans are in, and the baggage keys the server
               instrumentation put into the request's context.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from opentelemetry import baggage, trace

from otel_portkey import record_feedback
from otel_portkey.testing import route_headers

app = FastAPI()


@app.post("/ask")
def ask() -> dict[str, Any]:
    response = httpx.post(
        f"{os.environ['GATEWAY_URL']}/v1/chat/completions",
        headers={**route_headers(os.environ["MODEL_URL"]), "authorization": "Bearer sk-test"},
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    feedback = record_feedback(5)
    return {
        "status": response.status_code,
        "trace_id": format(trace.get_current_span().get_span_context().trace_id, "032x"),
        "feedback": getattr(feedback, "status", None),
        "baggage_keys": sorted(baggage.get_all()),
    }


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
