"""otel-portkey: join OpenTelemetry traces and Portkey gateway logs.

The public names are imported on first use (PEP 562), so ``import otel_portkey`` costs almost
nothing: the OTLP exporter, the instrumentation machinery and the SDKs load only when needed.
Everything else lives in private packages: ``_contract`` (the pure Portkey contract), ``_otel`` (the
OpenTelemetry side: hooks, propagator, processor), ``_cli`` and ``_peers`` (the servers that
``otel_portkey.testing`` makes public).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._otel.instrumentor import PortkeyInstrumentor
    from ._otel.processor import PortkeySpanProcessor, portkey_metadata
    from .exporter import PortkeySpanExporter
    from .feedback import record_feedback, record_feedback_async

_WHERE = {
    "PortkeyInstrumentor": "._otel.instrumentor",
    "PortkeySpanExporter": ".exporter",
    "PortkeySpanProcessor": "._otel.processor",
    "portkey_metadata": "._otel.processor",
    "record_feedback": ".feedback",
    "record_feedback_async": ".feedback",
}

__all__ = [
    "PortkeyInstrumentor",
    "PortkeySpanExporter",
    "PortkeySpanProcessor",
    "__version__",
    "portkey_metadata",
    "record_feedback",
    "record_feedback_async",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":  # read from the installed metadata on first use (importlib.metadata is slow)
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("otel-portkey")
        except PackageNotFoundError:  # a source tree that was never installed
            value = "0+unknown"
        globals()[name] = value
        return value
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'otel_portkey' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
