"""otel-portkey: join OpenTelemetry traces and Portkey gateway logs."""

from .instrumentor import PortkeyInstrumentor
from .processor import PortkeySpanProcessor

__all__ = ["PortkeyInstrumentor", "PortkeySpanProcessor"]
