import logging

from otel_portkey.config import PortkeySettings


def test_defaults_cover_the_hosted_and_the_local_gateway():
    settings = PortkeySettings.from_env({})
    assert settings.gateway_prefixes == ("https://api.portkey.ai", "http://localhost:8787")
    assert settings.trace_id_policy == "respect"


def test_gateway_urls_come_from_the_sdk_variables_ours_and_arguments():
    env = {
        "PORTKEY_GATEWAY_URL": "https://gw.internal.test/v1/",
        "PORTKEY_BASE_URL": "http://10.1.2.3:8787/v1",
        "OTEL_PORTKEY_GATEWAY_URLS": " http://a.test , ,http://b.test/",
    }
    settings = PortkeySettings.from_env(env, gateway_urls=["http://c.test"])
    assert settings.gateway_prefixes[2:] == (
        "https://gw.internal.test/v1",
        "http://10.1.2.3:8787/v1",
        "http://a.test",
        "http://b.test",
        "http://c.test",
    )


def test_invalid_urls_are_ignored_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="otel_portkey"):
        settings = PortkeySettings.from_env({"OTEL_PORTKEY_GATEWAY_URLS": "ftp://x,localhost:8787"})
    assert len(settings.gateway_prefixes) == 2
    assert "ftp://x" in caplog.text
    assert "localhost:8787" in caplog.text


def test_trace_id_policy_from_env_and_argument(caplog):
    assert (
        PortkeySettings.from_env({"OTEL_PORTKEY_TRACE_ID_POLICY": " Override "}).trace_id_policy == "override"
    )
    assert (
        PortkeySettings.from_env(
            {"OTEL_PORTKEY_TRACE_ID_POLICY": "override"}, trace_id_policy="respect"
        ).trace_id_policy
        == "respect"
    )
    with caplog.at_level(logging.WARNING, logger="otel_portkey"):
        assert (
            PortkeySettings.from_env({"OTEL_PORTKEY_TRACE_ID_POLICY": "clobber"}).trace_id_policy == "respect"
        )
    assert caplog.text.count("clobber") == 1


def test_static_metadata_and_back_link_settings(caplog):
    with caplog.at_level(logging.WARNING, logger="otel_portkey"):
        settings = PortkeySettings.from_env(
            {
                "OTEL_PORTKEY_METADATA": "team=ml,broken,_environment=prod%2Ceu",
                "OTEL_PORTKEY_JAEGER_UI_URL": "http://localhost:16686/",
                "OTEL_PORTKEY_TRACE_URL_TEMPLATE": "https://app.portkey.ai/logs?trace={trace_id}",
            },
            metadata={"team": "search"},
        )
    assert dict(settings.static_metadata) == {"team": "search", "_environment": "prod,eu"}
    assert settings.jaeger_ui_url == "http://localhost:16686"
    assert settings.trace_url_template == "https://app.portkey.ai/logs?trace={trace_id}"
    assert "not key=value" in caplog.text


def test_bad_back_link_settings_are_ignored_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="otel_portkey"):
        settings = PortkeySettings.from_env(
            {
                "OTEL_PORTKEY_JAEGER_UI_URL": "localhost:16686",
                "OTEL_PORTKEY_TRACE_URL_TEMPLATE": "https://x/{id}",
            }
        )
    assert settings.jaeger_ui_url is None
    assert settings.trace_url_template is None
    assert "OTEL_PORTKEY_JAEGER_UI_URL" in caplog.text
    assert "{trace_id}" in caplog.text


def test_portkey_proxy_names_a_gateway_whose_calls_are_bridged(model, spans, monkeypatch):
    """``PORTKEY_PROXY`` (a Portkey SDK variable) makes calls to that URL Portkey-bound, end to end."""
    import httpx

    from otel_portkey import PortkeyInstrumentor

    url = f"http://127.0.0.1:{model.port}/v1/chat/completions"
    PortkeyInstrumentor().instrument()
    httpx.post(url, json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    assert "x-portkey-trace-id" not in model.received[-1].headers, "not a gateway without the variable"
    PortkeyInstrumentor().uninstrument()

    monkeypatch.setenv("PORTKEY_PROXY", f"http://127.0.0.1:{model.port}")
    PortkeyInstrumentor().instrument()
    httpx.post(url, json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    sent = model.received[-1].headers
    (span,) = [s for s in spans.http() if s.attributes["portkey.span_id"] == sent["x-portkey-span-id"]]
    assert sent["x-portkey-trace-id"] == format(span.context.trace_id, "032x")
    assert sent["x-portkey-parent-span-id"] == format(span.context.span_id, "016x")


def test_trusted_baggage_keys_from_env_and_argument():
    from otel_portkey._contract.baggage_trust import BaggageTrust

    assert not PortkeySettings.from_env({}).baggage_trust, "no baggage is trusted by default"
    env = {"OTEL_PORTKEY_TRUSTED_BAGGAGE_KEYS": "portkey.metadata.*,enduser.id"}
    assert PortkeySettings.from_env(env).baggage_trust == BaggageTrust(
        frozenset({"enduser.id"}), ("portkey.metadata.",)
    )
    assert not PortkeySettings.from_env(env, trusted_baggage_keys="").baggage_trust, "the argument wins"
