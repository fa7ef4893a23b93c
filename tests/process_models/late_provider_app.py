"""The bridge instrumented before the app sets its SDK TracerProvider, in one process, no
``opentelemetry-instrument``: ``python late_provider_app.py after|before``.

``after`` is gunicorn's ``post_fork`` pattern (OpenTelemetry's fork-process-model docs): the app
module calls ``PortkeyInstrumentor().instrument()`` at import (in gunicorn's master, where no SDK
provider is set yet), and the worker sets its ``TracerProvider`` later. ``before`` is the same app
with the provider set first, the order the bridge has always served: the control.

One call, inside ``portkey_metadata(_user=..., session=...)`` and a span named ``chat gpt-4o`` (what
the GenAI instrumentations name a chat call). The provider exports over OTLP/HTTP
(``OTEL_EXPORTER_OTLP_ENDPOINT``) and is shut down before exit. Prints ``{"label", "status"}``.
"""

from __future__ import annotations

import json
import os
import sys

import httpx
from gateway_call import chat
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_portkey import PortkeyInstrumentor, portkey_metadata


def sdk_provider() -> TracerProvider:
    provider = TracerProvider(resource=Resource.create())  # service.name from OTEL_SERVICE_NAME
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def main(order: str) -> None:
    provider = sdk_provider() if order == "before" else None
    PortkeyInstrumentor().instrument()  # the app module's import, in gunicorn's master
    if provider is None:
        provider = sdk_provider()  # gunicorn's post_fork, in the worker
    tracer = trace.get_tracer("process_models.late_provider_app")
    label = f"{os.environ['OTEL_SERVICE_NAME']}-late"
    with (
        portkey_metadata(_user="late-user", session="post-fork"),
        tracer.start_as_current_span("chat gpt-4o", attributes={"test.label": label}),
        httpx.Client(timeout=30) as client,
    ):
        status = chat(client, label)
    provider.shutdown()
    print(json.dumps({"label": label, "status": status}))


if __name__ == "__main__":
    main(sys.argv[1])
