"""Settings for the bridge: one frozen object, read once from arguments and the environment."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from ._contract.baggage_trust import BaggageTrust
from ._contract.call import TraceIdPolicy, gateway_prefix
from ._contract.metadata import parse_key_values, sanitise
from .environment_variables import (
    OTEL_PORTKEY_GATEWAY_URLS,
    OTEL_PORTKEY_INBOUND_TRACE_CONTEXT,
    OTEL_PORTKEY_JAEGER_UI_URL,
    OTEL_PORTKEY_METADATA,
    OTEL_PORTKEY_METRICS,
    OTEL_PORTKEY_TRACE_ID_POLICY,
    OTEL_PORTKEY_TRACE_URL_TEMPLATE,
    OTEL_PORTKEY_TRUSTED_BAGGAGE_KEYS,
    PORTKEY_API_KEY,
    PORTKEY_SDK_GATEWAY_URLS,
)

_log = logging.getLogger(__name__)

HOSTED_GATEWAY_URL: Final = "https://api.portkey.ai"
LOCAL_GATEWAY_URL: Final = "http://localhost:8787"
_POLICIES: Final = ("respect", "override")
InboundTraceContext = Literal["continue", "link"]
_INBOUND_TRACE_CONTEXTS: Final = ("continue", "link")


def usable_api_key(value: str | None) -> str | None:
    """The key with surrounding white space removed (keys mounted from files end in a newline),
    or None when it is empty or still holds a character a header cannot carry: sending it would
    make the HTTP client raise an error that quotes the key, and that error would be logged."""
    key = (value or "").strip()
    if key and not all("!" <= c <= "~" for c in key):
        _log.warning(
            "otel-portkey: the Portkey API key (%s or api_key=) holds characters an HTTP header cannot "
            "carry; it is not used",
            PORTKEY_API_KEY,
        )
        return None
    return key or None


@dataclass(frozen=True)
class PortkeySettings:
    """What the bridge needs to know; build it with :meth:`from_env`."""

    gateway_prefixes: tuple[str, ...] = field(
        default=(gateway_prefix(HOSTED_GATEWAY_URL), gateway_prefix(LOCAL_GATEWAY_URL))
    )
    trace_id_policy: TraceIdPolicy = "respect"
    # Metadata for every gateway call, already sanitised (``OTEL_PORTKEY_METADATA``).
    static_metadata: tuple[tuple[str, str], ...] = ()
    # Jaeger UI base URL: each call's metadata gets ``jaeger_trace`` = ``<url>/trace/<trace id>``.
    jaeger_ui_url: str | None = None
    # ``...{trace_id}...``: spans of gateway calls get ``portkey.trace.url``.
    trace_url_template: str | None = None
    # Baggage keys trusted as Portkey metadata (``OTEL_PORTKEY_TRUSTED_BAGGAGE_KEYS``); none by default.
    baggage_trust: BaggageTrust = field(default_factory=BaggageTrust)
    # The bridge's metrics (``OTEL_PORTKEY_METRICS``): on unless switched off.
    metrics: bool = True
    # An inbound request's trace context (``OTEL_PORTKEY_INBOUND_TRACE_CONTEXT``): ``continue`` its
    # trace (OTel's usual behaviour), or ``link``: start a new trace here, linked to the caller's.
    inbound_trace_context: InboundTraceContext = "continue"

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        gateway_urls: list[str] | tuple[str, ...] | None = None,
        trace_id_policy: str | None = None,
        metadata: Mapping[str, object] | None = None,
        jaeger_ui_url: str | None = None,
        trace_url_template: str | None = None,
        trusted_baggage_keys: str | None = None,
        metrics: bool | None = None,
        inbound_trace_context: str | None = None,
    ) -> PortkeySettings:
        """Read ``OTEL_PORTKEY_*`` (and the SDKs' gateway URL variables); arguments win.

        Invalid values never raise: they fall back to the default with one warning.
        """
        env = os.environ if environ is None else environ
        urls = [HOSTED_GATEWAY_URL, LOCAL_GATEWAY_URL]
        urls += [env[name] for name in PORTKEY_SDK_GATEWAY_URLS if env.get(name)]
        urls += env.get(OTEL_PORTKEY_GATEWAY_URLS, "").split(",")
        urls += list(gateway_urls or ())
        return cls(
            gateway_prefixes=_gateway_prefixes(urls),
            trace_id_policy=_policy(
                trace_id_policy if trace_id_policy is not None else env.get(OTEL_PORTKEY_TRACE_ID_POLICY)
            ),
            static_metadata=_static_metadata(env.get(OTEL_PORTKEY_METADATA, ""), metadata or {}),
            jaeger_ui_url=_url(
                jaeger_ui_url or env.get(OTEL_PORTKEY_JAEGER_UI_URL), OTEL_PORTKEY_JAEGER_UI_URL
            ),
            trace_url_template=_template(trace_url_template or env.get(OTEL_PORTKEY_TRACE_URL_TEMPLATE)),
            baggage_trust=BaggageTrust.parse(
                trusted_baggage_keys
                if trusted_baggage_keys is not None
                else env.get(OTEL_PORTKEY_TRUSTED_BAGGAGE_KEYS)
            ),
            metrics=metrics
            if metrics is not None
            else _switch(env.get(OTEL_PORTKEY_METRICS), OTEL_PORTKEY_METRICS),
            inbound_trace_context=_inbound_trace_context(
                inbound_trace_context
                if inbound_trace_context is not None
                else env.get(OTEL_PORTKEY_INBOUND_TRACE_CONTEXT)
            ),
        )


def _gateway_prefixes(urls: list[str]) -> tuple[str, ...]:
    prefixes: dict[str, None] = {}
    for url in urls:
        prefix = gateway_prefix(url)
        if not prefix:
            continue
        if not prefix.startswith(("http://", "https://")):
            _log.warning("otel-portkey: ignoring gateway URL %r: it must start with http:// or https://", url)
            continue
        prefixes[prefix] = None
    return tuple(prefixes)


def _policy(value: str | None) -> TraceIdPolicy:
    if value is None or not value.strip():
        return "respect"
    normalised = value.strip().lower()
    if normalised == "override":
        return "override"
    if normalised != "respect":
        _log.warning(
            "otel-portkey: %s=%r is not one of %s; using 'respect'",
            OTEL_PORTKEY_TRACE_ID_POLICY,
            value,
            _POLICIES,
        )
    return "respect"


def _inbound_trace_context(value: str | None) -> InboundTraceContext:
    normalised = (value or "").strip().lower()
    if normalised == "link":
        return "link"
    if normalised not in ("", "continue"):
        _log.warning(
            "otel-portkey: %s=%r is not one of %s; using 'continue' (inbound requests continue the "
            "caller's trace)",
            OTEL_PORTKEY_INBOUND_TRACE_CONTEXT,
            value,
            _INBOUND_TRACE_CONTEXTS,
        )
    return "continue"


def _static_metadata(text: str, overrides: Mapping[str, object]) -> tuple[tuple[str, str], ...]:
    entries, malformed = parse_key_values(text)
    if malformed:
        _log.warning(
            "otel-portkey: %s: ignoring %d item(s) that are not key=value",
            OTEL_PORTKEY_METADATA,
            len(malformed),
        )
    return tuple(sanitise({**entries, **overrides}).items())


def _switch(value: str | None, name: str) -> bool:
    """An on/off variable, on by default: ``false`` (or ``0``, ``off``, ``no``) switches it off."""
    text = (value or "").strip().lower()
    if text in ("", "true", "1", "on", "yes"):
        return True
    if text in ("false", "0", "off", "no"):
        return False
    _log.warning("otel-portkey: %s=%r is neither true nor false; leaving it on", name, value)
    return True


def _url(value: str | None, name: str) -> str | None:
    if not value or not value.strip():
        return None
    url = value.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        _log.warning("otel-portkey: ignoring %s=%r: it must start with http:// or https://", name, value)
        return None
    return url


def _template(value: str | None) -> str | None:
    if not value or not value.strip():
        return None
    if "{trace_id}" not in value:
        _log.warning("otel-portkey: ignoring %s: it must contain {trace_id}", OTEL_PORTKEY_TRACE_URL_TEMPLATE)
        return None
    return value.strip()
