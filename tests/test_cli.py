"""``otel-portkey demo`` and ``otel-portkey doctor``, run as a user runs them."""

import json
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from otel_portkey._contract.call import is_fallback
from otel_portkey.testing import ANSWER, OtlpReceiver, free_port

from scale_out import wait_until

CLI = str(Path(sys.executable).with_name("otel-portkey"))


def demo(*args, env=None, timeout=240):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PORTKEY_"))}
    full_env.update(env or {})
    return subprocess.run(
        [CLI, "demo", *args], env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )


def gateway_processes(port):
    found = subprocess.run(
        ["pgrep", "-f", f"start-server.js --port={port}"], capture_output=True, text=True, check=False
    )
    return found.stdout.split()


def assert_the_bridge_sent(result):
    """What the bridge sent, as the recording hop in front of the gateway received it: each call's
    OTel trace id, HTTP span id and calling span's name. No gateway's answer is read here."""
    assert result["answer"] == f"The result is {ANSWER:,}."
    assert len(result["calls"]) == 4
    for call in result["calls"]:
        assert call["sent"]["x-portkey-trace-id"] == call["otel_trace_id"] == result["trace_id"]
        assert call["sent"]["x-portkey-parent-span-id"] == call["http_span_id"]
        assert call["sent"]["x-portkey-span-name"] == call["caller"] == "chat gpt-4o"


def assert_the_real_gateway_answered(result):
    """What the real OSS gateway answered, as the hop recorded it: the trace id it echoed for each
    call (the demo's verdict rests on it), and the metrics count its answers. Only for runs through
    the real gateway: the stand-in's answers copy the bridge's own headers."""
    assert_the_bridge_sent(result)
    for call in result["calls"]:
        assert call["echoed"] == result["trace_id"], "what the gateway itself answered"
    assert result["all_correlated"] is True
    assert_metrics(result)


def assert_the_gateways_own_node(result):
    """What the traced gateway exported (the spans of service ``portkey-gateway`` in ``spans``):
    under each of the agent's ``POST`` spans, one SERVER span, and one upstream attempt (a CLIENT
    span) under that; the call's ``gateway_node`` is read from those spans and carries the
    ``x-portkey-span-id`` the hop saw the gateway receive, answered 200 by the upstream."""
    assert result["gateway_traced"] is True
    spans = result["spans"]
    gateway = [s for s in spans if s["service"] == "portkey-gateway"]
    posts = [s for s in spans if s["service"] == "otel-portkey-demo" and s["name"] == "POST"]
    assert len(posts) == 4
    for post in posts:
        (server,) = [s for s in gateway if s["parent_span_id"] == post["span_id"]]
        assert server["kind"] == "server"
        (attempt,) = [s for s in gateway if s["parent_span_id"] == server["span_id"]]
        assert attempt["kind"] == "client"
        (call,) = [c for c in result["calls"] if c["http_span_id"] == post["span_id"]]
        node = call["gateway_node"]
        assert (node["service"], node["span_id"], node["parent_span_id"]) == (
            "portkey-gateway",
            server["span_id"],
            post["span_id"],
        )
        assert (
            node["portkey_span_id"]
            == call["sent"]["x-portkey-span-id"]
            == call["answered"]["portkey.span_id"]
        )
        assert node["portkey_trace_id"] == result["trace_id"]
        assert node["status_code"] == 200
        assert [(a["span_id"], a["status_code"]) for a in node["attempts"]] == [(attempt["span_id"], 200)]
    assert len(gateway) == 8


def assert_no_gateway_node(result):
    """A gateway the demo did not start traced (the stand-in, ``--gateway-url``): no node claimed."""
    assert result["gateway_traced"] is False
    assert [call["gateway_node"] for call in result["calls"]] == [None] * 4
    assert not [s for s in result["spans"] if s["service"] == "portkey-gateway"]


def assert_metrics(result):
    """The metrics the agent exported (``metrics``) count what the gateway answered to each call."""
    answers = [call["gateway_answer"] for call in result["calls"]]
    metrics = result["metrics"]
    assert metrics["calls"] == len(answers) == 4
    assert metrics["providers"] == Counter(a["x-portkey-provider"] for a in answers)
    assert metrics["cache_statuses"] == Counter(a["x-portkey-cache-status"] for a in answers)
    assert metrics["retries"] == sum(int(a["x-portkey-retry-attempt-count"]) for a in answers)
    assert metrics["fallbacks"] == sum(is_fallback(a["x-portkey-last-used-option-index"]) for a in answers)
    assert 0 < metrics["p50_seconds"] <= metrics["p95_seconds"]


@pytest.mark.integration
def test_demo_offline_json(oss_gateway):  # the fixture makes sure the gateway is installed
    port = free_port()
    run = demo("--json", "--port", str(port))
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["gateway"] == "OSS Portkey gateway 1.15.2"
    assert_the_real_gateway_answered(result)
    assert_the_gateways_own_node(result)
    assert {"seed agent run", "invoke_agent", "execute_tool multiply"} <= {s["name"] for s in result["spans"]}
    assert gateway_processes(port) == []


@pytest.mark.integration
def test_demo_prints_the_tree_and_the_jaeger_line(oss_gateway):
    """The "Jaeger:" line gives the command that reads the trace from Jaeger's API; this Jaeger
    does not answer, so the line says so (tests/test_trace_cli.py reads one back from a real one)."""
    jaeger = f"http://127.0.0.1:{free_port()}"
    run = demo(env={"OTEL_PORTKEY_JAEGER_UI_URL": jaeger, "COLUMNS": "200"})
    assert run.returncode == 0, run.stderr
    assert f"Answer: The result is {ANSWER:,}." in run.stdout
    assert "4 of 4 LLM calls carry OTel trace" in run.stdout
    assert run.stdout.count("ids equal") == 4
    trace_id = run.stdout.split("OTel trace ", 1)[1].split()[0]
    assert (
        f"Jaeger: otel-portkey trace {trace_id} --jaeger {jaeger}  "
        f"(Jaeger at {jaeger} did not answer: connection refused)"
    ) in run.stdout.splitlines()
    # Under each POST, the traced gateway's own node and its one upstream attempt.
    assert "via the OSS Portkey gateway 1.15.2, traced as service 'portkey-gateway'" in run.stdout
    assert run.stdout.count("portkey-gateway server POST  http 200  portkey.span_id ") == 4
    assert run.stdout.count("(as received)") == 4
    assert run.stdout.count("portkey-gateway attempt 1 POST 127.0.0.1:") == 4
    last = run.stdout.strip().splitlines()[-1]  # the summary of the metrics the agent exported
    assert last.startswith(
        "portkey.gateway.* metrics exported: "
        "4 calls (openai 4)  retries 0  fallbacks 0  cache DISABLED 4  p50 "
    ), run.stdout
    assert "jaeger_trace" in run.stdout  # the back-link went into the metadata the gateway received


@pytest.mark.integration
def test_demo_without_node_uses_the_labelled_stand_in(tmp_path):
    """Without Node.js the demo runs the built-in stand-in and says so. Asserted: the label, the model's
    answer relayed, what the bridge sent (recorded by the hop in front of the stand-in) and the calls
    the bridge counted. Not asserted: anything the stand-in answered (its trace id echo and provider
    are copies of the bridge's own headers, the rest is fixed); the tests above assert what a
    gateway answers, against the real one."""
    run = demo("--json", env={"PATH": str(tmp_path)})  # no node, no npm
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert "stand-in" in result["gateway"]
    assert "not the real gateway" in result["gateway"]
    assert_the_bridge_sent(result)
    assert_no_gateway_node(result)
    assert result["metrics"]["calls"] == 4


@pytest.mark.integration
def test_demo_also_exports_to_an_otlp_endpoint(oss_gateway):
    """The agent's spans and the traced gateway's own go on to ``--otlp-endpoint``: one trace."""
    with OtlpReceiver() as collector:
        run = demo("--json", "--otlp-endpoint", collector.endpoint)
        assert run.returncode == 0, run.stderr
        trace_id = json.loads(run.stdout)["trace_id"]
        spans = collector.wait_for(lambda s: any(x.name == "seed agent run" for x in s))
    assert {s.trace_id for s in spans} == {trace_id}
    services = Counter(s.resource.get("service.name") for s in spans)
    assert services["portkey-gateway"] == 8, "each call's gateway node and its attempt"


@pytest.mark.integration
def test_demo_with_a_running_gateway(oss_gateway):
    run = demo("--json", "--gateway-url", oss_gateway.base_url)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["gateway"] == f"gateway at {oss_gateway.base_url}"  # the fixture's: the real gateway
    assert_the_real_gateway_answered(result)
    assert_no_gateway_node(result)  # not started by the demo: not traced


@pytest.mark.integration
def test_a_busy_port_is_one_clear_sentence():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = demo("--port", str(port))
    assert run.returncode == 1
    assert (
        run.stderr.strip()
        == f"otel-portkey demo: port {port} is busy: choose another with --port, or stop what listens there"
    )
    assert gateway_processes(port) == []


@pytest.mark.integration
def test_a_gateway_that_cannot_be_installed_is_one_clear_sentence(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "node").symlink_to(
        subprocess.check_output(["which", "node"], text=True).strip()
    )  # node, no npm
    run = demo(env={"PATH": str(bin_dir), "OTEL_PORTKEY_CACHE": str(tmp_path / "cache")})
    assert run.returncode == 1
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith(
        "otel-portkey demo: the OSS Portkey gateway did not start: Node.js and npm are needed"
    )


@pytest.mark.integration
def test_live_without_keys_refuses_clearly():
    run = demo("--live")
    assert run.returncode == 1
    assert run.stderr.strip() == "otel-portkey demo: --live needs PORTKEY_API_KEY (your Portkey API key)"
    run = demo("--live", env={"PORTKEY_API_KEY": "pk"})
    assert "needs a provider key" in run.stderr


@pytest.mark.integration
def test_ctrl_c_stops_everything(oss_gateway):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PORTKEY_"))}
    process = subprocess.Popen(
        [CLI, "demo", "--json", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert wait_until(lambda: gateway_processes(port), timeout=60, interval=0.1), "the gateway started"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "interrupted" in stderr
    assert wait_until(lambda: gateway_processes(port) == [], timeout=10, interval=0.1), gateway_processes(
        port
    )


MISSING_EXTRA = "otel-portkey demo needs the 'demo' extra: pip install 'otel-portkey[demo]' (missing: {})"


@pytest.mark.integration
def test_demo_without_its_extra_is_one_sentence(tmp_path):
    """A plain ``pip install otel-portkey``: the console script says what to install, no traceback."""
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['rich'] = None  # not installed\n")
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    run = demo(env={"PYTHONPATH": path}, timeout=60)
    assert run.returncode == 1
    assert run.stderr.strip() == MISSING_EXTRA.format("rich")
    assert "Traceback" not in run.stderr
    assert run.stdout == ""


def test_demo_checks_every_module_before_starting_anything(monkeypatch, capsys):
    import importlib.util

    from otel_portkey import _cli as cli
    from otel_portkey._cli import demo as demo_module

    absent = {"portkey_ai", "opentelemetry.distro"}
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name in absent else real_find_spec(name, *args, **kwargs)

    def must_not_start(*args, **kwargs):
        raise AssertionError("the demo started although packages it needs are missing")

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(demo_module, "run_demo", must_not_start)
    assert cli.main(["demo", "--json"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == MISSING_EXTRA.format("portkey-ai, opentelemetry-distro") + "\n"
