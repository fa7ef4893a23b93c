"""The README's "How it works" is what runs: one Portkey-bound call, profiled under
``opentelemetry-instrument``, enters exactly the modules the README lists, and every call from one
of them into another goes down that list (a module below never calls back into one above)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from otel_portkey.testing import ScriptedModelServer

from instrumented import BIN, ROOT, otel_env

pytestmark = pytest.mark.integration

README = (ROOT / "README.md").read_text()
SCRIPT = ROOT / "tests" / "call_map" / "one_call.py"


def readme_map() -> list[str]:
    """The modules of "How it works", in order: its numbered list's ``src`` paths."""
    section = README.split("### How it works", 1)[1].split("\n### ", 1)[0]
    return [m.removesuffix(".py") for m in re.findall(r"^\d+\. `([\w/]+\.py)`", section, re.MULTILINE)]


@pytest.fixture(scope="module")
def profiled() -> dict[str, list[tuple[str | None, str, str]]]:
    with ScriptedModelServer() as model:
        env = otel_env(
            "http://127.0.0.1:9",  # nothing is exported before the process ends
            OTEL_TRACES_EXPORTER="none",
            OTEL_METRICS_EXPORTER="console",  # a MeterProvider, so the call's metrics point is made
            OTEL_METRIC_EXPORT_INTERVAL="600000",
            OTEL_PORTKEY_GATEWAY_URLS=model.url,
        )
        result = subprocess.run(
            [
                str(BIN / "opentelemetry-instrument"),
                sys.executable,
                str(SCRIPT),
                f"{model.url}/v1/chat/completions",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert len(model.received) == 2
        assert model.received[0].headers["x-portkey-span-name"] == "chat gpt-4o", "the bridge ran"
    first_line = result.stdout.split("\n", 1)[0]
    return {k: [tuple(e) for e in v] for k, v in json.loads(first_line).items()}  # type: ignore[misc]


def test_the_readme_lists_six_modules_at_most():
    listed = readme_map()
    assert 0 < len(listed) <= 6, listed
    assert all((ROOT / "src" / "otel_portkey" / f"{m}.py").is_file() for m in listed), listed


@pytest.mark.parametrize("which", ["first", "warm"])
def test_one_call_enters_the_modules_the_readme_lists(profiled, which):
    entered = {called for _, called, _ in profiled[which]}
    listed = readme_map()
    if which == "first":
        assert entered == set(listed), (sorted(entered), listed)
    else:  # memoised steps may be skipped once warm, but nothing outside the list is entered
        assert entered <= set(listed), (sorted(entered), listed)


@pytest.mark.parametrize("which", ["first", "warm"])
def test_calls_between_modules_only_go_down_the_list(profiled, which):
    rank = {module: index for index, module in enumerate(readme_map())}
    upward = [
        (caller, called, function)
        for caller, called, function in profiled[which]
        if caller is not None and caller != called and rank.get(caller, -1) >= rank.get(called, -1)
    ]
    assert upward == []


def test_the_map_counts_are_what_the_readme_says(profiled):
    """The figures the README quotes for one call (modules, calls into them) are this profile's."""
    first = profiled["first"]
    modules = len({called for _, called, _ in first})
    calls = sum(1 for caller, called, _ in first if caller != called)  # entries into a module
    quoted = re.search(r"one call enters (\d+) modules of ours, (\d+) times", README)
    assert quoted is not None, "the README quotes the profile's figures"
    assert (int(quoted.group(1)), int(quoted.group(2))) == (modules, calls)
