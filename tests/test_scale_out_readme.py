"""The scale-out README's "How to run it" block (examples/scale-out/README.md), run as a newcomer runs
it: pasted into one bash, paragraph by paragraph, as written, from the root of a clone with its
virtualenv, in an empty HOME. It starts Jaeger, two tail samplers, the load balancer and
``otel-portkey gateway`` in the background, runs the seed agent three times through the gateway into
the tier, shows what the samplers kept, and stops everything it started.

Two lines are played instead of run: ``make components``, by the binaries the test machine built
before pytest started (``bash components/build.sh --check`` in its place: a cold build takes minutes,
and ``make components`` would also reinstall the shared virtualenv), and the ``STATE=`` line, which
points into the test's temporary directory. The block's ports are fixed: they are checked free first,
and the test skips (fails under ``OTEL_PORTKEY_REQUIRE_REAL=1``) when one is taken.

What is asserted comes from the components themselves: Jaeger's query API holds the three runs whole
(the same spans in each, as many as the load balancer and the samplers say they accepted), the
samplers' own metrics count three traces kept (as the block printed them), ``otel-portkey trace``
printed one of those traces, and after the block's ``kill`` line no process it started is alive, none
of its ports is listening and ``$STATE`` is gone.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from otel_portkey._peers.oss_gateway import installed_gateway
from test_readme import Newcomer, alive, descendants, listening

from components import ROOT, Jaeger, Metrics, attribute, collector_metrics, span_id
from conftest import skip_or_fail
from scale_out import jaeger_trace_ids, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

README = ROOT / "examples" / "scale-out" / "README.md"
SECTION = "## How to run it"
SERVICE = "seed-agent"  # the block's OTEL_SERVICE_NAME
RUNS = 3  # the block's `for run in 1 2 3`
# examples/langchain_agent.py under opentelemetry-instrument: seed agent run, invoke_agent, 4 chat + 4 POST,
# 3 execute_tool (tests/scale_out_app.py, with no invoke_agent, makes 12)
SPANS_PER_RUN = 13
JAEGER_QUERY_PORT = 16686
JAEGER_DEFAULT_PORTS = {16685}  # examples/jaeger-config.yaml's query gRPC port, which the block leaves as is
SAMPLER_TELEMETRY_PORTS = (18888, 28888)
LOADBALANCER_TELEMETRY_PORT = 8888
PASTE_TIMEOUT = 300.0  # one paragraph; the readiness loops give up after 60 s each


def how_to_run_it(text: str) -> str:
    """The section's one bash block."""
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end != -1 else len(text)]
    blocks = re.findall(r"^```bash\n(.*?)^```", section, flags=re.DOTALL | re.MULTILINE)
    assert len(blocks) == 1, f"{SECTION}: one bash block, not {len(blocks)}"
    return blocks[0]


def paragraphs(block: str) -> list[str]:
    """The block's paragraphs (separated by blank lines), each a whole command or several."""
    return [part.strip("\n") for part in re.split(r"\n\s*\n", block) if part.strip()]


def played(paragraph: str, state: Path) -> str:
    """A paragraph with the two lines the test plays instead of running them."""
    paragraph = re.sub(
        r"^make components\b.*$",
        "bash components/build.sh --check >/dev/null  # played: make components",
        paragraph,
        flags=re.MULTILINE,
    )
    return re.sub(r"^STATE=\S+", f"STATE={state}", paragraph, flags=re.MULTILINE)


def fixed_ports(block: str) -> set[int]:
    """Every port the block serves on: ``127.0.0.1:N`` and ``*_PORT=N`` (``${n}N`` for each sampler
    of its ``for n in 1 2`` loop), ``--port N``, and Jaeger's defaults it leaves alone."""
    samplers = re.search(r"^for n in ([\d ]+); do", block, flags=re.MULTILINE)
    assert samplers, "the samplers' loop"
    numbers = samplers[1].split()
    ports = set(JAEGER_DEFAULT_PORTS)
    for per_sampler, digits in re.findall(r"(?:127\.0\.0\.1:|_PORT=)(\$\{n\})?(\d+)\b", block):
        ports |= {int(n + digits) for n in numbers} if per_sampler else {int(digits)}
    ports |= {int(port) for port in re.findall(r"--port (\d+)", block)}
    return ports


@dataclass
class Pasted:
    paragraph: str
    status: int
    stdout: str
    stderr: str
    seconds: float

    def summary(self) -> str:
        first = next(line for line in self.paragraph.splitlines() if line.strip())
        return f"{self.seconds:6.1f} s  status {self.status}  {first[:90]}"


class Shell:
    """One bash, fed paragraph by paragraph on its stdin as a newcomer pastes them; a new session,
    so that everything it starts is in one process group the test can always end."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            ["bash"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self._stdout: queue.Queue[str] = queue.Queue()
        self._stderr: list[str] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._pump, args=(self.process.stdout, self._stdout.put), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.process.stderr, self._keep), daemon=True).start()
        self.transcript: list[Pasted] = []

    @staticmethod
    def _pump(stream, put) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            put(line)

    def _keep(self, line: str) -> None:
        with self._lock:
            self._stderr.append(line)

    def paste(self, paragraph: str, timeout: float = PASTE_TIMEOUT) -> Pasted:
        """Run one paragraph; returns what it printed and the status of its last command."""
        marker = f"@@pasted-{uuid.uuid4().hex}@@"
        with self._lock:
            errors_before = len(self._stderr)
        started = time.monotonic()
        assert self.process.stdin is not None
        self.process.stdin.write(f"{paragraph}\necho {marker} $?\n")
        self.process.stdin.flush()
        lines: list[str] = []
        deadline = started + timeout
        while True:
            try:
                line = self._stdout.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no end after {timeout} s of:\n{paragraph}\n{''.join(lines)}{self.stderr()[-3000:]}"
                ) from None
            if line.startswith(marker):
                break
            lines.append(line)
        seconds = time.monotonic() - started
        time.sleep(0.2)  # the paragraph's last stderr lines
        with self._lock:
            errors = "".join(self._stderr[errors_before:])
        pasted = Pasted(paragraph, int(line.split()[1]), "".join(lines), errors, seconds)
        self.transcript.append(pasted)
        return pasted

    def stderr(self) -> str:
        with self._lock:
            return "".join(self._stderr)

    def end(self, started: set[int]) -> None:
        """Close the shell; whatever it started and left running is killed (SIGKILL, process group)."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        for pid in started | descendants(self.process.pid):
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def report(self) -> str:
        """Each paragraph: its time, its status, its first line, and what it printed."""
        return "\n".join(
            pasted.summary()
            + "".join(f"\n    {line}" for line in (pasted.stdout + pasted.stderr).splitlines())
            for pasted in self.transcript
        )


class BlockJaeger(Jaeger):
    """The Jaeger the block started, read through the fixtures' own API calls (nothing started here)."""

    def __init__(self, query_port: int) -> None:
        self.ports = {"QUERY_HTTP": query_port}


def test_the_scale_out_block_runs_as_written(go_binaries, tmp_path):
    if not installed_gateway().exists():
        skip_or_fail(
            f"the OSS Portkey gateway is not installed ({installed_gateway()}): run 'make components'"
        )
    block = how_to_run_it(README.read_text())
    ports = fixed_ports(block)
    assert {4317, 4318, 8787, JAEGER_QUERY_PORT, *SAMPLER_TELEMETRY_PORTS} <= ports, sorted(ports)
    busy = sorted(port for port in ports if listening(port))
    if busy:
        skip_or_fail(f"the scale-out README's fixed ports {busy} are taken on this machine")

    state = tmp_path / "state"
    newcomer = Newcomer(tmp_path)  # an empty HOME beside the machine's caches, no virtualenv active
    parts = [played(part, state) for part in paragraphs(block)]
    assert sum("build.sh --check >/dev/null  # played" in part for part in parts) == 1, "make components"
    assert sum(f"STATE={state}" in part for part in parts) == 1, "the STATE line"
    stop = next(i for i, part in enumerate(parts) if part.startswith("# stop everything"))
    assert stop == len(parts) - 1, "stopping is the block's last paragraph"

    shell = Shell(newcomer.cwd / "otel-portkey", newcomer.env)
    started: set[int] = set()
    try:
        ran = [shell.paste(part) for part in parts[:stop]]
        look = next(p for p in ran if "otel-portkey trace" in p.paragraph)  # its status: at the end
        counts = next(p for p in ran if "/metrics" in p.paragraph)  # the samplers' own counts
        assert ran.index(look) < ran.index(counts), "the counts are read once the trace is whole"
        for pasted in ran:
            if pasted is not look:
                assert pasted.status == 0, f"{pasted.paragraph}\n{pasted.stdout}\n{pasted.stderr}"
        app = next(p for p in ran if "opentelemetry-instrument" in p.paragraph)
        assert app.stdout.count("The result is 76,527,504.") == RUNS, app.stdout + app.stderr
        assert not re.search(r"error|warn|fail|traceback", app.stderr, re.I), app.stderr

        pids = {int(pid) for pid in (state / "pids").read_text().split()}
        started = descendants(shell.process.pid)
        assert len(pids) == 5, "Jaeger, two samplers, the load balancer, the gateway"
        assert pids <= started
        gateway_log = (state / "gateway.log").read_text()
        model_port = int(re.findall(r"x-portkey-custom-host: http://127\.0\.0\.1:(\d+)", gateway_log)[0])

        # sampler-without-portkey.yaml: the samplers queue for Jaeger only, nothing for Portkey
        assert sorted(path.name for path in state.glob("sampler-*/exporter_*")) == 2 * [
            "exporter_otlp_grpc_jaeger_traces"
        ]
        spans = assert_jaeger_holds_every_run_whole()
        assert_samplers_kept_every_span(counts.stdout, spans)

        stopped = shell.paste(parts[stop], timeout=120)
        assert stopped.status == 0, stopped.stderr
        left = [pid for pid in started if alive(pid)]
        assert left == [], f"still running after the stop line: {left}"
        listening_ports = sorted(port for port in (*ports, model_port) if listening(port))
        assert listening_ports == [], f"still listening after the stop line: {listening_ports}"
        assert not state.exists(), "rm -rf $STATE"

        # last: the line that prints the trace (otel-portkey trace), shown a whole run of the agent
        assert look.status == 0, f"otel-portkey trace failed:\n{look.stderr}"
        assert "seed agent run" in look.stdout, f"otel-portkey trace printed no trace:\n{look.stderr}"
        assert any(trace_id in look.stdout for trace_id in spans), look.stdout
    finally:
        shell.end(started)
        print(f"\n{shell.report()}")


def assert_jaeger_holds_every_run_whole() -> dict[str, list[dict]]:
    """Jaeger's API holds the three runs, each whole: one root ``seed agent run``, ``invoke_agent``,
    four model turns with their gateway calls (each carrying the trace's id back from the gateway),
    three tool calls, each span stored once, the same in each run."""
    jaeger = BlockJaeger(JAEGER_QUERY_PORT)
    wait_until(lambda: len(jaeger_trace_ids(jaeger, SERVICE)) >= RUNS, timeout=30)
    trace_ids = jaeger_trace_ids(jaeger, SERVICE)
    assert len(trace_ids) == RUNS, trace_ids
    stored = {trace_id: jaeger.trace(trace_id, spans=SPANS_PER_RUN) for trace_id in trace_ids}
    shapes = set()
    for trace_id, spans in stored.items():
        ids = [span_id(span) for span in spans]
        assert len(ids) == len(set(ids)), f"{trace_id}: a span stored twice"
        names = Counter(span["name"] for span in spans)
        assert names["seed agent run"] == 1, names
        assert names["invoke_agent"] == 1, names
        assert names["chat gpt-4o"] == 4, names
        assert sum(n for name, n in names.items() if name.startswith("execute_tool ")) == 3, names
        assert len(spans) == SPANS_PER_RUN, names
        posts = [span for span in spans if span["name"] == "POST"]
        assert len(posts) == 4, names
        assert all(attribute(post, "portkey.trace_id") == trace_id for post in posts)
        shapes.add(tuple(sorted(names.items())))
    assert len(shapes) == 1, f"the runs differ: {shapes}"
    return stored


def assert_samplers_kept_every_span(printed: str, spans: dict[str, list[dict]]) -> None:
    """The samplers, by their own metrics, kept the three traces and accepted every span the load
    balancer accepted, which is every span Jaeger holds; the block printed the same counts."""
    in_jaeger = sum(len(trace) for trace in spans.values())
    samplers = [collector_metrics(port) for port in SAMPLER_TELEMETRY_PORTS]
    balancer = collector_metrics(LOADBALANCER_TELEMETRY_PORT)
    assert balancer.total("otelcol_receiver_accepted_spans") == in_jaeger
    assert sum(m.total("otelcol_receiver_accepted_spans") for m in samplers) == in_jaeger
    kept = "otelcol_processor_tail_sampling_global_count_traces_sampled"
    assert sum(m.total(kept, decision="sampled") for m in samplers) == RUNS
    assert sum(m.total(kept, decision="not_sampled") for m in samplers) == 0
    # what the block printed: each sampler's lines, and together the same three traces
    assert all(f"sampler {n}:" in printed for n in (1, 2)), printed
    lines = Metrics.parse("\n".join(line for line in printed.splitlines() if line.startswith("otelcol_")))
    assert lines.total(kept, decision="sampled") == RUNS, printed
    assert lines.total("otelcol_receiver_accepted_spans") == in_jaeger, printed
