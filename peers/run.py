#!/usr/bin/env python3
"""The OTel HTTP client instrumentations' own published tests, with and without the bridge.

For each of httpx, requests, urllib, urllib3 and aiohttp-client, at the version constraints.txt
pins: download its sdist from the package index, unpack its tests and run them twice with pytest
in the virtualenv ``.venv-peers`` (made and filled here, from the project's own files):

* plain: ``python -m pytest tests``;
* with the bridge attached as an application gets it: ``opentelemetry-instrument python -m pytest
  tests``. That is the real loader: its ``sitecustomize`` runs the distro and the SDK configurator,
  the bridge's ``opentelemetry_pre_instrument`` entry point (which wraps every client
  instrumentor's ``instrument()``), the ``otel_portkey`` instrumentor (``PortkeyInstrumentor``),
  then the ``opentelemetry_post_instrument`` entry points, all before pytest imports a test.
  Every other instrumentor entry point is listed in ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``
  (in both runs): the suite instruments and uninstruments its own library test by test, as an
  application's ``opentelemetry-instrument`` would once, so the loader must not do it first.

The set of passed, failed and skipped test ids must be the same in both runs of every suite. A
test that fails in both is listed, but is not a difference. Exit status 1 on any difference, or
when a run could not complete. ``--suite NAME`` (repeatable) runs only those suites.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "peers"
VENV = Path(os.environ.get("PEERS_VENV", ROOT / ".venv-peers")).resolve()
BIN = VENV / "bin"
CONSTRAINTS = ROOT / "constraints.txt"
REQUIREMENTS = HERE / "requirements.txt"
SUITES = ("httpx", "requests", "urllib", "urllib3", "aiohttp-client")
TEST_TIMEOUT = 120  # seconds per test (pytest-timeout): a hang is a failure, not a stuck run
MODES = ("without", "with")


def log(message: str) -> None:
    print(f"peers: {message}", flush=True)


def run(*cmd: str | Path, **kwargs: Any) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def pinned() -> dict[str, str]:
    """name → version for every ``name==version`` line of constraints.txt (names normalised)."""
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        match = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s;#]+)", line)
        if match:
            pins[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return pins


def distribution(suite: str) -> str:
    return f"opentelemetry-instrumentation-{suite}"


def install(pins: dict[str, str]) -> None:
    """Make ``.venv-peers`` and install everything the suites need, unless its stamp is current."""
    digest = hashlib.sha256()
    for path in (CONSTRAINTS, ROOT / "pyproject.toml", REQUIREMENTS):
        digest.update(path.read_bytes())
    digest.update(sys.version.encode())
    stamp = VENV / ".installed-stamp"
    if stamp.exists() and stamp.read_text() == digest.hexdigest():
        return
    log(f"making {VENV.name} (a minute or two with a warm pip cache)")
    shutil.rmtree(VENV, ignore_errors=True)
    run(sys.executable, "-m", "venv", VENV)
    pip = (BIN / "python", "-m", "pip", "--disable-pip-version-check")
    run(*pip, "install", "-q", "--upgrade", "pip")
    instrumentations = [f"{distribution(s)}=={pins[distribution(s)]}" for s in SUITES]
    run(*pip, "install", "-q", "-c", CONSTRAINTS, "-r", REQUIREMENTS, *instrumentations, "-e", ROOT)
    run(*pip, "check")
    stamp.write_text(digest.hexdigest())


def unpack(suite: str, version: str) -> Path:
    """The suite's tests, from its sdist at ``version``; returns the folder that holds ``tests/``."""
    name = distribution(suite)
    target = VENV / "suites" / f"{name}-{version}"
    if (target / "tests").is_dir():
        return target
    sdists = VENV / "sdists"
    prefix = f"{name.replace('-', '_')}-{version}"
    archive = sdists / f"{prefix}.tar.gz"
    if not archive.exists():
        run(
            BIN / "python", "-m", "pip", "--disable-pip-version-check", "download", "-q",
            "--no-binary", ":all:", "--no-deps", "-d", sdists, f"{name}=={version}",
        )  # fmt: skip
    if not archive.exists():
        raise SystemExit(f"peers: pip download of {name}=={version} did not give {archive.name}")
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(f"{prefix}/tests/")]
        if not members:
            raise SystemExit(f"peers: {archive.name} has no tests/")
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(staging, members=members, **kwargs)
    # Its own pytest configuration (none), so that pytest does not take this repository's
    # pyproject.toml as the suite's and the test ids start at the suite's folder.
    (staging / prefix / "pytest.ini").write_text("[pytest]\n")
    shutil.rmtree(target, ignore_errors=True)
    (staging / prefix).rename(target)
    shutil.rmtree(staging)
    return target


def environment() -> dict[str, str]:
    """The environment of both runs: none of the caller's OTEL_* settings, no exporter, and every
    instrumentor entry point but the bridge's disabled for the loader."""
    names = subprocess.run(
        [
            BIN / "python",
            "-c",
            "from importlib.metadata import entry_points as e;"
            "print(','.join(sorted({p.name for p in e(group='opentelemetry_instrumentor')})))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    others = [n for n in names.split(",") if n and n != "otel_portkey"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and k != "PYTHONPATH"}
    env.update(
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=",".join(others),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


ATTACHED = """
import importlib
from otel_portkey import PortkeyInstrumentor
from otel_portkey._otel.client_hooks import CLIENTS
assert PortkeyInstrumentor().is_instrumented_by_opentelemetry, "PortkeyInstrumentor was not loaded"
for client in CLIENTS:
    cls = getattr(importlib.import_module(client.module), client.instrumentor)
    assert hasattr(cls.__dict__.get("instrument"), "__wrapped__"), f"{client.name}: instrument() not wrapped"
    assert not cls().is_instrumented_by_opentelemetry, f"{client.name} was instrumented by the loader"
"""


def check_attached(env: dict[str, str]) -> None:
    """Under ``opentelemetry-instrument`` with ``env``, the bridge is installed and has wrapped
    every client instrumentor's ``instrument()``, and no client is instrumented yet: else the
    "with" runs would not test what they claim."""
    cmd = [BIN / "opentelemetry-instrument", BIN / "python", "-c", ATTACHED]
    done = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"peers: the bridge is not attached under opentelemetry-instrument:\n{done.stderr}")


def outcomes(report: Path) -> dict[str, str]:
    """test id → passed, failed or skipped, from pytest's JUnit XML report."""
    result = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        test_id = f"{case.get('classname')}::{case.get('name')}"
        tags = {child.tag for child in case}
        if tags & {"failure", "error"}:
            outcome = "failed"
        elif "skipped" in tags:
            outcome = "skipped"
        else:
            outcome = "passed"
        if result.get(test_id) != "failed":  # a test with a teardown error counts as failed
            result[test_id] = outcome
    return result


def pytest_run(suite: str, folder: Path, mode: str, env: dict[str, str]) -> tuple[dict[str, str], str]:
    logs = VENV / "logs"
    logs.mkdir(exist_ok=True)
    report = logs / f"{suite}-{mode}.xml"
    report.unlink(missing_ok=True)
    cmd = [str(BIN / "python"), "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider"]
    cmd += ["-o", f"timeout={TEST_TIMEOUT}", f"--junitxml={report}", "-o", "junit_family=xunit2"]
    if mode == "with":
        cmd = [str(BIN / "opentelemetry-instrument"), *cmd]
    with open(logs / f"{suite}-{mode}.log", "w") as out:
        code = subprocess.run(cmd, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    if code not in (0, 1) or not report.exists():
        tail = (logs / f"{suite}-{mode}.log").read_text().splitlines()[-30:]
        return {}, f"pytest exited with {code}:\n    " + "\n    ".join(tail)
    return outcomes(report), ""


def counts(result: dict[str, str]) -> str:
    values = list(result.values())
    return "/".join(str(values.count(o)) for o in ("passed", "failed", "skipped"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", action="append", choices=SUITES, help="only this suite (repeatable)")
    args = parser.parse_args()
    suites = args.suite or list(SUITES)
    started = time.monotonic()
    pins = pinned()
    missing = [distribution(s) for s in SUITES if distribution(s) not in pins]
    if missing:
        log(f"constraints.txt pins no version of {', '.join(missing)}")
        return 1
    install(pins)
    folders = {s: unpack(s, pins[distribution(s)]) for s in suites}
    env = environment()
    check_attached(env)
    log(f"running {len(suites)} suites twice, two runs at a time (logs in {VENV.name}/logs)")
    # Two runs at once, never two of one suite: aiohttp-client's tests serve on a fixed port (5000).
    locks = {s: threading.Lock() for s in suites}

    def job(suite: str, mode: str) -> tuple[dict[str, str], str]:
        with locks[suite]:
            return pytest_run(suite, folders[suite], mode, env)

    jobs = [(s, m) for m in MODES for s in suites]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {(s, m): pool.submit(job, s, m) for s, m in jobs}
        results = {key: future.result() for key, future in futures.items()}

    ok = True
    rows = [("suite", "version", "without p/f/s", "with p/f/s", "same")]
    notes = []
    for suite in suites:
        (plain, plain_error), (bridged, bridged_error) = results[(suite, "without")], results[(suite, "with")]
        for mode, error in (("without", plain_error), ("with", bridged_error)):
            if error:
                notes.append(f"{suite} ({mode} the bridge): {error}")
        same = not plain_error and not bridged_error and bool(plain) and plain == bridged
        ok &= same
        rows.append(
            (suite, pins[distribution(suite)], counts(plain), counts(bridged), "yes" if same else "NO")
        )
        for test_id in sorted(set(plain) | set(bridged)):
            before, after = plain.get(test_id, "absent"), bridged.get(test_id, "absent")
            if before != after:
                notes.append(f"{suite}: {test_id}: {before} without the bridge, {after} with it")
            elif before == "failed":
                notes.append(f"{suite}: {test_id}: fails without the bridge too (not a difference)")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print()
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    for note in notes:
        print(f"  - {note}")
    print(f"\npeers: {'same results' if ok else 'DIFFERENT results'} with and without the bridge "
          f"({time.monotonic() - started:.0f} s)")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
