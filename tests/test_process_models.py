"""The join in every process model apps run (issue 25, item 3; DESIGN.md, "Process models").

Each test runs the real thing as child processes on loopback, with the apps in
``tests/process_models/``: gunicorn's pre-fork sync workers (with and without ``--preload``) and
uvicorn's ``--workers 2`` under ``opentelemetry-instrument``, a ``ProcessPoolExecutor`` with each
start method, a bare ``os.fork()`` while other threads call the gateway, and an SDK provider set after
``PortkeyInstrumentor().instrument()``. Every call goes through a recording hop in front of the real
OSS gateway (``hop``, conftest.py), to the scripted model.

Only what a component itself said is asserted: the headers the gateway received (the hop's record),
what the gateway answered, and the spans and metric points the OTLP receivers stored. A call is
joined when the gateway received ``x-portkey-trace-id`` = the trace of the exported CLIENT span whose
id it received as ``x-portkey-parent-span-id``, that span records the gateway's answer
(``portkey.trace_id``, ``portkey.span_id``), and the span that made the call (the app's own) was
exported too, under the name the gateway received as ``x-portkey-span-name``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import pytest

from otel_portkey._cli.metrics_summary import OtlpMetricsReceiver, ReceivedPoint, merged
from otel_portkey.testing import ForwardedRequest, OtlpReceiver, ReceivedSpan, free_port

from instrumented import BIN, otel_env

pytestmark = pytest.mark.integration

APPS = Path(__file__).resolve().parent / "process_models"
SERVER, CLIENT = 2, 3  # OTLP span kinds
DURATION = "portkey.gateway.request.duration"


@pytest.fixture(scope="module")
def traces() -> Iterator[OtlpReceiver]:
    """One OTLP/HTTP trace receiver for the module; each test reads its own service's spans."""
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def metric_points() -> Iterator[OtlpMetricsReceiver]:
    with OtlpMetricsReceiver() as receiver:
        yield receiver


@pytest.fixture
def service() -> str:
    """This test's ``service.name``: its spans, points and call labels are told apart by it."""
    return f"process-models-{uuid.uuid4().hex[:10]}"


# The GenAI instrumentations import openai, portkey-ai and LangChain as opentelemetry-instrument
# starts (about 4 s of a process start here, each pool worker and server worker included); none
# of these apps uses them.
UNUSED_INSTRUMENTATIONS = "langchain,openai,portkey"


def app_env(traces: OtlpReceiver, hop, model, service: str, **extra: str) -> dict[str, str]:
    """An app's environment: OTLP to ``traces``, the gateway behind ``hop``, the scripted model."""
    return otel_env(
        traces.endpoint,
        OTEL_SERVICE_NAME=service,
        OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=UNUSED_INSTRUMENTATIONS,
        PORTKEY_GATEWAY_URL=f"{hop.url}/v1",
        MODEL_URL=model.base_url,
        **extra,
    )


def spans_of(traces: OtlpReceiver, service: str) -> list[ReceivedSpan]:
    return [s for s in traces.spans if s.resource.get("service.name") == service]


def received(hop, labels: list[str]) -> dict[str, ForwardedRequest]:
    """The gateway's record of each labelled call (each received exactly once)."""
    calls: dict[str, list[ForwardedRequest]] = {}
    for request in hop.requests:
        calls.setdefault(request.headers.get("x-test-label", ""), []).append(request)
    counts = {label: len(calls.get(label, [])) for label in labels}
    assert all(count == 1 for count in counts.values()), f"calls the gateway received, per label: {counts}"
    return {label: calls[label][0] for label in labels}


def whole_trace(by_id: dict[str, ReceivedSpan], span_id: str | None) -> bool:
    """Whether the span ``span_id`` and every span above it, up to its trace's root, were received."""
    seen: set[str] = set()
    while span_id and span_id in by_id and span_id not in seen:
        seen.add(span_id)
        span_id = by_id[span_id].parent_span_id
    return bool(seen) and not span_id


def assert_joined(
    traces: OtlpReceiver, hop, service: str, labels: list[str], caller: str, timeout: float
) -> list[ReceivedSpan]:
    """Every labelled call is joined (see the module docstring); the exported spans of ``service``.

    Waits up to ``timeout`` until each call's CLIENT span and every span above it, up to the root,
    were received (spans end, and are exported, child first; a child process that has already
    exited has sent all it ever will: a short ``timeout`` then)."""
    calls = received(hop, labels)
    parents = {label: call.headers.get("x-portkey-parent-span-id") for label, call in calls.items()}

    def complete(_: object) -> bool:
        by_id = {s.span_id: s for s in spans_of(traces, service)}
        return all(whole_trace(by_id, parent) for parent in parents.values())

    traces.wait_for(complete, timeout)
    spans = spans_of(traces, service)
    by_id = {s.span_id: s for s in spans}
    lost = sorted(label for label, parent in parents.items() if parent not in by_id)
    assert not lost, (
        f"the gateway received {len(labels)} calls, with trace ids "
        f"{sorted(c.headers.get('x-portkey-trace-id', '') for c in calls.values())}, but the receiver got "
        f"the spans of only {len(labels) - len(lost)} of them (lost: {lost}; the receiver holds "
        f"{len(spans)} spans of this run: {sorted({s.name for s in spans})})"
    )
    partial = sorted(label for label, parent in parents.items() if not whole_trace(by_id, parent))
    assert not partial, f"calls whose spans above the CLIENT span never arrived: {partial}"
    for label, call in calls.items():
        sent = call.headers
        trace_id = sent["x-portkey-trace-id"]
        http_span = by_id[sent["x-portkey-parent-span-id"]]
        assert http_span.kind == CLIENT, label
        assert http_span.trace_id == trace_id, f"{label}: the gateway got another trace id than the span's"
        assert call.response_headers.get("x-portkey-trace-id") == trace_id, f"{label}: the gateway echoed it"
        assert http_span.attributes.get("portkey.trace_id") == trace_id, label
        assert http_span.attributes.get("portkey.span_id") == sent["x-portkey-span-id"], label
        app_span = by_id[http_span.parent_span_id]
        assert (app_span.name, app_span.attributes.get("test.label")) == (caller, label)
        assert sent.get("x-portkey-span-name") == caller, (
            f"{label}: the gateway node is not named by its caller"
        )
    return spans


# Child processes: each in a process group of its own, which the test stops whole (a server's
# workers, a pool's workers and forkserver, forked children included), also when it fails.


@contextlib.contextmanager
def process_group(
    command: list[str], env: dict[str, str], stdout: IO[bytes], stderr: IO[bytes] | int = subprocess.STDOUT
) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen(
        command, env=env, cwd=APPS, stdout=stdout, stderr=stderr, start_new_session=True
    )
    try:
        yield process
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM the group's leader and the rest (a server's master stops its workers), then SIGKILL
    whatever of the group is left after ``grace`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def get(url: str, timeout: float = 30) -> tuple[int, dict[str, object]]:
    """GET with the standard library (no client instrumentation of this process in the way)."""
    parts = url.removeprefix("http://").split("/", 1)
    connection = http.client.HTTPConnection(parts[0], timeout=timeout)
    try:
        connection.request("GET", "/" + parts[1])
        response = connection.getresponse()
        answer = response.read()
        return response.status, json.loads(answer) if response.status == 200 else {"body": answer[:200]}
    finally:
        connection.close()


@contextlib.contextmanager
def serving(command: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    """Run a server until ``/ready`` answers (at most 60 s); its base URL. Stopped on leaving."""
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as output, process_group(command, env, output) as process:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"{command[1]} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                if get(f"{base}/ready", timeout=2)[0] == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"{command[1]} did not answer within 60 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        yield base


def call_until_every_worker_answered(base: str, service: str, workers: int) -> tuple[list[str], set[int]]:
    """Calls ``/call`` four at a time until ``workers`` different worker processes have answered
    (at most 30 s); the labels of every call made and the pids that answered."""
    labels: list[str] = []
    pids: set[int] = set()
    deadline = time.monotonic() + 30
    with ThreadPoolExecutor(4) as pool:
        while len(pids) < workers and time.monotonic() < deadline:
            batch = [f"{service}-call-{len(labels) + n}" for n in range(4)]
            labels += batch
            for status, answer in pool.map(lambda label: get(f"{base}/call?label={label}"), batch):
                assert status == 200, answer
                assert answer["status"] == 200, answer
                pids.add(int(str(answer["pid"])))
    assert len(pids) == workers, f"only workers {pids} answered in 30 s"
    return labels, pids


def assert_every_worker_exported(spans: list[ReceivedSpan], labels: list[str], pids: set[int]) -> None:
    """The app's spans of every call are exported, from each worker that answered; each trace is a
    request's own (rooted in a SERVER span)."""
    app_spans = [s for s in spans if s.name == "handle call" and s.attributes.get("test.label") in labels]
    assert {s.attributes["worker.pid"] for s in app_spans} == pids
    by_id = {s.span_id: s for s in spans}
    for span in app_spans:
        root = span
        while root.parent_span_id in by_id:
            root = by_id[root.parent_span_id]
        assert root.kind == SERVER, f"{span.attributes['test.label']}: the trace's root is {root}"
        assert not root.parent_span_id, f"{span.attributes['test.label']}: the trace's root is {root}"
    assert len({s.trace_id for s in app_spans}) == len(labels), "one trace per request"


@pytest.mark.parametrize("preload", [False, True], ids=["no-preload", "preload"])
def test_gunicorn_prefork_sync_workers(traces, hop, model, service, preload, tmp_path):
    port = free_port()
    command = [
        str(BIN / "opentelemetry-instrument"),
        str(BIN / "gunicorn"),
        "--workers=2",
        "--worker-class=sync",
        f"--bind=127.0.0.1:{port}",
        "--graceful-timeout=5",
        *(["--preload"] if preload else []),
        "wsgi_app:app",
    ]
    env = app_env(traces, hop, model, service)
    with serving(command, env, port, tmp_path / "gunicorn.log") as base:
        labels, pids = call_until_every_worker_answered(base, service, workers=2)
        spans = assert_joined(traces, hop, service, labels, "handle call", timeout=15)
    assert_every_worker_exported(spans, labels, pids)


def test_uvicorn_two_workers(traces, hop, model, service, tmp_path):
    port = free_port()
    command = [
        str(BIN / "opentelemetry-instrument"),
        str(BIN / "uvicorn"),
        "asgi_app:app",
        "--workers=2",
        "--host=127.0.0.1",
        f"--port={port}",
        f"--app-dir={APPS}",
        "--no-access-log",
    ]
    env = app_env(traces, hop, model, service)
    with serving(command, env, port, tmp_path / "uvicorn.log") as base:
        labels, pids = call_until_every_worker_answered(base, service, workers=2)
        spans = assert_joined(traces, hop, service, labels, "handle call", timeout=15)
    assert_every_worker_exported(spans, labels, pids)
    names = {s.name for s in spans}
    assert "GET /call" in names, f"FastAPI's own server spans were exported: {names}"


# Scripts that run to their end.


def run_app(script: str, arg: str, env: dict[str, str], logs: Path, instrumented: bool = True) -> dict:
    """Run an app to its end (at most 120 s), under ``opentelemetry-instrument`` unless told not to:
    the JSON it printed, and its stderr as ``"stderr"``."""
    command = [sys.executable, str(APPS / script), arg]
    if instrumented:
        command.insert(0, str(BIN / "opentelemetry-instrument"))
    out, err = logs / f"{script}.out", logs / f"{script}.err"
    with (
        out.open("wb") as stdout,
        err.open("wb") as stderr,
        process_group(command, env, stdout, stderr) as process,
    ):
        try:
            code = process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{script} {arg} did not finish within 120 s:\n{err.read_text()[-3000:]}")
    assert code == 0, f"{script} {arg} exited with {code}:\n{err.read_text()[-3000:]}"
    return {**json.loads(out.read_text()), "stderr": err.read_text()[-3000:]}


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_process_pool_workers_flush_their_spans_and_metrics(
    traces, metric_points, hop, model, service, method, tmp_path
):
    """Six jobs, each one gateway call in its own trace, in a pool's worker processes. The SDK's
    timers are set far beyond the run (a span batch every 60 s, metrics every 60 s), so only a flush
    as each worker exits can deliver what the workers recorded."""
    env = app_env(
        traces,
        hop,
        model,
        service,
        OTEL_BSP_SCHEDULE_DELAY="60000",
        OTEL_METRICS_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=metric_points.endpoint,
        OTEL_METRIC_EXPORT_INTERVAL="60000",
    )
    outcome = run_app("pool_app.py", method, env, tmp_path)
    jobs = outcome["jobs"]
    assert len(jobs) == 6
    assert all(job["status"] == 200 for job in jobs), outcome
    assert outcome["parent"] not in {job["pid"] for job in jobs}, "the jobs ran in the pool's workers"
    labels = [job["label"] for job in jobs]
    assert_joined(traces, hop, service, labels, "pool job", timeout=2)  # the app has exited

    def calls_counted(points: list[ReceivedPoint]) -> float:
        """The calls ``portkey.gateway.request.duration`` counted for this run (each series' total:
        a cumulative series may be exported more than once)."""
        ours = [p for p in points if p.metric == DURATION and p.resource.get("service.name") == service]
        return sum(p.value for p in merged(ours))

    counted = calls_counted(metric_points.wait_for(lambda points: calls_counted(points) >= 6, timeout=2))
    assert counted == 6, f"{DURATION} counted {counted:g} of the 6 calls the gateway received"


@pytest.mark.parametrize("exit_via", ["flush-then-os-exit", "interpreter-exit"])
def test_bare_fork_while_threads_call_the_gateway(traces, hop, model, service, exit_via, tmp_path):
    """Eight children forked while four threads call the gateway: none hangs, each one's call is
    joined. The parent exports nothing until it exits (one batch then): the SDK's OTLP/HTTP exporter
    keeps a keep-alive connection in a ``requests`` session that a forked child inherits, and a
    parent and a child (or two children) writing to that one socket at once garble both exports (the
    receiver then cannot decode the body and answers 404: the child's span is lost). That is the
    exporter's fork-safety, not the bridge's; this test is about the bridge."""
    env = app_env(
        traces,
        hop,
        model,
        service,
        OTEL_BSP_SCHEDULE_DELAY="60000",
        OTEL_BSP_MAX_QUEUE_SIZE="100000",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE="100000",
    )
    outcome = run_app("fork_app.py", exit_via, env, tmp_path)
    children = outcome["children"]
    assert len(children) == 8
    hung = [c["label"] for c in children if c["exit"] is None]
    assert not hung, f"{len(hung)} forked children hung (killed 20 s after the last fork): {hung}"
    assert [c["exit"] for c in children] == [0] * len(children), f"{children}\n{outcome['stderr']}"
    assert outcome["busy_calls"] >= 4 * len(children), "four threads called the gateway between the forks"
    assert_joined(traces, hop, service, [c["label"] for c in children], "forked child call", timeout=2)


@pytest.mark.parametrize("order", ["after", "before"])
def test_tracer_provider_set_after_instrument(traces, hop, model, service, order, tmp_path):
    """``after``: the gunicorn ``post_fork`` pattern; ``before``: the same app, the provider first."""
    env = app_env(traces, hop, model, service)
    outcome = run_app("late_provider_app.py", order, env, tmp_path, instrumented=False)
    assert outcome["status"] == 200
    label = outcome["label"]
    call = received(hop, [label])[label]
    wanted = {"_user": "late-user", "session": "post-fork"}
    sent = json.loads(call.headers.get("x-portkey-metadata", "{}"))
    assert {k: sent.get(k) for k in wanted} == wanted, f"x-portkey-metadata: {sent}"
    assert call.headers.get("x-portkey-span-name") == "chat gpt-4o", (
        f"the gateway node is named {call.headers.get('x-portkey-span-name')!r}, not after the calling span"
    )
    spans = assert_joined(traces, hop, service, [label], "chat gpt-4o", timeout=2)
    by_id = {s.span_id: s for s in spans}
    http_span = by_id[call.headers["x-portkey-parent-span-id"]]
    for span in (by_id[http_span.parent_span_id], http_span):  # the calling span, and the call's
        metadata = {k: v for k, v in span.attributes.items() if k.startswith("portkey.metadata.")}
        assert {k: metadata.get(f"portkey.metadata.{k}") for k in wanted} == wanted, (
            f"{span.name!r} carries not the metadata of portkey_metadata(...): {metadata}"
        )
