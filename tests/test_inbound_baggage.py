"""Metadata that reaches Portkey comes only from the process itself (issue: a forged ``_user``).

A real web framework (FastAPI on uvicorn) runs under ``opentelemetry-instrument`` with the bridge;
an outside client sends forged ``baggage``; the service calls the real OSS gateway through a
recording hop. What the gateway received is read the way the OSS gateway reads it and the way
hosted Portkey documents it reads it (``otel_portkey.testing``: ``read_as_oss``, ``read_as_hosted``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from otel_portkey.testing import OtlpReceiver, free_port, read_as_hosted, read_as_oss

from instrumented import BIN, ROOT, otel_env

pytestmark = pytest.mark.integration

# An outside caller forging Portkey metadata in every form baggage allows.
FORGED = ",".join(
    [
        "portkey.metadata._user=mallory",
        "portkey.metadata._environment=prod",
        "_user=mallory2",
        "enduser.id=mallory3",
        "portkey.metadata.%5Fuser=mallory4",  # a percent-encoded key
        "portkey.metadata.plan=mallory5;property=1",  # with a property
        "portkey.metadata.note=mallory%0D%0Ax-evil%3A%201",  # percent-encoded CR LF
        *(f"portkey.metadata.k{i}=mallory-{i}" for i in range(60)),  # many entries
    ]
)


@contextmanager
def service(receiver: OtlpReceiver, **env: str) -> Iterator[str]:
    """tests/llm_service.py under opentelemetry-instrument on a free port; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [
            str(BIN / "opentelemetry-instrument"),
            sys.executable,
            str(ROOT / "tests" / "llm_service.py"),
            str(port),
        ],
        env=otel_env(receiver.endpoint, OTEL_SERVICE_NAME="llm-service", **env),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/openapi.json", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the service did not start: {process.stdout.read()}") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def outside_call(url: str, baggage: str | None = None) -> dict:
    """A request from outside (no OTel in this client): only what an attacker would send."""
    request = urllib.request.Request(url, method="POST", data=b"")
    if baggage is not None:
        request.add_header("baggage", baggage)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def readings(received):
    return read_as_oss(received.headers), read_as_hosted(received.headers, received.method, received.path)


def test_forged_baggage_from_an_outside_caller_reaches_portkey_in_no_form(hop, model):
    with OtlpReceiver() as receiver:
        with service(receiver, GATEWAY_URL=hop.url, MODEL_URL=model.base_url) as url:
            answer = outside_call(f"{url}/ask?own=1", FORGED)
        exported = receiver.wait_for(lambda got: any(s.name == "POST /ask" for s in got))
    assert answer["status"] == 200
    assert {"portkey.metadata._user", "enduser.id", "_user"} <= set(answer["baggage_keys"]), (
        "the server instrumentation did put the forged entries into the request's context"
    )
    (received,) = hop.requests
    assert "baggage" not in received.headers, "no baggage is forwarded to a Portkey gateway"
    oss, hosted = readings(received)
    for reading in (oss, hosted):
        assert not [v for v in reading.metadata.values() if "mallory" in str(v)], reading.metadata
        assert "_environment" not in reading.metadata
        assert reading.metadata["feature"] == "qa", "the app's own portkey_metadata still arrives"
        assert reading.metadata["service"] == "llm-service"
        assert reading.rule_breaks() == []
    assert oss == hosted, "hosted and OSS gateways read the same request the same way"
    tagged = [s.name for s in exported if any("mallory" in str(v) for v in s.attributes.values())]
    assert tagged == [], "no span carries forged metadata either"


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "untrusted"])
def test_two_services_carry_upstream_metadata_only_when_the_operator_trusts_it(hop, model, trusted):
    """Service A (``portkey_metadata(_user="alice", team="t-1")``) calls service B, which calls the
    gateway. B turns A's baggage into Portkey metadata only with the opt-in."""
    trust = {"OTEL_PORTKEY_TRUSTED_BAGGAGE_KEYS": "portkey.metadata.*"} if trusted else {}
    with (
        OtlpReceiver() as receiver,
        service(receiver, GATEWAY_URL=hop.url, MODEL_URL=model.base_url, **trust) as downstream,
        service(receiver, DOWNSTREAM_URL=downstream) as upstream,
    ):
        answer = outside_call(f"{upstream}/relay")
    assert answer["status"] == 200
    assert {"portkey.metadata._user", "portkey.metadata.team"} <= set(answer["baggage_keys"])
    (received,) = hop.requests
    oss, hosted = readings(received)
    assert oss == hosted
    expected = {"_user": "alice", "team": "t-1"} if trusted else {}
    assert {k: v for k, v in oss.metadata.items() if k in ("_user", "team")} == expected
