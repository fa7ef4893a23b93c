"""otel-portkey: join OpenTelemetry traces and Portkey gateway logs.

The public names are imported on first use (PEP 562), so ``import otel_portkey`` costs almost
nothing: the OTLP exporter, the instrumentation machinery and the SDKs load only when needed.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .context import portkey_metadata
    from .exporter import PortkeySpanExporter
    from .feedback import record_feedback, record_feedback_async
    from .instrumentor import PortkeyInstrumentor
    from .processor import PortkeySpanProcessor

_WHERE = {
    "PortkeyInstrumentor": ".instrumentor",
    "PortkeySpanExporter": ".exporter",
    "PortkeySpanProcessor": ".processor",
    "portkey_metadata": ".context",
    "record_feedback": ".feedback",
    "record_feedback_async": ".feedback",
}

__all__ = [
    "PortkeyInstrumentor",
    "PortkeySpanExporter",
    "PortkeySpanProcessor",
    "portkey_metadata",
    "record_feedback",
    "record_feedback_async",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'otel_portkey' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
