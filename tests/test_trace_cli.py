"""``otel-portkey trace``: a trace stored in Jaeger, printed as the demo's tree.

The integration tests put a known trace into the real Jaeger v2 (with the SDK's own OTLP/HTTP
exporter, or by running the demo with ``--otlp-endpoint``), then run the command as a user does
and hold what it printed against what Jaeger itself answers (its api_v3, read here directly), never
against what the test wrote. The unit tests cover the pure parts: reading OTLP-JSON spans (checked
against the protobuf decoder the demo's receiver uses, on the same export), the trace id, the plain
tree, and the sentences for a Jaeger that is not there or not Jaeger.
"""

import base64
import dataclasses
import io
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry import trace as otel_trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rich.console import Console

from otel_portkey import _cli
from otel_portkey._cli import span_tree
from otel_portkey._cli.trace import (
    JaegerQuery,
    TraceError,
    network_cause,
    normalized_trace_id,
    spans_from_otlp_json,
    trace_command,
    trace_tree,
)
from otel_portkey._peers.loopback import LoopbackHandler, LoopbackServer, LoopbackService
from otel_portkey._peers.otlp_receiver import decode_spans
from otel_portkey.testing import free_port

from components import attribute, span_id

CLI = str(Path(sys.executable).with_name("otel-portkey"))
NODE_ID = "a1b2c3d4e5f60708"  # the x-portkey-span-id "sent" for the gateway's node


def cli(*args, env=None, timeout=120):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PORTKEY_"))}
    full_env.update(env or {})
    return subprocess.run(
        [CLI, *args], env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )


def query_url(jaeger):
    return f"http://127.0.0.1:{jaeger.ports['QUERY_HTTP']}"


def providers(exporter, app_service, gateway_service="portkey-gateway"):
    """An app's and a traced gateway's tracer providers (two resources), both exporting to ``exporter``."""
    made = []
    for name in (app_service, gateway_service):
        provider = TracerProvider(resource=Resource.create({"service.name": name}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        made.append(provider)
    return made


def record_call_trace(app, gateway, start_ns=None):
    """One agent run with one gateway call, shaped as the demo's: the app's ``POST`` carries what
    the bridge records of Portkey, the gateway's SERVER node (a child of the POST) carries the
    ``portkey.span_id`` it received, and under it two upstream attempts (429, then 200)."""
    app_tracer, gateway_tracer = app.get_tracer("test.app"), gateway.get_tracer("test.gateway")
    start = start_ns or time.time_ns()
    with app_tracer.start_as_current_span("seed agent run", start_time=start) as root:
        with (
            app_tracer.start_as_current_span("chat gpt-4o"),
            app_tracer.start_as_current_span("POST", kind=otel_trace.SpanKind.CLIENT) as post,
        ):
            trace_id = format(root.get_span_context().trace_id, "032x")
            post.set_attributes(
                {
                    "portkey.trace_id": trace_id,
                    "portkey.span_id": NODE_ID,
                    "portkey.cache.status": "MISS",
                    "portkey.retry.attempt_count": 1,
                    "portkey.provider": "openai",
                    "http.response.header.x_portkey_trace_id": [trace_id],
                }
            )
            with gateway_tracer.start_as_current_span(
                "POST",
                kind=otel_trace.SpanKind.SERVER,
                attributes={"portkey.span_id": NODE_ID, "http.response.status_code": 200},
            ):
                for port, status in ((5001, 429), (5002, 200)):
                    with gateway_tracer.start_as_current_span(
                        "POST",
                        kind=otel_trace.SpanKind.CLIENT,
                        attributes={
                            "server.address": "127.0.0.1",
                            "server.port": port,
                            "http.response.status_code": status,
                        },
                    ):
                        pass
        with app_tracer.start_as_current_span("execute_tool multiply"):
            pass
    return trace_id


def export_call_trace(jaeger, service, start_ns=None):
    """Record one call trace of ``service`` with the SDK's OTLP/HTTP exporter into Jaeger."""
    exporter = OTLPSpanExporter(endpoint=f"{jaeger.otlp_http}/v1/traces")
    app, gateway = providers(exporter, service)
    trace_id = record_call_trace(app, gateway, start_ns)
    for provider in (app, gateway):
        provider.shutdown()
    return trace_id


def depth(line):
    """How deep a tree line sits: the guides before its text, four characters a level."""
    return len(re.match(r"^[│├└─ ]*", line).group()) // 4


def line_with(lines, text):
    (found,) = [line for line in lines if text in line]
    return found


# ---- against the real Jaeger ---------------------------------------------------------------------


@pytest.mark.integration
def test_a_trace_is_printed_as_jaeger_stored_it(jaeger):
    service = f"trace-cli-{uuid.uuid4().hex[:8]}"
    trace_id = export_call_trace(jaeger, service)
    stored = jaeger.trace(trace_id, spans=7)  # Jaeger's own answer, read directly
    assert len(stored) == 7
    run = cli("trace", trace_id, "--jaeger", query_url(jaeger))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith(f"OTel trace {trace_id}  from Jaeger at {query_url(jaeger)}: 7 spans")
    by_name = {}
    for span in stored:
        duration = (int(span["endTimeUnixNano"]) - int(span["startTimeUnixNano"])) / 1e6
        line = line_with(lines, f"{duration:.1f} ms  span {span_id(span)}")
        by_name.setdefault(span["name"], []).append((span, line))
    ((root, root_line),) = by_name["seed agent run"]
    ((chat, chat_line),) = by_name["chat gpt-4o"]
    post, server, first, second = sorted(by_name["POST"], key=lambda s: int(s[0]["startTimeUnixNano"]))
    post_span, post_line = post
    # What Jaeger stored of the call, as the tree shows it under the POST.
    call_line = line_with(lines, "gateway call 1  ")
    assert call_line.endswith(
        f"gateway call 1  trace {attribute(post_span, 'portkey.trace_id')}  "
        f"span {attribute(post_span, 'portkey.span_id')}  "
        f"cache {attribute(post_span, 'portkey.cache.status')}  "
        f"retries {attribute(post_span, 'portkey.retry.attempt_count')}  "
        f"provider {attribute(post_span, 'portkey.provider')}  echoed by the gateway"
    )
    assert (
        server[1]
        .split("└── ")[-1]
        .startswith(
            f"portkey-gateway server POST  http {attribute(server[0], 'http.response.status_code')}  "
            f"portkey.span_id {attribute(server[0], 'portkey.span_id')}  (as sent)"
        )
    )
    for position, (attempt, line) in enumerate((first, second), 1):
        assert (
            f"portkey-gateway attempt {position} POST {attribute(attempt, 'server.address')}:"
            f"{attribute(attempt, 'server.port')}  http {attribute(attempt, 'http.response.status_code')}"
        ) in line
    assert "http 429" in first[1]  # Jaeger stored the failed attempt first: it started first
    # The tree is the parent links Jaeger stored, each level in start order.
    assert span_id(chat, "parentSpanId") == span_id(root)
    assert span_id(post_span, "parentSpanId") == span_id(chat)
    ordered = [root_line, chat_line, post_line, call_line, server[1], first[1], second[1]]
    assert [lines.index(line) for line in ordered] == sorted(lines.index(line) for line in ordered)
    assert [depth(line) for line in ordered] == [1, 2, 3, 4, 4, 5, 5]


@pytest.mark.integration
def test_json_holds_the_spans_jaeger_stored(jaeger):
    service = f"trace-cli-{uuid.uuid4().hex[:8]}"
    trace_id = export_call_trace(jaeger, service)
    stored = jaeger.trace(trace_id, spans=7)
    run = cli("trace", f"0x{trace_id.upper()}", "--jaeger", query_url(jaeger), "--json")
    assert run.returncode == 0, run.stderr
    printed = json.loads(run.stdout)
    assert printed["trace_id"] == trace_id
    assert printed["services"] == sorted([service, "portkey-gateway"])
    kinds = {2: "server", 3: "client", 1: "internal"}
    assert sorted(
        (s["span_id"], s["parent_span_id"], s["name"], s["kind"]) for s in printed["spans"]
    ) == sorted((span_id(s), span_id(s, "parentSpanId"), s["name"], kinds[s["kind"]]) for s in stored)
    for span in stored:
        (shown,) = [s for s in printed["spans"] if s["span_id"] == span_id(span)]
        assert shown["start_unix_nano"] == int(span["startTimeUnixNano"])
        for key, value in shown["attributes"].items():
            stored_value = attribute(span, key)
            if stored_value is None:  # an array (the captured echo): Jaeger's arrayValue
                (item,) = [a for a in span["attributes"] if a["key"] == key]
                stored_value = [v["stringValue"] for v in item["value"]["arrayValue"]["values"]]
            assert value == stored_value, key
    assert [s["from_gateway"] for s in printed["spans"]].count(True) == 3


@pytest.mark.integration
def test_service_prints_the_trace_that_started_last(jaeger):
    """The trace stored last is not the one that started last: ``--service`` shows the latter."""
    service = f"trace-cli-{uuid.uuid4().hex[:8]}"
    now = time.time_ns()
    newest = export_call_trace(jaeger, service, start_ns=now)
    older = export_call_trace(jaeger, service, start_ns=now - 60 * 10**9)  # stored after, started before
    jaeger.trace(older, spans=7)
    found = jaeger.search(service)
    assert sorted(found) == sorted([newest, older]), "Jaeger holds both"
    run = cli("trace", "--service", service, "--jaeger", query_url(jaeger))
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"OTel trace {newest}  ")


@pytest.mark.integration
def test_unknown_trace_and_service_are_one_sentence(jaeger):
    url = query_url(jaeger)
    unknown = uuid.uuid4().hex
    run = cli("trace", unknown, "--jaeger", url)
    assert run.returncode == 1
    assert run.stdout == ""
    assert run.stderr == (
        f"otel-portkey trace: no trace {unknown} in Jaeger at {url} yet: spans reach Jaeger a few "
        "seconds after the app exits (the SDK batches them, a Collector batches again); try again\n"
    )
    service = f"trace-cli-{uuid.uuid4().hex[:8]}"
    export_call_trace(jaeger, service)
    jaeger.search(service)
    with urllib.request.urlopen(f"{url}/api/v3/services", timeout=10) as answer:
        known = sorted(json.load(answer)["services"])  # what Jaeger says it has
    run = cli("trace", "--service", "no-such-service", "--jaeger", url)
    assert run.returncode == 1
    assert run.stderr == (
        f"otel-portkey trace: no trace of service 'no-such-service' in Jaeger at {url} in the last 24 "
        f"hours (it has {', '.join(known)}): the app's OTEL_SERVICE_NAME names the service\n"
    )
    assert service in known


@pytest.mark.integration
def test_wait_asks_again_until_the_trace_is_stored(jaeger):
    """``--wait``: a trace exported while the command waits is printed whole; an unknown one gives
    the same sentence once the wait is over, not before."""
    url = query_url(jaeger)
    service = f"trace-wait-{uuid.uuid4().hex[:8]}"
    assert cli("trace", "--service", service, "--jaeger", url).returncode == 1  # not there yet
    code, out, err, trace_id = store_while_waiting(jaeger, service, wait=30)
    assert code == 0, err
    stored = jaeger.trace(trace_id, spans=7)  # Jaeger's own answer: every span of the trace
    assert out.splitlines()[0].startswith(f"OTel trace {trace_id}")
    for span in stored:
        assert span_id(span) in out, (span["name"], out)

    unknown = uuid.uuid4().hex
    started = time.monotonic()
    run = cli("trace", unknown, "--jaeger", url, "--wait", "2")
    assert time.monotonic() - started >= 1.5
    assert run.returncode == 1
    assert f"no trace {unknown} in Jaeger at {url} yet" in run.stderr
    run = cli("trace", unknown, "--wait", "soon")
    assert run.returncode == 2
    assert "'soon' is not a number of seconds from 0 to 3600" in run.stderr


@pytest.mark.integration
def test_jaegers_otlp_port_is_not_its_query_api(jaeger):
    run = cli("trace", uuid.uuid4().hex, "--jaeger", jaeger.otlp_http)
    assert run.returncode == 1
    assert (
        "not with Jaeger's query API: point --jaeger at Jaeger's query port (16686 by default" in run.stderr
    )


@pytest.mark.integration
def test_an_unreachable_jaeger_and_a_bad_id_are_one_sentence():
    url = f"http://127.0.0.1:{free_port()}"
    run = cli("trace", uuid.uuid4().hex, "--jaeger", url)
    assert run.returncode == 1
    assert run.stderr == (
        f"otel-portkey trace: Jaeger at {url} is not reachable (connection refused): is it running? "
        "Start it, or point --jaeger (or OTEL_PORTKEY_JAEGER_UI_URL) at its query port (16686 by default)\n"
    )
    # The default Jaeger comes from OTEL_PORTKEY_JAEGER_UI_URL.
    run = cli("trace", uuid.uuid4().hex, env={"OTEL_PORTKEY_JAEGER_UI_URL": url})
    assert run.returncode == 1
    assert f"Jaeger at {url} is not reachable" in run.stderr
    run = cli("trace", "not-a-trace-id")
    assert run.returncode == 2
    assert run.stderr.splitlines()[-1] == (
        "otel-portkey trace: error: argument TRACE_ID: 'not-a-trace-id' is not an OpenTelemetry trace "
        "id: 32 hexadecimal characters, not all zero, like 4bf92f3577b34da6a3ce929d0e0e4736"
    )
    assert "Traceback" not in run.stderr


@pytest.mark.integration
def test_the_demos_trace_read_back_from_jaeger(jaeger, oss_gateway):
    """The newcomer's path: the demo sends its trace to Jaeger (``--otlp-endpoint``), its "Jaeger:"
    line gives the command that shows it (this Jaeger has no UI), and that command prints the
    agent's spans and the traced gateway's own, as Jaeger stored them."""
    url = query_url(jaeger)
    run = cli(
        "demo",
        "--otlp-endpoint",
        jaeger.otlp_http,
        env={"OTEL_PORTKEY_JAEGER_UI_URL": url, "COLUMNS": "300"},
        timeout=240,
    )
    assert run.returncode == 0, run.stderr
    (jaeger_line,) = [line for line in run.stdout.splitlines() if line.startswith("Jaeger: ")]
    trace_id = re.search(r"otel-portkey trace ([0-9a-f]{32})", jaeger_line).group(1)
    assert jaeger_line == (
        f"Jaeger: otel-portkey trace {trace_id} --jaeger {url}  "
        f"(no UI at {url}: a Jaeger built without its UI assets)"
    )
    (sent_line,) = [line for line in run.stdout.splitlines() if line.startswith("Sent to ")]
    sent = int(re.search(r": (\d+) spans", sent_line).group(1))
    assert sent_line == (
        f"Sent to {jaeger.otlp_http}: {sent} spans "
        "(it takes no metrics: /v1/metrics answered 404, as Jaeger does)"
    )
    stored = jaeger.trace(trace_id, spans=sent)
    assert len(stored) == sent, "every span the demo sent on is in Jaeger"
    command = jaeger_line.removeprefix("Jaeger: ").split("  (")[0].split()
    shown = cli(*command[1:])
    assert shown.returncode == 0, shown.stderr
    for span in stored:
        assert f"span {span_id(span)}" in shown.stdout
    servers = [s for s in stored if s["kind"] == 2]
    assert len(servers) == 4
    for server in servers:
        assert (
            f"portkey-gateway server POST  http 200  portkey.span_id {attribute(server, 'portkey.span_id')}  "
            "(as sent)"
        ) in shown.stdout
    assert shown.stdout.count("portkey-gateway attempt 1 POST 127.0.0.1:") == 4
    assert shown.stdout.count("echoed by the gateway") == 4


# ---- the pure parts ------------------------------------------------------------------------------


def recorded_spans():
    exporter = InMemorySpanExporter()
    app, gateway = providers(exporter, "my-app")
    record_call_trace(app, gateway)
    return exporter.get_finished_spans()


def test_otlp_json_spans_read_as_the_receiver_decodes_protobuf():
    """The same export, encoded by the SDK's OTLP encoder: as protobuf it goes through the demo's
    receiver decoder, as protobuf's canonical JSON (base64 ids, int64 as strings, kinds by name)
    through ``spans_from_otlp_json``. Both give the same spans; Jaeger's hex ids too."""
    request = encode_spans(recorded_spans())
    expected = sorted(decode_spans(request.SerializeToString()), key=lambda s: s.span_id)
    as_json = MessageToDict(request)
    assert as_json["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"].endswith("="), "base64"
    assert sorted(spans_from_otlp_json(as_json), key=lambda s: s.span_id) == expected
    # Jaeger writes ids as hex and kinds as numbers; a span stored twice comes back twice.
    for resource_spans in as_json["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key, size in (("traceId", 16), ("spanId", 8), ("parentSpanId", 8)):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
                        assert len(span[key]) == 2 * size
                span["kind"] = {"SPAN_KIND_SERVER": 2, "SPAN_KIND_CLIENT": 3}.get(span.get("kind"), 1)
            scope_spans["spans"].append(dict(scope_spans["spans"][0]))
    assert sorted(spans_from_otlp_json(as_json), key=lambda s: s.span_id) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4bf92f3577b34da6a3ce929d0e0e4736", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("0x4BF92F3577B34DA6A3CE929D0E0E4736", "4bf92f3577b34da6a3ce929d0e0e4736"),
        (" 4bf92f3577b34da6a3ce929d0e0e4736\n", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("4bf92f3577b34da6", None),  # a 64-bit id: not an OTel trace id
        ("4bf92f3577b34da6a3ce929d0e0e473", None),
        ("4bf92f3577b34da6a3ce929d0e0e4736ff", None),
        ("zbf92f3577b34da6a3ce929d0e0e4736", None),
        ("0" * 32, None),  # the invalid trace id
        ("", None),
    ],
)
def test_trace_ids(text, expected):
    assert normalized_trace_id(text) == expected


def test_usage_errors_exit_2_with_a_sentence(capsys):
    for argv, message in (
        (["trace"], "give a TRACE_ID or --service NAME (one of them)"),
        (["trace", "4bf92f3577b34da6a3ce929d0e0e4736", "--service", "x"], "one of them"),
        (["trace", "xyz"], "'xyz' is not an OpenTelemetry trace id"),
        (["trace", "--service", "x", "--jaeger", "localhost:16686"], "is not Jaeger's base URL"),
        (["trace", "--service", "x", "--jaeger", "http://[::1"], "'http://[::1' is not Jaeger's base URL"),
        (["trace", "--service", "x", "--jaeger", "http://j:99999"], "is not Jaeger's base URL"),
    ):
        with pytest.raises(SystemExit) as exited:
            _cli.main(argv)
        assert exited.value.code == 2
        assert message in capsys.readouterr().err


def test_the_plain_tree_is_the_tree_rich_draws():
    """Without rich (a plain install), ``otel-portkey trace`` prints the same tree, without colour."""
    spans = decode_spans(encode_spans(recorded_spans()).SerializeToString())
    tree = trace_tree(spans, "http://jaeger")
    out = io.StringIO()
    Console(file=out, width=1000, highlight=False).print(span_tree._rich_tree(tree))
    assert "\n".join(span_tree.plain_lines(tree)) + "\n" == out.getvalue()
    text = out.getvalue()
    assert "gateway call 1  trace " in text
    assert "portkey.span_id a1b2c3d4e5f60708  (as sent)" in text
    assert "portkey-gateway attempt 2 POST 127.0.0.1:5002  http 200" in text


def test_stored_text_cannot_drive_the_terminal():
    spans = decode_spans(encode_spans(recorded_spans()).SerializeToString())
    hostile = [dataclasses.replace(s, name="evil\x1b[2J\x1b]0;title\x07[bold]x[/bold]") for s in spans]
    lines = span_tree.plain_lines(trace_tree(hostile, "http://jaeger"))
    assert not any("\x1b" in line or "\x07" in line for line in lines)
    out = io.StringIO()
    Console(file=out, width=1000, highlight=False).print(span_tree._rich_tree(trace_tree(hostile, "j")))
    assert "[bold]x[/bold]" in out.getvalue(), "brackets print as they are, never as markup"
    assert "\x1b" not in out.getvalue()


class _Answers(LoopbackService):
    """A loopback HTTP server answering every GET with one status, content type and body."""

    def __init__(self, status, body, content_type="application/json"):
        class Handler(LoopbackHandler):
            def do_GET(self):
                self.reply(status, body, content_type)

        self._server = LoopbackServer(Handler)


@pytest.mark.parametrize(
    ("status", "body", "content_type", "message"),
    [
        (404, b"<html>404</html>", "text/html", "with HTTP 404 (a web page), not with Jaeger's query API"),
        (200, b"<html>hi</html>", "text/html", "with HTTP 200 (a web page), not with Jaeger's query API"),
        (500, b'{"error":{"httpCode":500,"message":"storage down"}}', "", "answered HTTP 500 to"),
    ],
)
def test_what_is_not_jaegers_api_is_one_sentence(status, body, content_type, message):
    with _Answers(status, body, content_type) as server, pytest.raises(TraceError, match=re.escape(message)):
        JaegerQuery(server.url).trace("4bf92f3577b34da6a3ce929d0e0e4736")


def test_jaegers_results_may_come_in_several_documents():
    """api_v3 streams ``{"result": ...}`` objects; more than one is read as one answer."""
    request = MessageToDict(encode_spans(recorded_spans()))
    first, second = dict(request), {"resourceSpans": request["resourceSpans"][1:]}
    first["resourceSpans"] = request["resourceSpans"][:1]
    body = (json.dumps({"result": first}) + "\n" + json.dumps({"result": second})).encode()
    with _Answers(200, body) as server:
        spans = JaegerQuery(server.url).trace(spans_from_otlp_json(request)[0].trace_id)
    assert spans is not None
    assert len(spans) == 7


def test_a_refused_connection_is_named_so():
    with pytest.raises(urllib.error.URLError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{free_port()}/", timeout=5)
    assert network_cause(refused.value) == "connection refused"
    assert network_cause(TimeoutError(), timeout=2) == "no answer within 2 s"


def test_without_rich_the_command_prints_the_plain_tree(monkeypatch, capsys):
    """A plain ``pip install otel-portkey`` has no rich (the demo extra brings it): the same tree,
    drawn in plain text, from a stand-in answering as Jaeger's api_v3 does."""
    request = MessageToDict(encode_spans(recorded_spans()))
    spans = spans_from_otlp_json(request)
    with _Answers(200, json.dumps({"result": request}).encode()) as jaeger:
        for name in [m for m in sys.modules if m == "rich" or m.startswith("rich.")]:
            monkeypatch.setitem(sys.modules, name, None)  # an import of it now fails
        assert _cli.main(["trace", spans[0].trace_id, "--jaeger", jaeger.url]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == span_tree.plain_lines(trace_tree(spans, jaeger.url))
    assert "portkey-gateway attempt 1 POST 127.0.0.1:5001  http 429" in out


# ---- what a Jaeger (or what poses as one) answers: never a traceback, never a terminal escape ----

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
NOT_FOUND = b'{"error":{"httpCode":404,"message":"No traces found"}}'


class _Scripted(LoopbackService):
    """A loopback "Jaeger": ``respond(handler, n)`` answers the ``n``-th GET (from 1); ``paths``
    holds what was asked, ``asked`` is set at the first request."""

    def __init__(self, respond):
        self.paths = []
        self.asked = threading.Event()
        scripted = self

        class Handler(LoopbackHandler):
            def do_GET(self):
                scripted.paths.append(self.path)
                scripted.asked.set()
                respond(self, len(scripted.paths))

        self._server = LoopbackServer(Handler)


def jaeger_span(span_id, parent="", name="step", start=1_000_000, attributes=()):
    """A span as Jaeger's api_v3 writes it: hex ids, int64s as strings."""
    return {
        "traceId": TRACE_ID,
        "spanId": span_id,
        "parentSpanId": parent,
        "name": name,
        "kind": 1,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + 1_000_000),
        "attributes": list(attributes),
    }


def result_document(*spans):
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]}
    return {"result": {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": list(spans)}]}]}}


def answering(*documents, status=200):
    """A ``respond`` that answers every GET with ``documents``, one JSON object a line."""
    body = "\n".join(json.dumps(d) for d in documents).encode()
    return lambda handler, n: handler.reply(status, body, "application/json")


def run_trace(capsys, *args):
    """``otel-portkey trace ARGS`` in this process: (exit code, stdout, stderr)."""
    code = _cli.main(["trace", *args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_clean_sentence(err):
    assert err.startswith("otel-portkey trace: ")
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert not any(c in err for c in "\x1b\x07\r"), repr(err)


@pytest.mark.unit
def test_json_nested_too_deeply_is_one_sentence(capsys):
    body = b'{"result":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with _Scripted(lambda handler, n: handler.reply(200, body, "application/json")) as jaeger:
        code, out, err = run_trace(capsys, TRACE_ID, "--jaeger", jaeger.url)
    assert (code, out) == (1, "")
    assert_one_clean_sentence(err)
    assert f"Jaeger at {jaeger.url} answered /api/v3/traces/{TRACE_ID} with JSON nested too deeply" in err


def cut_short(status):
    """A ``respond`` that announces 1000 bytes, sends 20 and closes the connection."""

    def respond(handler, n):
        handler.send_response(status)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", "1000")
        handler.end_headers()
        handler.wfile.write(b'{"error":{"message":')
        handler.close_connection = True

    return respond


@pytest.mark.unit
def test_answers_cut_short_are_one_sentence(capsys):
    """An HTTP 500 whose body breaks off is still an HTTP 500; a 200 that breaks off is no answer."""
    with _Scripted(cut_short(500)) as jaeger:
        code, _, err = run_trace(capsys, TRACE_ID, "--jaeger", jaeger.url)
    assert code == 1
    assert_one_clean_sentence(err)
    assert f"Jaeger at {jaeger.url} answered HTTP 500 to /api/v3/traces/{TRACE_ID}, a server error" in err
    with _Scripted(cut_short(200)) as jaeger:
        code, _, err = run_trace(capsys, TRACE_ID, "--jaeger", jaeger.url)
    assert code == 1
    assert_one_clean_sentence(err)
    assert "is not reachable (its answer broke off before its end)" in err


@pytest.mark.unit
def test_json_prints_a_bytes_value_as_hex(capsys):
    provider = {"key": "portkey.provider", "value": {"bytesValue": base64.b64encode(b"\x01\xfe").decode()}}
    document = result_document(jaeger_span("a1b2c3d4e5f60708", attributes=[provider]))
    with _Scripted(answering(document)) as jaeger:
        code, out, err = run_trace(capsys, TRACE_ID, "--jaeger", jaeger.url, "--json")
    assert code == 0, err
    (span,) = json.loads(out)["spans"]
    assert span["attributes"] == {"portkey.provider": "01fe"}


def chain(count):
    """``count`` spans, each the parent of the next."""
    ids = [format(n, "016x") for n in range(1, count + 1)]
    return [jaeger_span(ids[0])] + [
        jaeger_span(span_id, parent=parent, start=1_000_000 + n)
        for n, (parent, span_id) in enumerate(itertools.pairwise(ids))
    ]


@pytest.mark.unit
def test_a_span_given_again_closing_a_parent_loop_is_shown_once(capsys):
    """A span id given again in another document, closing a loop of parent ids (what no real trace
    holds): each span is shown once, the tree as the first document has it."""
    first = result_document(jaeger_span("00000000000000aa"))
    loop = result_document(
        jaeger_span("00000000000000aa", parent="00000000000000bb"),
        jaeger_span("00000000000000bb", parent="00000000000000aa", start=2_000_000),
    )
    with _Scripted(answering(first, loop)) as jaeger:
        code, out, err = run_trace(capsys, TRACE_ID, "--jaeger", jaeger.url)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"OTel trace {TRACE_ID}  from Jaeger at {jaeger.url}: 2 spans")
    assert [depth(line_with(lines, f"span 00000000000000{x}")) for x in ("aa", "bb")] == [1, 2]


@pytest.mark.unit
def test_a_chain_deeper_than_pythons_recursion_limit_prints_whole(capsys):
    with _Scripted(answering(result_document(*chain(1200)))) as jaeger:
        code, out, err = run_trace(capsys, TRACE_ID, "--jaeger", jaeger.url)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 1201
    assert depth(line_with(lines, f"span {1200:016x}")) == 1200


@pytest.mark.unit
@pytest.mark.parametrize("url", ["http://[::1", "localhost:16686", "http://jaeger:99999"])
def test_an_unusable_jaeger_url_in_the_environment_is_one_sentence(url, monkeypatch, capsys):
    monkeypatch.setenv("OTEL_PORTKEY_JAEGER_UI_URL", url)
    code, out, err = run_trace(capsys, TRACE_ID)
    assert (code, out) == (1, "")
    assert_one_clean_sentence(err)
    assert err == (
        f"otel-portkey trace: OTEL_PORTKEY_JAEGER_UI_URL: {url!r} is not Jaeger's base URL (like "
        "http://localhost:16686, its UI and query API)\n"
    )


@pytest.mark.integration
@pytest.mark.parametrize("inherited", [signal.SIG_DFL, signal.SIG_IGN], ids=["terminal", "script-background"])
def test_ctrl_c_while_waiting_exits_130_with_one_line(inherited):
    """Ctrl-C ends a wait, also when the command inherits SIGINT ignored (a script's ``command &``)."""
    with _Scripted(lambda handler, n: handler.reply(404, NOT_FOUND, "application/json")) as jaeger:
        waiting = subprocess.Popen(
            [CLI, "trace", TRACE_ID, "--jaeger", jaeger.url, "--wait", "60"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, inherited),
        )
        try:
            assert jaeger.asked.wait(60), "the command asked Jaeger"
            waiting.send_signal(signal.SIGINT)
            out, err = waiting.communicate(timeout=30)
        finally:
            waiting.kill()
            waiting.wait()
    assert (waiting.returncode, out, err) == (130, "", "otel-portkey trace: interrupted\n")


@pytest.mark.unit
def test_an_answer_larger_than_the_cap_is_one_sentence(capsys):
    size = 64 * 2**20 + 1

    def respond(handler, n):
        handler.send_response(200)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(size))
        handler.end_headers()
        block = b" " * 2**20
        for _ in range(size // len(block) + 1):
            handler.wfile.write(block)

    with _Scripted(respond) as jaeger:
        code, _, err = run_trace(capsys, TRACE_ID, "--jaeger", jaeger.url)
    assert code == 1
    assert_one_clean_sentence(err)
    assert err.startswith("otel-portkey trace: Jaeger's answer is larger than 64 MiB: ")


@pytest.mark.unit
def test_an_answer_that_does_not_end_is_cut_at_the_requests_deadline():
    """Each read comes within the socket's timeout, the answer never ends: one deadline per request."""

    def drip(handler, n):
        handler.send_response(200)
        handler.send_header("content-length", "1000")
        handler.end_headers()
        for _ in range(40):  # 8 s of one byte every 0.2 s, then the connection closes
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.2)
        handler.close_connection = True

    with _Scripted(drip) as jaeger:
        started = time.monotonic()
        with pytest.raises(TraceError) as failed:
            JaegerQuery(jaeger.url, timeout=1.0).trace(TRACE_ID)
        took = time.monotonic() - started
    assert took < 7, took  # not the drip's 8 s (bounds below it only allow for a stalled machine)
    assert str(failed.value).startswith(
        f"Jaeger at {jaeger.url} is not reachable (its answer did not end within 1 s)"
    )


def redirect_to(location):
    return lambda handler, n: handler.reply(302, b"", None, [("location", location)])


def services_named(names):
    def respond(handler, n):
        if handler.path.startswith("/api/v3/services"):
            handler.reply(200, json.dumps({"services": names}).encode(), "application/json")
        else:
            handler.reply(404, NOT_FOUND, "application/json")

    return respond


ESCAPES = "\x1b]0;pwned\x07\x1b[2J\r"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("respond", "args", "shown"),
    [
        pytest.param(
            services_named([f"evil{ESCAPES}name"]), ["--service", "app"], "it has evil", id="services"
        ),
        pytest.param(
            answering({"error": {"httpCode": 500, "message": f"storage{ESCAPES}down"}}, status=500),
            [TRACE_ID],
            "answered HTTP 500 to",
            id="error message",
        ),
        pytest.param(
            redirect_to(f"http://elsewhere/{ESCAPES}"),
            [TRACE_ID],
            "redirect to http://elsewhere/",
            id="redirect",
        ),
    ],
)
def test_what_jaeger_says_cannot_drive_the_terminal(respond, args, shown, capsys):
    with _Scripted(respond) as jaeger:
        code, _, err = run_trace(capsys, *args, "--jaeger", jaeger.url)
    assert code == 1
    assert_one_clean_sentence(err)
    assert shown in err


@pytest.mark.unit
def test_the_printed_command_and_url_carry_no_query_and_no_password():
    assert trace_command(TRACE_ID, "http://jaeger.corp:16686/?api_key=SECRET#x") == (
        f"otel-portkey trace {TRACE_ID} --jaeger http://jaeger.corp:16686"
    )
    assert trace_command(TRACE_ID, "http://me:pw@jaeger.corp:16686/") == f"otel-portkey trace {TRACE_ID}"
    assert trace_command(TRACE_ID, "http://localhost:16686/?k=v") == f"otel-portkey trace {TRACE_ID}"
    assert (
        JaegerQuery("http://me:pw@jaeger.corp:16686/ui/?api_key=SECRET").shown
        == "http://***@jaeger.corp:16686/ui"
    )


@pytest.mark.unit
@pytest.mark.parametrize(
    "respond",
    [
        pytest.param(redirect_to("http://elsewhere/"), id="redirect"),
        pytest.param(lambda handler, n: handler.reply(200, b"<html>UI</html>", "text/html"), id="web page"),
    ],
)
def test_wait_does_not_ask_again_after_a_final_answer(respond, capsys):
    """Only "not there yet" and "not reachable" are worth asking again while --wait lasts."""
    with _Scripted(respond) as jaeger:
        started = time.monotonic()
        code, _, err = run_trace(capsys, TRACE_ID, "--jaeger", jaeger.url, "--wait", "5")
        took = time.monotonic() - started
    assert code == 1
    assert_one_clean_sentence(err)
    assert len(jaeger.paths) == 1
    assert took < 4.5, took  # not the wait's 5 s


@pytest.mark.unit
def test_a_failure_after_the_trace_was_found_keeps_the_trace(capsys):
    """Jaeger answers the trace, then fails while --wait reads it again: the trace is printed."""
    found = json.dumps(result_document(jaeger_span("a1b2c3d4e5f60708", name="seed agent run"))).encode()
    failing = json.dumps({"error": {"httpCode": 500, "message": "storage down"}}).encode()

    def respond(handler, n):
        handler.reply(200 if n == 1 else 500, found if n == 1 else failing, "application/json")

    with _Scripted(respond) as jaeger:
        code, out, err = run_trace(capsys, TRACE_ID, "--jaeger", jaeger.url, "--wait", "5")
    assert code == 0, err
    assert "seed agent run" in out
    assert len(jaeger.paths) == 2


@pytest.mark.unit
def test_a_request_does_not_outlast_the_wait(capsys):
    """A Jaeger that takes the connection and never answers: --wait 1 ends after about a second,
    not after a request's own 10 s."""
    release = threading.Event()
    with _Scripted(lambda handler, n: release.wait(30)) as jaeger:
        started = time.monotonic()
        try:
            code, _, err = run_trace(capsys, TRACE_ID, "--jaeger", jaeger.url, "--wait", "1")
        finally:
            release.set()
        took = time.monotonic() - started
    assert code == 1
    assert_one_clean_sentence(err)
    assert f"Jaeger at {jaeger.url} is not reachable (no answer within 1 s)" in err
    assert took < 9, took  # not a request's own 10 s


class _Relay(LoopbackService):
    """Relays each GET to ``target`` (the real Jaeger); ``searched`` is set as the first search for
    a service's traces is answered, and every later request waits for ``release`` (so that what the
    test does meanwhile happens before the command asks again, however slow the machine)."""

    def __init__(self, target):
        self.searched = threading.Event()
        self.release = threading.Event()
        relay = self

        class Handler(LoopbackHandler):
            def do_GET(self):
                if relay.searched.is_set():
                    relay.release.wait(60)
                try:
                    with urllib.request.urlopen(target + self.path, timeout=30) as answer:
                        status, body, kind = answer.status, answer.read(), answer.headers["content-type"]
                except urllib.error.HTTPError as error:
                    status, body, kind = error.code, error.read(), error.headers["content-type"]
                if self.path.startswith("/api/v3/traces?"):
                    relay.searched.set()  # before the answer: the command's next request is held
                self.reply(status, body, kind)

        self._server = LoopbackServer(Handler)


def store_while_waiting(jaeger, service: str, wait: int) -> tuple[int, str, str, str]:
    """Runs ``trace --service SERVICE --wait WAIT`` through a ``_Relay``; once the command has
    searched (and is still waiting), a call trace of ``service`` is exported and stored before the
    command asks again. Returns its exit status, what it printed and the stored trace's id."""
    with _Relay(query_url(jaeger)) as relay:
        waiting = subprocess.Popen(
            [CLI, "trace", "--service", service, "--jaeger", relay.url, "--wait", str(wait)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert relay.searched.wait(60), "the command looked for the service's latest trace"
            time.sleep(0.5)  # its next request is held until the trace is stored
            assert waiting.poll() is None, "still waiting"
            trace_id = export_call_trace(jaeger, service)
            jaeger.trace(trace_id, spans=7)  # stored
            relay.release.set()
            out, err = waiting.communicate(timeout=60)
        finally:
            relay.release.set()
            waiting.kill()
            waiting.wait()
    return waiting.returncode, out, err, trace_id


@pytest.mark.integration
def test_wait_with_a_service_prints_the_trace_that_reached_jaeger_meanwhile(jaeger):
    """Jaeger holds an older trace of the service when the command first looks: the run that ends
    meanwhile (its trace started later) reaches Jaeger while --wait lasts, and is the one printed."""
    service = f"trace-newer-{uuid.uuid4().hex[:8]}"
    older = export_call_trace(jaeger, service, start_ns=time.time_ns() - 30 * 10**9)
    jaeger.trace(older, spans=7)
    code, out, err, newer = store_while_waiting(jaeger, service, wait=30)
    assert code == 0, err
    assert out.startswith(f"OTel trace {newer}  "), out.splitlines()[0]
