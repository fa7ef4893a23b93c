from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from otel_portkey import PortkeyInstrumentor, PortkeySpanProcessor, portkey_metadata
from otel_portkey._otel.sdk_internals import span_processors


def registered(provider):
    return [p for p in span_processors(provider) if isinstance(p, PortkeySpanProcessor)]


def processors(provider):
    """The provider's bridge processors that are switched on (one the bridge added stays
    registered, switched off, after uninstrument: the SDK cannot remove a processor)."""
    return [p for p in registered(provider) if p.enabled]


def test_every_span_in_a_metadata_block_carries_it(spans):
    provider = TracerProvider()
    processor = PortkeySpanProcessor()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    with (
        portkey_metadata(_user="u1", session="s1"),
        tracer.start_as_current_span("outer") as outer,
        tracer.start_as_current_span("inner") as inner,
    ):
        pass
    plain = tracer.start_span("plain")
    plain.end()
    for span in (outer, inner):
        assert span.attributes["portkey.metadata._user"] == "u1"
        assert span.attributes["portkey.metadata.session"] == "s1"
    assert not [k for k in plain.attributes if k.startswith("portkey.")]


def test_the_caller_of_each_http_call_is_its_parent_at_start_and_nothing_else_is_kept():
    import gc

    provider = TracerProvider()
    processor = PortkeySpanProcessor()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    for i in range(10_000):
        with tracer.start_as_current_span(f"chat {i}") as caller:
            with tracer.start_as_current_span("POST", kind=trace.SpanKind.CLIENT) as call:
                assert processor.caller_name(call) == f"chat {i}"
            assert processor.caller_name(caller) is None, "only CLIENT spans are tracked"
    del caller, call
    gc.collect()
    assert processor.tracked_calls == 0, "entries go with their spans"


def test_a_span_that_never_ends_keeps_only_its_own_entry():
    import gc

    provider = TracerProvider()
    processor = PortkeySpanProcessor()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("agent"):
        leaked = [tracer.start_span(f"POST {i}", kind=trace.SpanKind.CLIENT) for i in range(500)]
    assert processor.tracked_calls == 500
    del leaked
    gc.collect()
    assert processor.tracked_calls == 0


def test_the_instrumentor_adds_the_processor_and_takes_it_away_again(model_server):
    provider = trace.get_tracer_provider()
    assert processors(provider) == []
    for _ in range(5):
        PortkeyInstrumentor().instrument(gateway_urls=[f"http://127.0.0.1:{model_server.port}"])
        assert len(processors(provider)) == 1
        PortkeyInstrumentor().uninstrument()
        assert processors(provider) == []
    assert len(registered(provider)) <= 1, "the one the bridge added is reused, never a second one"


def test_a_processor_added_by_hand_is_reused():
    provider = TracerProvider()
    mine = PortkeySpanProcessor()
    provider.add_span_processor(mine)
    PortkeyInstrumentor().instrument(tracer_provider=provider)
    assert processors(provider) == [mine]
    PortkeyInstrumentor().uninstrument()
    assert processors(provider) == [mine], "the user's own processor stays"


def test_the_processor_never_raises_into_the_app(monkeypatch, caplog):
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from otel_portkey._otel import processor as processor_module

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(processor_module, "context_metadata", broken)
    provider = TracerProvider()
    provider.add_span_processor(PortkeySpanProcessor())
    exported = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    with caplog.at_level("WARNING"):
        for _ in range(2):
            with provider.get_tracer("t").start_as_current_span("still works"):
                pass
    assert [s.name for s in exported.get_finished_spans()] == ["still works"] * 2, "spans go on to export"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, "one warning, not one per span"
    assert "tagging a span with Portkey metadata failed (RuntimeError)" in warnings[0]
