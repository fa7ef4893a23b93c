"""``make clean-components`` (components/clean.sh) on cache folders made for the test: it removes
what ``make components`` made there and nothing else, and refuses folders that are not its cache."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from components import ROOT

pytestmark = pytest.mark.integration


def clean(cache: Path, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OTEL_PORTKEY_CACHE": str(cache)}
    if home is not None:
        env["HOME"] = str(home)
    return subprocess.run(
        ["make", "-s", "-C", str(ROOT), "clean-components"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def files(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


def test_it_removes_the_builds_and_their_caches_and_nothing_else(tmp_path):
    cache = tmp_path / "otel-portkey"
    for name in ("bin/otelcol-0.161.0", "bin/otelcol-0.161.0.stamp", "build/otelcol/main.go", ".build.lock"):
        (cache / name).parent.mkdir(parents=True, exist_ok=True)
        (cache / name).write_text("x" * 1000)
    module = cache / "go/pkg/mod/example.com/m@v1/m.go"
    module.parent.mkdir(parents=True)
    module.write_text("package m")
    module.chmod(0o444)
    module.parent.chmod(0o555)  # Go's module cache is read-only
    gateway = cache / "gateway-1.15.2-abc def" / "package.json"  # a space in a name is no danger
    gateway.parent.mkdir()
    gateway.write_text("{}")
    (cache / "notes.txt").write_text("mine")
    (cache / "abc").write_text("mine too")  # what splitting "gateway-... abc def" would name
    run = clean(cache)
    assert run.returncode == 0, run.stderr
    assert files(cache) == {"notes.txt", "abc"}
    assert run.stdout.startswith(
        f"make clean-components: removed bin build go .build.lock gateway-1.15.2-abc def from {cache} ("
    )
    assert run.stdout.rstrip().endswith("freed)")


def test_a_folder_it_did_not_make_is_left_alone(tmp_path):
    other = tmp_path / "usr-local"
    (other / "bin").mkdir(parents=True)
    (other / "bin" / "tool").write_text("#!/bin/sh")
    (other / "go").mkdir()
    run = clean(other)
    assert run.returncode != 0
    assert "holds nothing make components made" in run.stdout
    assert files(other) == {"bin", "bin/tool", "go"}
    fake_home = tmp_path / "home"  # never the real one: were the guard broken, this would clean it
    (fake_home / "bin").mkdir(parents=True)
    (fake_home / "bin" / "tool.stamp").write_text("mine")
    home = clean(fake_home, home=fake_home)
    assert home.returncode != 0
    assert files(fake_home) == {"bin", "bin/tool.stamp"}
    assert "is / or your home folder: not cleaning it" in home.stdout
    missing = clean(tmp_path / "missing")
    assert missing.returncode == 0
    assert "does not exist, nothing to remove" in missing.stdout
    emptied = tmp_path / "emptied"
    (emptied / "bin").mkdir(parents=True)
    (emptied / "bin" / "jaeger-2.13.0.stamp").write_text("stamp")
    assert clean(emptied).returncode == 0
    assert not emptied.exists(), "a cache folder left empty is removed"
