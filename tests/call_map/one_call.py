"""One Portkey-bound httpx call under ``opentelemetry-instrument``, profiled: prints, as JSON, every
call the profiler saw into a module of ``otel_portkey`` (the calling module, or None for a call from
outside the package, the module called, the function) on the first call and on a second, warm one.

    opentelemetry-instrument python tests/call_map/one_call.py URL
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from opentelemetry import trace

import otel_portkey

PACKAGE = str(Path(otel_portkey.__file__).resolve().parent) + "/"


def module_of(frame: FrameType | None) -> str | None:
    if frame is None:
        return None
    filename = frame.f_code.co_filename
    if not filename.startswith(PACKAGE):
        return None
    return filename[len(PACKAGE) :].removesuffix(".py")


def profile(url: str) -> list[tuple[str | None, str, str]]:
    seen: list[tuple[str | None, str, str]] = []

    def on_event(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            called = module_of(frame)
            if called is not None:
                seen.append((module_of(frame.f_back), called, frame.f_code.co_name))

    tracer = trace.get_tracer("call-map")
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    sys.setprofile(on_event)
    try:
        with tracer.start_as_current_span("chat gpt-4o"):
            httpx.post(url, json=body).raise_for_status()
    finally:
        sys.setprofile(None)
    return seen


if __name__ == "__main__":
    target = sys.argv[1]
    result = {"first": profile(target), "warm": profile(target)}
    sys.stdout.write(json.dumps(result) + "\n")  # first line: the console metrics exporter writes after
