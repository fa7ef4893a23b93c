"""A small FastAPI service for the inbound-baggage tests, run under ``opentelemetry-instrument``.

    opentelemetry-instrument python tests/llm_service.py PORT

``POST /ask``    one chat call through the gateway (``GATEWAY_URL``, routed to ``MODEL_URL``), inside
                 ``portkey_metadata(feature="qa")`` when ``?own=1``; answers the gateway's status and
                 the baggage keys the server instrumentation put into the request's context.
``POST /relay``  inside ``portkey_metadata(_user="alice", team="t-1")``, calls ``DOWNSTREAM_URL/ask``:
                 the upstream service of a two-service chain.
"""

from __future__ import annotations

import os
import sys
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from opentelemetry import baggage

from otel_portkey import portkey_metadata
from otel_portkey.testing import route_headers

app = FastAPI()


@app.post("/ask")
def ask(own: int = 0) -> dict[str, Any]:
    inbound = sorted(baggage.get_all())
    block: AbstractContextManager[object] = portkey_metadata(feature="qa") if own else nullcontext()
    with block:
        response = httpx.post(
            f"{os.environ['GATEWAY_URL']}/v1/chat/completions",
            headers={**route_headers(os.environ["MODEL_URL"]), "authorization": "Bearer sk-test"},
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
    return {"status": response.status_code, "baggage_keys": inbound}


@app.post("/relay")
def relay() -> dict[str, Any]:
    with portkey_metadata(_user="alice", team="t-1"):
        response = httpx.post(f"{os.environ['DOWNSTREAM_URL']}/ask", timeout=60)
    answer: dict[str, Any] = response.json()
    return answer


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
