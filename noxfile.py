"""The unit tests on every Python that pyproject.toml's requires-python claims (3.10 to 3.13).

    nox -s unit                 # every version; `make test-pythons` runs 3.10, 3.12 and 3.13
    nox -s unit-3.10 -- -x      # one version; arguments after -- go to pytest
    nox -R -s unit-3.12         # reuse the session's virtualenv, skip the install (local reruns)

Each session installs the project with its dev extra, pinned by constraints.txt; on 3.10, by
constraints-py310.txt over constraints.txt (the pins with no 3.10 release replaced by the newest
version that has one). Interpreters are found on PATH as python3.X, never downloaded.
"""

from __future__ import annotations

import re
from pathlib import Path

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]

nox.options.sessions = ["unit"]
nox.options.download_python = "never"
nox.options.error_on_missing_interpreters = True
nox.options.error_on_external_run = True

ROOT = Path(__file__).parent
# Per Python, a file of pins layered over constraints.txt: its names replace constraints.txt's.
OVERRIDES = {"3.10": ROOT / "constraints-py310.txt"}
PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==")


def _name(line: str) -> str | None:
    """The normalized (PEP 503) project name a constraint line pins, or None for other lines."""
    match = PIN.match(line)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else None


def constraints(session: nox.Session) -> list[str]:
    """pip's -c options for the session's Python."""
    base = ROOT / "constraints.txt"
    overrides = OVERRIDES.get(str(session.python))
    if overrides is None:
        return ["-c", str(base)]
    replaced = {_name(line) for line in overrides.read_text().splitlines()} - {None}
    rest = Path(session.virtualenv.location) / "constraints-rest.txt"
    rest.write_text(
        "".join(line + "\n" for line in base.read_text().splitlines() if _name(line) not in replaced)
    )
    return ["-c", str(overrides), "-c", str(rest)]


@nox.session(python=PYTHONS)
def unit(session: nox.Session) -> None:
    """pytest -m unit: no component, no child process."""
    session.install(*constraints(session), "-e", ".[dev]")
    session.run("python", "-m", "pip", "check")
    session.run("pytest", "-m", "unit", "-p", "no:cacheprovider", "-q", *session.posargs)
