"""The bridge's two hooks alone, driven directly with real httpx2 requests and SDK spans.

For comparing versions of otel-portkey in one sitting (the hooks' API has not changed since the
first version), e.g. before and after the hot-path work::

    git worktree add /tmp/before 1b26ac2^
    PYTHONPATH=/tmp/before/src python benchmarks/hooks_only.py
    PYTHONPATH=src python benchmarks/hooks_only.py
"""

from __future__ import annotations

import gc
import statistics
import time
from typing import Any

import httpx2
from bench_offline import ANSWER_HEADERS, GATEWAY, URL
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import RequestInfo, ResponseInfo
from opentelemetry.sdk.trace import TracerProvider

import otel_portkey
from otel_portkey.config import PortkeySettings

CALLS = 20_000


class _direct_hooks:
    def __init__(self, settings: PortkeySettings) -> None:
        from otel_portkey._otel.bridge import Bridge
        from otel_portkey._otel.client_hooks import httpx_hooks

        bridge = Bridge(settings)
        hooks = httpx_hooks(lambda: bridge)
        self.request_hook, self.response_hook = hooks["request_hook"], hooks["response_hook"]


ANSWER = httpx2.Headers([*ANSWER_HEADERS, (b"x-portkey-trace-id", b"a" * 32)])


def per_call_us(hooks: Any, tracer: trace.Tracer, parent: Any) -> float:
    """CPU microseconds of request hook + response hook, per call."""
    calls = []
    for _ in range(CALLS):
        span = tracer.start_span("POST", context=parent)
        request = httpx2.Request(
            "POST", URL, headers={"x-portkey-provider": "openai", "authorization": "Bearer sk"}
        )
        calls.append((span, RequestInfo(request.method, request.url, request.headers, None, {})))
    response = ResponseInfo(200, ANSWER, None, {})
    gc.collect()
    gc.disable()
    try:
        start = time.thread_time()
        for span, request_info in calls:
            hooks.request_hook(span, request_info)
            hooks.response_hook(span, request_info, response)
        return (time.thread_time() - start) / CALLS * 1e6
    finally:
        gc.enable()


def main() -> None:
    trace.set_tracer_provider(TracerProvider())
    tracer = trace.get_tracer("bench")
    hooks = _direct_hooks(PortkeySettings.from_env(gateway_urls=[GATEWAY]))
    parent = trace.set_span_in_context(tracer.start_span("chat gpt-4o"))
    median = statistics.median(per_call_us(hooks, tracer, parent) for _ in range(7))
    print(f"{otel_portkey.__file__}: {median:.1f} µs per call (request + response hook)")


if __name__ == "__main__":
    main()
