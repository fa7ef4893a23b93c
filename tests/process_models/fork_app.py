"""A bare ``os.fork()`` taken while other threads are making gateway calls, run as
``opentelemetry-instrument python fork_app.py flush-then-os-exit|interpreter-exit``.

Four threads call the gateway in a loop (each call in a span ``busy thread call``, each thread
with its own httpx client); once each has made a call, the main thread forks eight children while
they go on, each fork after the threads have made another call. Each child makes one call of its
own inside ``forked child call``, through a client of its own (an httpx client's connection pool is
not the bridge's to make fork-safe), and exits. The parent waits for the children at most
``CHILD_DEADLINE`` seconds after the last fork: a child still running then hangs (on a lock a parent
thread held at the fork) and is killed.

What the child does before it exits is what an app does, and which one depends on how it leaves:

- ``flush-then-os-exit``: Python's own idiom for a forked child, ``os._exit()``, runs no ``atexit``
  handler, so no library can flush for it: the app flushes its provider itself
  (``trace.get_tracer_provider().force_flush()``) before ``os._exit(0)``.
- ``interpreter-exit``: the child leaves through ``sys.exit()``, a normal interpreter exit: the SDK's
  own ``atexit`` handler (inherited from the parent) shuts the provider down, which flushes it.

Prints ``{"children": [{"label", "pid", "exit"}], "busy_calls": n}``; ``exit`` is the child's exit
code, or null for a child that hung and was killed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback

import httpx
from gateway_call import chat
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

THREADS = 4
FORKS = 8
CHILD_DEADLINE = 20.0

tracer = trace.get_tracer("process_models.fork_app")
SERVICE = os.environ["OTEL_SERVICE_NAME"]


def busy(index: int, stop: threading.Event, calls: list[int]) -> None:
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            label = f"{SERVICE}-busy-{index}-{calls[index]}"
            with tracer.start_as_current_span("busy thread call", attributes={"test.label": label}):
                chat(client, label)
            calls[index] += 1


def child(label: str, exit_via: str) -> None:
    """The forked child's whole life: one call, then out (it never returns into the parent's code)."""
    with (
        tracer.start_as_current_span("forked child call", attributes={"test.label": label}),
        httpx.Client(timeout=30) as client,
    ):
        status = chat(client, label)
    code = 0 if status == 200 else 3
    if exit_via == "flush-then-os-exit":
        provider = trace.get_tracer_provider()  # the SDK's, which opentelemetry-instrument set
        flushed = isinstance(provider, TracerProvider) and provider.force_flush(5000)
        os._exit(code if flushed else 4)
    sys.exit(code)


def wait_for_children(pids: list[int]) -> dict[int, int | None]:
    """Each child's exit code, or None for one that did not exit within the deadline (it is killed)."""
    exits: dict[int, int | None] = {}
    deadline = time.monotonic() + CHILD_DEADLINE
    while len(exits) < len(pids) and time.monotonic() < deadline:
        for pid in pids:
            if pid not in exits:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    exits[pid] = os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    for pid in pids:
        if pid not in exits:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            exits[pid] = None
    return exits


def calls_made(calls: list[int], after: int) -> None:
    """Wait (at most 30 s) until every busy thread has made more than ``after`` calls."""
    deadline = time.monotonic() + 30
    while min(calls) <= after and time.monotonic() < deadline:
        time.sleep(0.005)


def main(exit_via: str) -> None:
    stop = threading.Event()
    calls = [0] * THREADS
    threads = [
        threading.Thread(target=busy, args=(n, stop, calls), name=f"busy-{n}", daemon=True)
        for n in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    children: dict[int, str] = {}
    for n in range(FORKS):
        calls_made(calls, after=n)  # the threads are calling: one more call each since the last fork
        label = f"{SERVICE}-child-{n}"
        pid = os.fork()
        if pid == 0:
            try:
                child(label, exit_via)  # leaves through os._exit or sys.exit, never back here
            except Exception:
                traceback.print_exc()
                os._exit(5)
        children[pid] = label
    exits = wait_for_children(list(children))
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    report = [{"label": label, "pid": pid, "exit": exits[pid]} for pid, label in children.items()]
    print(json.dumps({"children": report, "busy_calls": sum(calls)}))


if __name__ == "__main__":
    main(sys.argv[1])
