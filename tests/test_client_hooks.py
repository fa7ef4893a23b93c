"""The bridge's hooks reach the OTel HTTP client instrumentations in any order, through their
public ``instrument()``, and leave nothing behind."""

import logging

import httpx
import httpx2
import pytest
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor, HTTPXClientInstrumentor

from otel_portkey import PortkeyInstrumentor, PortkeySpanProcessor
from otel_portkey._otel import instrumentor as bridge_module
from otel_portkey._otel.sdk_internals import span_processors

from clients import post

INSTRUMENTORS = {"httpx": HTTPXClientInstrumentor, "httpx2": HTTPX2ClientInstrumentor}
MODULES = {"httpx": httpx, "httpx2": httpx2}


def transports(module):
    return (
        module.HTTPTransport.__dict__["handle_request"],
        module.AsyncHTTPTransport.__dict__["handle_async_request"],
    )


def same(these, those):
    """Identity, not equality: wrapt proxies compare equal to what they wrap."""
    return all(a is b for a, b in zip(these, those, strict=True))


def gateway(model):
    return [f"http://127.0.0.1:{model.port}"]


def assert_bridged_once(flavour, model, spans):
    spans.clear()
    for mode in ("sync", "async"):
        post(flavour, mode, f"http://127.0.0.1:{model.port}/v1/chat/completions")
        assert "x-portkey-trace-id" in model.received[-1].headers
    client_spans = [s for s in spans.all() if s.name == "POST"]
    assert len(client_spans) == 2, "exactly one HTTP span per call"


@pytest.mark.parametrize("flavour", ["httpx", "httpx2"])
def test_httpx_instrumented_before_the_bridge(model, spans, flavour):
    INSTRUMENTORS[flavour]().instrument()
    PortkeyInstrumentor().instrument(gateway_urls=gateway(model))
    assert_bridged_once(flavour, model, spans)


@pytest.mark.parametrize("flavour", ["httpx", "httpx2"])
def test_httpx_instrumented_after_the_bridge_as_opentelemetry_instrument_may_do(
    model, spans, flavour, caplog
):
    with caplog.at_level(logging.WARNING):
        bridge_module._auto_instrumentation_starting()
        PortkeyInstrumentor().instrument(gateway_urls=gateway(model))
        assert not INSTRUMENTORS[flavour]().is_instrumented_by_opentelemetry
        INSTRUMENTORS[flavour]().instrument()
        bridge_module._auto_instrumentation_finished()
    assert "already instrumented" not in caplog.text
    assert_bridged_once(flavour, model, spans)


@pytest.mark.parametrize("flavour", ["httpx", "httpx2"])
def test_httpx_never_instrumented_by_anyone_else(model, spans, flavour):
    bridge_module._auto_instrumentation_starting()
    PortkeyInstrumentor().instrument(gateway_urls=gateway(model))
    bridge_module._auto_instrumentation_finished()  # nobody loaded httpx: the bridge does it
    assert INSTRUMENTORS[flavour]().is_instrumented_by_opentelemetry
    assert_bridged_once(flavour, model, spans)


def test_instrumented_by_hand_without_httpx(model, spans):
    PortkeyInstrumentor().instrument(gateway_urls=gateway(model))
    for flavour in ("httpx", "httpx2"):
        assert_bridged_once(flavour, model, spans)


@pytest.mark.parametrize("flavour", ["httpx", "httpx2"])
def test_uninstrument_restores_the_clients_exactly(model, flavour):
    module = MODULES[flavour]
    pristine = transports(module)
    PortkeyInstrumentor().instrument(gateway_urls=gateway(model))
    assert not same(transports(module), pristine)
    PortkeyInstrumentor().uninstrument()
    assert same(transports(module), pristine)
    assert "instrument" not in INSTRUMENTORS[flavour].__dict__
    assert "uninstrument" not in INSTRUMENTORS[flavour].__dict__


@pytest.mark.parametrize("flavour", ["httpx", "httpx2"])
def test_uninstrument_keeps_httpx_instrumented_by_the_user_with_their_hooks(model, spans, flavour):
    seen = []

    def user_request_hook(span, request):
        seen.append(request.headers.get("x-portkey-trace-id"))

    INSTRUMENTORS[flavour]().instrument(request_hook=user_request_hook)
    theirs = transports(MODULES[flavour])
    PortkeyInstrumentor().instrument(gateway_urls=gateway(model))
    post(flavour, "sync", f"http://127.0.0.1:{model.port}/v1/chat/completions")
    assert seen == [None]  # the user's hook ran, before the bridge's
    assert "x-portkey-trace-id" in model.received[-1].headers

    PortkeyInstrumentor().uninstrument()
    assert INSTRUMENTORS[flavour]().is_instrumented_by_opentelemetry
    restored = transports(MODULES[flavour])
    assert [w._self_wrapper for w in restored] == [w._self_wrapper for w in theirs]
    post(flavour, "sync", f"http://127.0.0.1:{model.port}/v1/chat/completions")
    assert seen == [None, None]
    assert "x-portkey-trace-id" not in model.received[-1].headers


def test_100_cycles_leave_no_wrapper_hook_or_processor_behind(model, spans):
    pristine = {name: transports(module) for name, module in MODULES.items()}
    for _ in range(100):
        PortkeyInstrumentor().instrument(gateway_urls=gateway(model))
        PortkeyInstrumentor().uninstrument()
    assert all(same(transports(module), pristine[name]) for name, module in MODULES.items())
    assert all("instrument" not in cls.__dict__ for cls in INSTRUMENTORS.values())
    assert not any(cls().is_instrumented_by_opentelemetry for cls in INSTRUMENTORS.values())
    processors = [
        p for p in span_processors(trace.get_tracer_provider()) if isinstance(p, PortkeySpanProcessor)
    ]
    assert len(processors) <= 1, "the processor the bridge added is reused, never a second one"
    assert not [p for p in processors if p.enabled]
    post("httpx", "sync", f"http://127.0.0.1:{model.port}/v1/chat/completions")
    assert not [n for n in model.received[-1].headers if n.startswith("x-portkey-") or n == "traceparent"]


def test_the_entry_points_are_registered_under_their_own_names():
    from importlib.metadata import entry_points

    ours = {
        ep.name: ep.value
        for ep in entry_points(group="opentelemetry_instrumentor")
        if ep.value.startswith("otel_portkey")
    }
    assert ours == {"otel_portkey": "otel_portkey._otel.instrumentor:PortkeyInstrumentor"}
    assert "otel_portkey" in {ep.name for ep in entry_points(group="opentelemetry_pre_instrument")}
    assert "otel_portkey" in {ep.name for ep in entry_points(group="opentelemetry_post_instrument")}


def test_an_httpx_flavour_the_user_disabled_stays_off(model, spans, monkeypatch, caplog):
    monkeypatch.setenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "httpx")
    with caplog.at_level(logging.WARNING):
        PortkeyInstrumentor().instrument(gateway_urls=gateway(model))
    assert not HTTPXClientInstrumentor().is_instrumented_by_opentelemetry
    assert HTTPX2ClientInstrumentor().is_instrumented_by_opentelemetry
    assert "so the bridge does not instrument it" in caplog.text


def test_a_failure_while_installing_leaves_nothing_and_raises_nothing(model, monkeypatch, caplog):
    from otel_portkey._otel import instrumentor as client_hooks  # where the wrapping is attached

    pristine = {name: transports(module) for name, module in MODULES.items()}
    textmap = propagate.get_global_textmap()
    attach = client_hooks.attach

    def attach_then_break():  # every instrumentor is wrapped, then something fails
        attach()
        raise RuntimeError("boom")

    monkeypatch.setattr(client_hooks, "attach", attach_then_break)
    with caplog.at_level(logging.WARNING):
        PortkeyInstrumentor().instrument(gateway_urls=gateway(model))
    assert "the bridge could not be installed (RuntimeError)" in caplog.text
    assert all(same(transports(module), pristine[name]) for name, module in MODULES.items())
    assert all("instrument" not in cls.__dict__ for cls in INSTRUMENTORS.values()), "no wrapper left"
    assert propagate.get_global_textmap() is textmap
    processors = span_processors(trace.get_tracer_provider())
    assert not [p for p in processors if isinstance(p, PortkeySpanProcessor) and p.enabled]
    assert not PortkeyInstrumentor().is_instrumented_by_opentelemetry

    monkeypatch.setattr(client_hooks, "attach", attach)  # whatever failed is gone: a retry works
    PortkeyInstrumentor().instrument(gateway_urls=gateway(model))
    assert PortkeyInstrumentor().is_instrumented_by_opentelemetry
    post("httpx", "sync", f"http://127.0.0.1:{model.port}/v1/chat/completions")
    assert "x-portkey-trace-id" in model.received[-1].headers


@pytest.mark.parametrize("how", ["instrument_client", "explicit transport"])
def test_a_client_instrumented_on_its_own_is_bridged_on_the_request_side(model, spans, monkeypatch, how):
    """``instrument_client(client)`` and an explicit OTel transport build the client's own wrapper
    from the hooks passed there; the propagator still sees the request, so it carries the ids. The
    gateway's answer is not read on such a client (README, "Calls not bridged?")."""
    from opentelemetry.instrumentation.httpx import SyncOpenTelemetryTransport

    monkeypatch.setenv(bridge_module.OTEL_PYTHON_DISABLED_INSTRUMENTATIONS, "httpx")
    PortkeyInstrumentor().instrument(gateway_urls=gateway(model))
    seen = []
    hook = lambda span, request: seen.append(1)  # noqa: E731
    if how == "instrument_client":
        client = httpx.Client()
        HTTPXClientInstrumentor.instrument_client(client, request_hook=hook)
    else:
        client = httpx.Client(transport=SyncOpenTelemetryTransport(httpx.HTTPTransport(), request_hook=hook))
    with client, trace.get_tracer("t").start_as_current_span("caller"):
        client.post(f"http://127.0.0.1:{model.port}/v1/chat/completions", json={"model": "m", "messages": []})
    sent = model.received[-1].headers
    assert seen == [1], "the client's own hook ran"
    (span,) = [s for s in spans.all() if s.kind == trace.SpanKind.CLIENT]
    assert sent["x-portkey-trace-id"] == format(span.context.trace_id, "032x")
    assert sent["x-portkey-parent-span-id"] == format(span.context.span_id, "016x")
    assert sent["x-portkey-span-name"] == "caller"
    assert "portkey.provider" not in span.attributes, "no response side on such a client"


# Each instrumentation's documented hook semantics, kept when the bridge composes its hooks with
# the user's (issue 18): a hook the instrumentation would not call is not called with the bridge
# either (the bridge's own hook still runs), and a user's hook that raises raises as it does
# without the bridge. `make test-peers` checks the same on the instrumentations' own test suites.
from unittest import mock  # noqa: E402

from clients_all import CLIENTS as ALL_CLIENTS  # noqa: E402

ASYNC_CALLS = {"httpx2 async"}  # the clients_all entries that send with an async client


class HookError(Exception):
    pass


def hook_keys(name):
    if name in ASYNC_CALLS:
        return "async_request_hook", "async_response_hook"
    return "request_hook", "response_hook"


def instrument_as_opentelemetry_instrument_does(model, instrumentor_class, **hooks):
    bridge_module._auto_instrumentation_starting()
    PortkeyInstrumentor().instrument(gateway_urls=gateway(model))
    instrumentor_class().instrument(**hooks)
    bridge_module._auto_instrumentation_finished()


def chat(model, call):
    model.add_response_headers({"x-portkey-provider": "openai"})
    with trace.get_tracer("t").start_as_current_span("app"):
        return call(f"http://127.0.0.1:{model.port}/v1/chat/completions", {}, {"model": "m", "messages": []})


def assert_bridged(model, spans):
    assert "x-portkey-trace-id" in model.received[-1].headers, "the bridge's request side ran"
    (span,) = [s for s in spans.all() if s.kind == trace.SpanKind.CLIENT]
    assert span.attributes["portkey.provider"] == "openai", "the bridge's response hook ran"


@pytest.mark.parametrize("flavour", ["httpx", "httpx2"])
def test_an_async_httpx_hook_that_is_not_a_coroutine_function_stays_ignored(model, spans, flavour):
    """httpx takes ``async_request_hook``/``async_response_hook`` only if they are coroutine
    functions and silently ignores anything else; with the bridge too."""
    seen = []

    def plain(span, *args):
        seen.append(args)

    instrument_as_opentelemetry_instrument_does(
        model, INSTRUMENTORS[flavour], async_request_hook=plain, async_response_hook=plain
    )
    model.add_response_headers({"x-portkey-provider": "openai"})
    with trace.get_tracer("t").start_as_current_span("app"):
        post(flavour, "async", f"http://127.0.0.1:{model.port}/v1/chat/completions")
    assert seen == []
    assert_bridged(model, spans)


@pytest.mark.parametrize("flavour", ["httpx", "httpx2"])
def test_coroutine_async_httpx_hooks_run_before_the_bridges(model, spans, flavour):
    seen = []

    async def request_hook(span, request):
        seen.append(("request", request.headers.get("x-portkey-trace-id")))

    async def response_hook(span, request, response):
        seen.append(("response", "portkey.provider" in span.attributes))

    instrument_as_opentelemetry_instrument_does(
        model, INSTRUMENTORS[flavour], async_request_hook=request_hook, async_response_hook=response_hook
    )
    model.add_response_headers({"x-portkey-provider": "openai"})
    with trace.get_tracer("t").start_as_current_span("app"):
        post(flavour, "async", f"http://127.0.0.1:{model.port}/v1/chat/completions")
    assert seen == [("request", None), ("response", False)], "the user's hooks ran first"
    assert_bridged(model, spans)


@pytest.mark.parametrize("name", list(ALL_CLIENTS))
def test_a_hook_that_is_not_callable_stays_ignored_by_every_client(model, spans, name):
    """Every instrumentation calls a hook only ``if callable(hook)``; a non-callable one is
    ignored, with the bridge as without it."""
    instrumentor_class, call = ALL_CLIENTS[name]
    hooks = dict.fromkeys(hook_keys(name), "not a hook")
    instrumentor_class().instrument(**hooks)  # without the bridge: ignored
    assert chat(model, call) == 200
    instrumentor_class().uninstrument()
    spans.clear()

    instrument_as_opentelemetry_instrument_does(model, instrumentor_class, **hooks)
    assert chat(model, call) == 200
    assert_bridged(model, spans)


@pytest.mark.parametrize("name", [n for n in ALL_CLIENTS if n not in ASYNC_CALLS])
def test_a_mock_hook_is_called_by_every_client(model, spans, name):
    """A ``Mock`` answers every attribute (the bridge's mark of its own composed hooks too): it is
    still the user's hook, and called."""
    instrumentor_class, call = ALL_CLIENTS[name]
    request_hook, response_hook = mock.Mock(), mock.Mock()
    instrument_as_opentelemetry_instrument_does(
        model, instrumentor_class, request_hook=request_hook, response_hook=response_hook
    )
    assert chat(model, call) == 200
    assert request_hook.call_count == 1
    assert response_hook.call_count >= 1  # aiohttp calls it on each end of the request it sees
    assert_bridged(model, spans)


def outcome_of_a_raising_hook(model, name, which, instrument):
    """Instrument ``name`` (with ``instrument``) with a hook that raises, make one call; returns
    (the exception it raised or None, whether the hook ran)."""
    instrumentor_class, call = ALL_CLIENTS[name]
    ran = []

    def raising(*args):
        ran.append(1)
        raise HookError(which)

    async def raising_async(*args):
        raising()

    key = hook_keys(name)[0 if which == "request" else 1]
    instrument(instrumentor_class, **{key: raising_async if name in ASYNC_CALLS else raising})
    try:
        chat(model, call)
    except Exception as error:  # whatever the client lets through
        raised = error
    else:
        raised = None
    instrumentor_class().uninstrument()
    return raised, bool(ran)


@pytest.mark.parametrize("which", ["request", "response"])
@pytest.mark.parametrize("name", list(ALL_CLIENTS))
def test_a_users_hook_that_raises_behaves_as_without_the_bridge(model, spans, name, which):
    without = outcome_of_a_raising_hook(model, name, which, lambda cls, **hooks: cls().instrument(**hooks))
    with_bridge = outcome_of_a_raising_hook(
        model,
        name,
        which,
        lambda cls, **hooks: instrument_as_opentelemetry_instrument_does(model, cls, **hooks),
    )
    assert without[1], "the hook ran without the bridge"
    assert with_bridge[1], "the hook ran with the bridge"
    assert type(with_bridge[0]) is type(without[0]), (with_bridge[0], without[0])
    assert str(with_bridge[0]) == str(without[0])
