"""Every environment variable otel-portkey reads, in one place (the README's Settings table).

OpenTelemetry's own variables come from ``opentelemetry.sdk.environment_variables``; the names
here are the bridge's and the Portkey SDKs'.
"""

from __future__ import annotations

from typing import Final

OTEL_PORTKEY_GATEWAY_URLS: Final = "OTEL_PORTKEY_GATEWAY_URLS"
"""Extra gateway base URLs, comma separated: a request whose URL starts with one is Portkey-bound."""

OTEL_PORTKEY_TRACE_ID_POLICY: Final = "OTEL_PORTKEY_TRACE_ID_POLICY"
"""``respect`` (default) or ``override`` a caller's own ``x-portkey-trace-id``."""

OTEL_PORTKEY_METADATA: Final = "OTEL_PORTKEY_METADATA"
"""Metadata for every gateway call, ``key=value`` pairs as in ``OTEL_RESOURCE_ATTRIBUTES``."""

OTEL_PORTKEY_JAEGER_UI_URL: Final = "OTEL_PORTKEY_JAEGER_UI_URL"
"""Jaeger UI base URL: each call's metadata gets ``jaeger_trace=<url>/trace/<trace id>``."""

OTEL_PORTKEY_TRACE_URL_TEMPLATE: Final = "OTEL_PORTKEY_TRACE_URL_TEMPLATE"
"""A URL with ``{trace_id}``: spans of gateway calls get ``portkey.trace.url``."""

OTEL_PORTKEY_TRUSTED_BAGGAGE_KEYS: Final = "OTEL_PORTKEY_TRUSTED_BAGGAGE_KEYS"
"""Baggage keys taken as Portkey metadata (none by default: baggage is untrusted input)."""

OTEL_PORTKEY_METRICS: Final = "OTEL_PORTKEY_METRICS"
"""``false`` turns the bridge's metrics off (``portkey.gateway.request.duration``,
``portkey.gateway.retries``); traces and headers stay as they are. On by default."""

OTEL_PORTKEY_INBOUND_TRACE_CONTEXT: Final = "OTEL_PORTKEY_INBOUND_TRACE_CONTEXT"
"""What an inbound request's ``traceparent`` does: ``continue`` (default, OTel's usual behaviour: the
service's spans, its gateway calls' Portkey trace and ``record_feedback`` join the caller's trace) or
``link`` (each inbound request starts a new trace, whose root span links to the caller's context):
for a service at a public edge, where any caller could otherwise choose the Portkey trace its calls
and feedback land in."""

OTEL_PORTKEY_FEEDBACK_BASE_URL: Final = "OTEL_PORTKEY_FEEDBACK_BASE_URL"
"""Where ``record_feedback`` posts (``<base>/feedback``)."""

OTEL_EXPORTER_PORTKEY_ENDPOINT: Final = "OTEL_EXPORTER_PORTKEY_ENDPOINT"
"""``PortkeySpanExporter``'s base URL (spans go to ``<base>/v1/traces``)."""

OTEL_EXPORTER_PORTKEY_CERTIFICATE: Final = "OTEL_EXPORTER_PORTKEY_CERTIFICATE"
"""A PEM file of the CA certificates ``PortkeySpanExporter`` trusts for Portkey's endpoint (a TLS
proxy of your own in front of it, say). Unset: the default trust store of ``requests`` (certifi, or
``REQUESTS_CA_BUNDLE``). ``OTEL_EXPORTER_OTLP_CERTIFICATE`` and ``OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE``
are your collector's and are never used for Portkey."""

OTEL_EXPORTER_PORTKEY_CLIENT_CERTIFICATE: Final = "OTEL_EXPORTER_PORTKEY_CLIENT_CERTIFICATE"
"""A PEM client certificate ``PortkeySpanExporter`` presents to Portkey's endpoint (mutual TLS), with
``OTEL_EXPORTER_PORTKEY_CLIENT_KEY`` unless the file holds the key too. Unset: no client certificate;
``OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`` / ``_TRACES_CLIENT_CERTIFICATE`` (your collector's) are never
presented to Portkey."""

OTEL_EXPORTER_PORTKEY_CLIENT_KEY: Final = "OTEL_EXPORTER_PORTKEY_CLIENT_KEY"
"""The PEM private key of ``OTEL_EXPORTER_PORTKEY_CLIENT_CERTIFICATE`` (ignored without it).
``OTEL_EXPORTER_OTLP_CLIENT_KEY`` / ``_TRACES_CLIENT_KEY`` (your collector's) are never used for Portkey."""

PORTKEY_API_KEY: Final = "PORTKEY_API_KEY"
"""Sent by ``PortkeySpanExporter`` and ``record_feedback`` as ``x-portkey-api-key``."""

PORTKEY_SDK_GATEWAY_URLS: Final = ("PORTKEY_GATEWAY_URL", "PORTKEY_BASE_URL", "PORTKEY_PROXY")
"""The Portkey SDKs' own gateway variables, read as gateway base URLs too."""

OTEL_PYTHON_DISABLED_INSTRUMENTATIONS: Final = "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"
"""opentelemetry-instrument's list of entry points not to load (the bridge respects it)."""

OTEL_PORTKEY_CACHE: Final = "OTEL_PORTKEY_CACHE"
"""Where the test components live (default ``~/.cache/otel-portkey``): OSS gateway, Jaeger, Collector."""

OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED: Final = "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED"
"""opentelemetry-instrument's switch for sending Python logging through OTel (doctor then checks the
logs exporter's endpoint too)."""
