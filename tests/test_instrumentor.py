"""``PortkeyInstrumentor``: what it instruments by itself."""

import logging

import pytest
from opentelemetry.instrumentation.dependencies import DependencyConflict
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor, HTTPXClientInstrumentor

from otel_portkey import PortkeyInstrumentor
from otel_portkey._otel import instrumentor

pytestmark = pytest.mark.unit


def test_a_client_library_that_is_not_installed_is_not_instrumented(monkeypatch, caplog):
    """httpx absent (openai 3.x brings only httpx2): no instrumentation of it, and no warning.
    A fresh virtualenv with httpx really absent is checked by ``test_readme.py``."""
    real = instrumentor.get_dependency_conflicts

    def without_httpx(dependencies):
        if any(dep.replace(" ", "").startswith("httpx>") for dep in dependencies):
            return DependencyConflict("httpx >= 0.18.0")
        return real(dependencies)

    monkeypatch.setattr(instrumentor, "get_dependency_conflicts", without_httpx)
    with caplog.at_level(logging.WARNING):
        PortkeyInstrumentor().instrument()
    assert not HTTPXClientInstrumentor().is_instrumented_by_opentelemetry
    assert HTTPX2ClientInstrumentor().is_instrumented_by_opentelemetry
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_both_httpx_libraries_installed_are_both_instrumented():
    PortkeyInstrumentor().instrument()
    assert HTTPXClientInstrumentor().is_instrumented_by_opentelemetry
    assert HTTPX2ClientInstrumentor().is_instrumented_by_opentelemetry
