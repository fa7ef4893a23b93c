"""Loopback peers shared by the CLI and the tests: the scripted model, the pinned OSS gateway, the
recording hop, OTLP receivers, the Portkey stand-in and the two gateway readings. Public through
``otel_portkey.testing``."""
