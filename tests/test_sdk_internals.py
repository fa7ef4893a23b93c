"""The SDK internals the bridge reads (``_otel/sdk_internals.py``): each layout is there in every
pinned version (these fail loudly the day one changes), and each fallback works."""

import pytest
from opentelemetry.sdk.trace import TracerProvider

from otel_portkey import PortkeyInstrumentor, PortkeySpanProcessor
from otel_portkey._otel import processor, sdk_internals

pytestmark = pytest.mark.unit


def test_the_layouts_are_there_in_the_pinned_versions():
    assert sdk_internals._processors_layout()


def test_importing_the_package_makes_no_tracer_provider():
    """The probes run on the SDK's own parts, never on a provider (which detects resources and
    registers an exit handler)."""
    import gc

    from opentelemetry.sdk.trace import TracerProvider

    gc.collect()
    before = sum(isinstance(o, TracerProvider) for o in gc.get_objects())
    sdk_internals._processors_layout()
    gc.collect()
    assert sum(isinstance(o, TracerProvider) for o in gc.get_objects()) == before


def test_the_processors_of_a_provider_are_read_not_written():
    provider = TracerProvider()
    mine = PortkeySpanProcessor()
    provider.add_span_processor(mine)
    before = provider._active_span_processor._span_processors
    assert mine in sdk_internals.span_processors(provider)
    PortkeyInstrumentor().instrument(tracer_provider=provider)
    PortkeyInstrumentor().uninstrument()
    assert provider._active_span_processor._span_processors is before, "the SDK's tuple is untouched"


def test_without_the_processors_layout_the_bridge_adds_its_own_once(monkeypatch):
    monkeypatch.setattr(sdk_internals, "PROCESSORS_READABLE", False)
    provider = TracerProvider()
    assert sdk_internals.span_processors(provider) == ()
    for _ in range(3):
        PortkeyInstrumentor().instrument(tracer_provider=provider)
        added = processor._added[provider]
        assert added.enabled
        PortkeyInstrumentor().uninstrument()
        assert not added.enabled
    registered = [
        p for p in provider._active_span_processor._span_processors if isinstance(p, PortkeySpanProcessor)
    ]
    assert registered == [added], "switched off and reused, never a second one"


def test_a_proxy_instrument_says_when_no_meter_provider_is_behind_it():
    from opentelemetry.metrics._internal import _ProxyMeter
    from opentelemetry.sdk.metrics import MeterProvider

    from otel_portkey._otel.sdk_internals import waiting_for_provider

    proxy = _ProxyMeter("probe")
    histogram = proxy.create_histogram("h")
    assert waiting_for_provider(histogram), "the API's layout changed: update sdk_internals"
    proxy.on_set_meter_provider(MeterProvider())
    assert not waiting_for_provider(histogram), "a provider is behind it now"
    assert not waiting_for_provider(MeterProvider().get_meter("m").create_histogram("h"))
    assert not waiting_for_provider(object()), "unknown layout: do the work"
