"""otel-portkey: join OpenTelemetry traces and Portkey gateway logs."""

from .context import portkey_metadata
from .feedback import record_feedback, record_feedback_async
from .instrumentor import PortkeyInstrumentor
from .processor import PortkeySpanProcessor

__all__ = [
    "PortkeyInstrumentor",
    "PortkeySpanProcessor",
    "portkey_metadata",
    "record_feedback",
    "record_feedback_async",
]
