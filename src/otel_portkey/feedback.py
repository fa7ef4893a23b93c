"""``record_feedback(...)``: Portkey feedback for the current OTel trace, through the portkey-ai SDK."""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from typing import Any, Final

from opentelemetry import trace

from ._contract.ids import format_trace_id
from ._contract.metadata import sanitise
from ._otel.kept_trace_ids import portkey_trace_ids
from .config import usable_api_key
from .environment_variables import OTEL_PORTKEY_FEEDBACK_BASE_URL, PORTKEY_API_KEY

DEFAULT_FEEDBACK_BASE_URL: Final = "https://api.portkey.ai/v1"


def _request(
    value: int,
    weight: float,
    metadata: Mapping[str, object] | None,
    trace_id: str | None,
    api_key: str | None,
    base_url: str | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validated client options and ``feedback.create`` arguments; raises ``ValueError`` on bad input."""
    if isinstance(value, bool) or not isinstance(value, int) or not -10 <= value <= 10:
        raise ValueError(f"feedback value must be an integer from -10 to 10, not {value!r}")
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not 0 <= float(weight) <= 1:
        raise ValueError(f"feedback weight must be a number from 0 to 1, not {weight!r}")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise ValueError("feedback metadata must be a mapping of keys to values")
    key = usable_api_key(api_key or os.environ.get(PORTKEY_API_KEY))
    if not key:
        raise ValueError(f"record_feedback needs a Portkey API key: set {PORTKEY_API_KEY} or pass api_key=")
    arguments: dict[str, Any] = {
        "trace_id": trace_id or current_portkey_trace_id(),
        "value": value,
        "weight": float(weight),
    }
    if metadata:
        arguments["metadata"] = sanitise(metadata)
    client = {
        "api_key": key,
        "base_url": base_url or os.environ.get(OTEL_PORTKEY_FEEDBACK_BASE_URL) or DEFAULT_FEEDBACK_BASE_URL,
    }
    return client, arguments


def current_portkey_trace_id() -> str:
    """The Portkey trace id of the current OTel trace: the caller's own id if the bridge kept one."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        raise ValueError("record_feedback needs a trace: call it inside a span, or pass trace_id=")
    otel_trace_id = format_trace_id(context.trace_id)
    return portkey_trace_ids.get(otel_trace_id) or otel_trace_id


def _portkey() -> Any:
    try:
        import portkey_ai
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "record_feedback needs the portkey-ai SDK: pip install 'otel-portkey[portkey]'"
        ) from error
    return portkey_ai


def record_feedback(
    value: int,
    weight: float = 1.0,
    metadata: Mapping[str, object] | None = None,
    trace_id: str | None = None,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
) -> Any:
    """Send feedback (``value`` -10..10, ``weight`` 0..1) for the current trace; return Portkey's answer.

    ``trace_id`` defaults to the current OTel trace (or the caller's own Portkey trace id for it,
    when the ``respect`` policy kept one). ``api_key`` defaults to ``PORTKEY_API_KEY``, ``base_url``
    to ``OTEL_PORTKEY_FEEDBACK_BASE_URL`` or ``https://api.portkey.ai/v1``.
    Raises ``ValueError`` on bad input.
    """
    client, arguments = _request(value, weight, metadata, trace_id, api_key, base_url)
    with _portkey().Portkey(**client) as portkey:
        return portkey.feedback.create(**arguments)


async def record_feedback_async(
    value: int,
    weight: float = 1.0,
    metadata: Mapping[str, object] | None = None,
    trace_id: str | None = None,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
) -> Any:
    """The async form of :func:`record_feedback`."""
    client, arguments = _request(value, weight, metadata, trace_id, api_key, base_url)
    async with _portkey().AsyncPortkey(**client) as portkey:
        return await portkey.feedback.create(**arguments)
