"""Hostile input on every surface the bridge reads, fuzzed: request headers a caller set,
gateway response headers, and settings from the environment.

"Never raises" is guaranteed by the hooks' guards; these tests ask more: that the bridge does
not even fail internally (no guard is hit), and that no header it writes could inject anything.
"""

import httpx
import httpx2
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from opentelemetry.instrumentation.httpx import RequestInfo, ResponseInfo
from opentelemetry.sdk.trace import TracerProvider

from direct_hooks import DirectHooks
from otel_portkey import PortkeySpanProcessor
from otel_portkey._contract.call import MAX_ATTRIBUTE_CHARS
from otel_portkey._otel import bridge as bridge_module
from otel_portkey._otel import client_hooks
from otel_portkey.config import PortkeySettings

GATEWAY = "http://gateway.test:8787"
PROVIDER = TracerProvider()
PROCESSOR = PortkeySpanProcessor()
PROVIDER.add_span_processor(PROCESSOR)
TRACER = PROVIDER.get_tracer("fuzz")

portkey_names = st.sampled_from(
    [
        "x-portkey-trace-id",
        "X-Portkey-Span-Id",
        "x-portkey-parent-span-id",
        "x-portkey-span-name",
        "x-portkey-metadata",
        "x-portkey-config",
        "x-portkey-provider",
        "x-portkey-api-key",
    ]
)
any_names = portkey_names | st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True)
any_text = (
    st.text(max_size=300)
    | st.text(alphabet='\r\n\x00 {}[]":,\\', max_size=50)
    | st.text(min_size=300, max_size=3000)
)
any_bytes = st.binary(max_size=300) | st.binary(min_size=5000, max_size=20000)


@pytest.fixture(autouse=True)
def failures(monkeypatch):
    failures = []

    def report(where, error):
        failures.append((where, repr(error)))

    for module in (bridge_module, client_hooks):
        monkeypatch.setattr(module, "report_once", report)
    return failures


def written(before, after):
    return [item for item in after if item not in before]


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    st.lists(st.tuples(any_names, any_text), max_size=8),
    st.sampled_from(["respect", "override"]),
    st.sampled_from([httpx, httpx2]),
)
def test_any_caller_headers(failures, caller, policy, module):
    bridge = DirectHooks(PortkeySettings.from_env({}, gateway_urls=[GATEWAY], trace_id_policy=policy))
    try:
        request = module.Request("POST", f"{GATEWAY}/v1/chat/completions", headers=caller)
    except UnicodeEncodeError:
        assume(False)  # httpx itself refuses non-ASCII header values: no app can send these
    before = list(request.headers.raw)
    with TRACER.start_as_current_span("caller"), TRACER.start_as_current_span("POST") as span:
        info = RequestInfo(b"POST", request.url, request.headers, request.stream, request.extensions)
        bridge.request_hook(span, info)
        attributes = dict(span.attributes)
    assert failures == []
    assert all(len(v) <= MAX_ATTRIBUTE_CHARS for v in attributes.values() if isinstance(v, str))
    for name, value in written(before, request.headers.raw):
        assert name.startswith(b"x-portkey-")
        assert all(0x20 <= byte <= 0x7E for byte in value), (name, value)
    for name, _ in before:  # nothing the caller set was removed
        assert name in [n for n, _ in request.headers.raw]


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    st.lists(
        st.tuples(
            portkey_names.map(str.encode)
            | st.sampled_from(
                [
                    b"x-portkey-retry-attempt-count",
                    b"x-portkey-cache-status",
                    b"content-type",
                    b"x-portkey-gateway-exception",
                ]
            ),
            any_bytes,
        ),
        max_size=10,
    )
)
def test_any_gateway_response_headers(failures, answer):
    bridge = DirectHooks(PortkeySettings.from_env({}, gateway_urls=[GATEWAY]))
    request = httpx.Request("POST", f"{GATEWAY}/v1/chat/completions")
    response = httpx.Response(200, headers=answer)
    with TRACER.start_as_current_span("POST") as span:
        info = RequestInfo(b"POST", request.url, request.headers, request.stream, request.extensions)
        bridge.request_hook(span, info)
        bridge.response_hook(
            span, info, ResponseInfo(200, response.headers, response.stream, response.extensions)
        )
        attributes = dict(span.attributes)
    assert failures == []
    for key, value in attributes.items():
        if isinstance(value, str):
            assert len(value) <= MAX_ATTRIBUTE_CHARS, key
            assert value.isprintable(), (key, value)  # no control character, escape or C1 byte
    if "portkey.retry.attempt_count" in attributes:
        assert attributes["portkey.retry.attempt_count"] in range(-1, 100)


settings_env = st.fixed_dictionaries(
    {},
    optional={
        name: any_text
        for name in (
            "OTEL_PORTKEY_GATEWAY_URLS",
            "OTEL_PORTKEY_TRACE_ID_POLICY",
            "OTEL_PORTKEY_METADATA",
            "OTEL_PORTKEY_JAEGER_UI_URL",
            "OTEL_PORTKEY_TRACE_URL_TEMPLATE",
            "PORTKEY_GATEWAY_URL",
            "PORTKEY_BASE_URL",
        )
    },
)


@settings(max_examples=500, deadline=None)
@given(settings_env)
def test_any_settings_give_safe_defaults(env):
    config = PortkeySettings.from_env(env)
    assert config.trace_id_policy in ("respect", "override")
    assert all(prefix.startswith(("http://", "https://")) for prefix in config.gateway_prefixes)
    assert config.jaeger_ui_url is None or config.jaeger_ui_url.startswith(("http://", "https://"))
    assert config.trace_url_template is None or "{trace_id}" in config.trace_url_template
    for key, value in config.static_metadata:
        assert len(value) <= 128
        assert all(c >= " " for c in key + value)
