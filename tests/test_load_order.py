"""Both load orders under the real ``opentelemetry-instrument``, through the real OSS gateway.

``opentelemetry-instrument`` loads instrumentors in ``entry_points()`` order, which follows
``sys.path``. A distribution placed first on ``PYTHONPATH`` whose entry point names the bridge (or
the httpx instrumentation) makes that one load before everything in site-packages, so each order
is forced rather than left to the file system. The app prints the order it ran under, read with
the same ``entry_points()`` call on the same ``sys.path``.
"""

import json

import pytest

from otel_portkey.testing import OtlpReceiver

from instrumented import ROOT, otel_env, run_instrumented

pytestmark = pytest.mark.integration

FIRST = {
    "bridge first": {"otel_portkey_first": "otel_portkey._otel.instrumentor:PortkeyInstrumentor"},
    "httpx first": {
        "httpx_first": "opentelemetry.instrumentation.httpx:HTTPXClientInstrumentor",
        "httpx2_first": "opentelemetry.instrumentation.httpx:HTTPX2ClientInstrumentor",
    },
}
EXPECTED_FIRST = {"bridge first": "otel_portkey_first", "httpx first": "httpx_first"}
REAL = ("otel_portkey", "httpx", "httpx2")  # the installed distributions' entry points

APP = """
import json, sys
from importlib.metadata import entry_points
import runpy
order = [ep.name for ep in entry_points(group="opentelemetry_instrumentor")]
print("ORDER " + json.dumps(order))
sys.argv = [{script!r}]
runpy.run_path({script!r}, run_name="__main__")
"""


def forced_first(tmp_path, entries):
    """A directory for PYTHONPATH holding one distribution whose instrumentor entry points load first."""
    dist = tmp_path / "path" / "aaa_load_first-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: aaa-load-first\nVersion: 0\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entries.items())
    (dist / "entry_points.txt").write_text(f"[opentelemetry_instrumentor]\n{lines}")
    return dist.parent


@pytest.mark.parametrize("order", list(FIRST))
@pytest.mark.parametrize(
    ("script", "calls"), [("examples/portkey_sdk.py", 1), ("examples/openai_direct.py", 4)]
)
def test_both_load_orders_bridge_every_call(tmp_path, hop, model, order, script, calls):
    path = forced_first(tmp_path, FIRST[order])
    app = tmp_path / "app.py"
    app.write_text(APP.format(script=str(ROOT / script)))
    with OtlpReceiver() as receiver:
        env = otel_env(
            receiver.endpoint,
            PORTKEY_GATEWAY_URL=f"{hop.url}/v1",
            PORTKEY_CUSTOM_HOST=model.base_url,
            PYTHONPATH=str(path),
        )
        result = run_instrumented(str(app), env)
        assert result.returncode == 0, result.stderr[-3000:]
        exported = receiver.wait_for(
            lambda s: len([x for x in s if "portkey.span_id" in x.attributes]) >= calls
        )
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("ORDER ")]
    ran = json.loads(line.removeprefix("ORDER "))
    assert ran[0] == EXPECTED_FIRST[order]
    # Every forced entry point ran before every real one of the bridge and of httpx (an index > 0
    # would say nothing: ran[0] is already known to be another name).
    assert {*FIRST[order], *REAL} <= set(ran), ran
    forced = [ran.index(name) for name in FIRST[order]]
    real = [ran.index(name) for name in REAL]
    assert max(forced) < min(real), f"the real entry points ran later: {ran}"

    assert len(hop.requests) == calls
    by_id = {s.span_id: s for s in exported}
    http_spans = [s for s in exported if s.kind == 3 and s.name == "POST"]
    assert len(http_spans) == calls, "one HTTP span per call, never two"
    for received in hop.requests:
        span = by_id[received.headers["x-portkey-parent-span-id"]]
        assert received.headers["x-portkey-trace-id"] == span.trace_id
        assert received.response_headers["x-portkey-trace-id"] == span.trace_id, "the gateway's echo"
        assert span.attributes["portkey.provider"] == received.response_headers["x-portkey-provider"]
