"""``PortkeySpanExporter``: the OTLP/HTTP span exporter, configured for Portkey's OTLP endpoint.

Entry point ``portkey`` (group ``opentelemetry_traces_exporter``), so
``OTEL_TRACES_EXPORTER=otlp,portkey`` sends every span to a collector and to Portkey.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, Final

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_HEADERS,
    OTEL_EXPORTER_OTLP_TRACES_HEADERS,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.util.re import parse_env_headers

from .config import API_KEY_ENV, usable_api_key

ENDPOINT_ENV: Final = "OTEL_EXPORTER_PORTKEY_ENDPOINT"
DEFAULT_ENDPOINT: Final = "https://api.portkey.ai/v1/otel"
API_KEY_HEADER: Final = "x-portkey-api-key"
TRACES_PATH: Final = "/v1/traces"

_log = logging.getLogger(__name__)


def traces_url(base: str) -> str:
    """``<base>/v1/traces`` (a base that already ends with it is kept)."""
    base = base.strip().rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


class PortkeySpanExporter(OTLPSpanExporter):
    """OTLP/HTTP protobuf to Portkey's ``<endpoint>/v1/traces``, authenticated by ``x-portkey-api-key``.

    ``endpoint`` defaults to ``OTEL_EXPORTER_PORTKEY_ENDPOINT`` or ``https://api.portkey.ai/v1/otel``,
    ``api_key`` to ``PORTKEY_API_KEY``; timeout and compression follow ``OTEL_EXPORTER_OTLP_TRACES_*``
    and ``OTEL_EXPORTER_OTLP_*`` as for any OTLP exporter. Headers meant for your collector
    (``OTEL_EXPORTER_OTLP_HEADERS``) are not sent to Portkey. Without an API key it warns once,
    naming the variable, and drops spans instead of sending them; the application runs on.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        self._api_key = usable_api_key(api_key or os.environ.get(API_KEY_ENV))
        self.dropped_spans = 0  # spans Portkey did not accept: no key, endpoint down or refusing
        base = endpoint or os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT
        sent_headers = dict(headers or {})
        if self._api_key is not None:
            sent_headers[API_KEY_HEADER] = self._api_key
        else:
            _log.warning(
                "otel-portkey: PortkeySpanExporter has no API key: set %s; spans for Portkey are dropped",
                API_KEY_ENV,
            )
        super().__init__(endpoint=traces_url(base), headers=sent_headers, **kwargs)
        self._keep_collector_headers_home(sent_headers)

    def _keep_collector_headers_home(self, sent_headers: Mapping[str, str]) -> None:
        """Drop headers that came from ``OTEL_EXPORTER_OTLP_(TRACES_)HEADERS``.

        The OTLP exporter merges those into every instance's headers; under
        ``OTEL_TRACES_EXPORTER=otlp,portkey`` they are the collector's credentials and must not
        reach Portkey.
        """
        headers = getattr(getattr(self, "_client", None), "_headers", None)
        if not isinstance(headers, dict):
            return
        from_env = parse_env_headers(
            os.environ.get(OTEL_EXPORTER_OTLP_TRACES_HEADERS)
            or os.environ.get(OTEL_EXPORTER_OTLP_HEADERS, ""),
            liberal=True,
        )
        ours = {name.lower() for name in sent_headers}
        for name in from_env:
            if name.lower() not in ours:
                headers.pop(name.lower(), None)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Send ``spans``; a failure (no key, endpoint down or refusing) is counted, never raised."""
        result = SpanExportResult.FAILURE if self._api_key is None else super().export(spans)
        if result is not SpanExportResult.SUCCESS:
            self.dropped_spans += len(spans)
        return result

    def __repr__(self) -> str:  # never show the key
        key = "set" if self._api_key else "missing"
        return f"PortkeySpanExporter(endpoint={self._endpoint!r}, api_key={key})"
