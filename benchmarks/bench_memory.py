"""Memory over many calls: tracemalloc and RSS while the full hook path runs on real objects.

The hooks are driven directly with real httpx requests/responses and real SDK spans (no
network), so 100,000 calls take seconds and only the bridge's own allocations can grow.
"""

from __future__ import annotations

import gc
import json
import os
import tracemalloc

import httpx
from harness import DiscardingExporter, table
from opentelemetry.instrumentation.httpx import RequestInfo, ResponseInfo
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from otel_portkey import PortkeySpanProcessor, portkey_metadata
from otel_portkey._otel.bridge import Bridge
from otel_portkey._otel.client_hooks import httpx_hooks
from otel_portkey._otel.kept_trace_ids import portkey_trace_ids
from otel_portkey.config import PortkeySettings

GATEWAY = "http://127.0.0.1:8787"


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def bench(calls: int) -> tuple[str, dict[str, float]]:
    provider = TracerProvider()
    processor = PortkeySpanProcessor()
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(DiscardingExporter()))
    tracer = provider.get_tracer("bench")
    bridge = Bridge(PortkeySettings.from_env({}, gateway_urls=[GATEWAY]))
    hooks = httpx_hooks(lambda: bridge)
    body = json.dumps({"model": "gpt-4o"}).encode()

    def call(n: int) -> None:
        request = httpx.Request("POST", f"{GATEWAY}/v1/chat/completions", content=body)
        if n % 2:  # half the calls keep a caller's own trace id, as createHeaders(trace_id=...) does
            request.headers["x-portkey-trace-id"] = f"caller-{n}"
        with tracer.start_as_current_span("chat gpt-4o"), tracer.start_as_current_span("POST") as span:
            info = RequestInfo(b"POST", request.url, request.headers, request.stream, request.extensions)
            hooks["request_hook"](span, info)
            response = httpx.Response(
                200,
                headers={
                    "x-portkey-trace-id": request.headers["x-portkey-trace-id"],
                    "x-portkey-cache-status": "MISS",
                },
            )
            hooks["response_hook"](
                span, info, ResponseInfo(200, response.headers, response.stream, response.extensions)
            )

    rows, figures = [], {}
    for label, metadata in (("no metadata", False), ("context metadata", True)):
        with portkey_metadata(session="s-1") if metadata else _Nothing():
            for n in range(1000):
                call(n)
            gc.collect()
            tracemalloc.start()
            before, rss_before = tracemalloc.get_traced_memory()[0], rss_bytes()
            for n in range(calls):
                call(n)
            gc.collect()
            after, rss_after = tracemalloc.get_traced_memory()[0], rss_bytes()
            tracemalloc.stop()
        growth = after - before
        figures[label] = growth
        rows.append(
            [
                label,
                f"{calls:,}",
                f"{growth / 1024:,.1f} KiB",
                f"{(rss_after - rss_before) / 1024:,.0f} KiB",
                str(processor.tracked_calls),
                str(len(portkey_trace_ids)),
            ]
        )
    header = [
        "context",
        "calls",
        "tracemalloc growth",
        "RSS growth",
        "tracked calls after",
        "caller trace ids kept",
    ]
    return table("Memory over many calls (full hook path, real objects)", header, rows), figures


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
