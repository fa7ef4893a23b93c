"""A FastAPI app for uvicorn's worker processes, run as
``opentelemetry-instrument uvicorn --workers 2 asgi_app:app`` (uvicorn starts its workers with
``multiprocessing``'s spawn method: each one sets OpenTelemetry up again as it starts).

``GET /ready`` answers at once. ``GET /call?label=L`` makes one gateway call inside the app's span
``handle call`` (under FastAPI's SERVER span) and answers ``{"pid": ..., "label": ..., "status": ...}``.
"""

from __future__ import annotations

import os

import httpx
from fastapi import FastAPI
from gateway_call import chat_async
from opentelemetry import trace

tracer = trace.get_tracer("process_models.asgi_app")
client = httpx.AsyncClient(timeout=30)
app = FastAPI()


@app.get("/ready")
async def ready() -> dict[str, object]:
    return {"pid": os.getpid()}


@app.get("/call")
async def call(label: str) -> dict[str, object]:
    with tracer.start_as_current_span(
        "handle call", attributes={"test.label": label, "worker.pid": os.getpid()}
    ):
        status = await chat_async(client, label)
    return {"pid": os.getpid(), "label": label, "status": status}
