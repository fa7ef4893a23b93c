"""A pytest plugin for ``make mutation`` runs only (pyproject.toml, ``[tool.mutmut]``).

mutmut runs the tests of every mutant in a process forked from one that has already run them,
and its test selection comes from a run in which each test records the functions it reaches:

* Memos: ``call._merged_metadata`` and ``call.safe_header_value`` are ``functools.lru_cache``'d.
  A memo filled by an earlier test (or by the process the mutant's run was forked from) answers
  without calling the function, so neither the mutant nor anything it calls (``metadata.merge``)
  would run, and the test would not be recorded as reaching them. Every memo of the contract's
  modules (the mutants' own copies included) is emptied before each test.
* Hypothesis' example database: a mutant's failing example, saved, would be replayed for the
  mutants run after it, so the score would depend on the order mutants happen to run in. Off;
  with ``--hypothesis-seed=0`` every mutant meets the same examples.
"""

from __future__ import annotations

import sys

import pytest
from hypothesis import settings

CONTRACT = "otel_portkey._contract"


def _without_example_database() -> None:
    current = settings.default
    if current is not None and current.database is not None:
        settings.register_profile("otel-portkey-mutation", parent=current, database=None)
        settings.load_profile("otel-portkey-mutation")


def pytest_configure(config: pytest.Config) -> None:
    _without_example_database()  # after the conftest's own profile, loaded as it is imported


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _without_example_database()  # in case a conftest loaded its profile again
    for name, module in list(sys.modules.items()):
        if module is None or not (name == CONTRACT or name.startswith(CONTRACT + ".")):
            continue
        for value in list(vars(module).values()):
            clear = getattr(value, "cache_clear", None)
            if callable(clear) and str(getattr(value, "__module__", "")).startswith(CONTRACT):
                clear()
