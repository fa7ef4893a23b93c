import asyncio
import contextvars
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote_plus

from opentelemetry import baggage, context

from otel_portkey import portkey_metadata
from otel_portkey._contract.baggage_trust import BaggageTrust
from otel_portkey._otel.processor import context_metadata


def test_nested_blocks_merge_and_inner_wins():
    with portkey_metadata(_user="u1", session="s1"):
        with portkey_metadata({"session": "s2"}, step=3):
            assert dict(context_metadata()) == {"_user": "u1", "session": "s2", "step": "3"}
        assert dict(context_metadata()) == {"_user": "u1", "session": "s1"}
    assert dict(context_metadata()) == {}


def test_metadata_follows_asyncio_tasks():
    async def child():
        await asyncio.sleep(0)
        return dict(context_metadata())

    async def main():
        async with portkey_metadata(session="async"):
            return await asyncio.gather(asyncio.create_task(child()), child())

    assert asyncio.run(main()) == [{"session": "async"}] * 2


def test_metadata_follows_copied_contexts_into_thread_pools():
    with portkey_metadata(session="threads"), ThreadPoolExecutor(4) as pool:
        ctx = contextvars.copy_context()
        results = [pool.submit(lambda: dict(ctx.copy().run(context_metadata))).result() for _ in range(8)]
        bare = dict(pool.submit(context_metadata).result())
    assert results == [{"session": "threads"}] * 8
    assert bare == {}


def in_baggage(entries):
    ctx = None
    for key, value in entries.items():
        ctx = baggage.set_baggage(key, value, context=ctx)
    return ctx


FORGED = {
    "portkey.metadata._user": "mallory",
    "portkey.metadata._environment": "prod",
    "_user": "mallory2",
    "enduser.id": "mallory3",
}
TRUST_ALL = BaggageTrust.parse("*")


def test_baggage_is_no_metadata_by_default_whatever_its_keys():
    """Baggage may come from any outside caller: only ``portkey_metadata`` (a context key of the
    bridge's own, outside baggage) makes metadata unless the operator trusts baggage keys."""
    token = context.attach(in_baggage(FORGED))
    try:
        assert context_metadata() == ()
        with portkey_metadata(session="s1"):
            assert dict(context_metadata()) == {"session": "s1"}
    finally:
        context.detach(token)


def test_trusted_baggage_keys_become_metadata_and_local_entries_win():
    trust = BaggageTrust.parse("enduser.id, portkey.metadata.*")
    token = context.attach(
        in_baggage({"enduser.id": "alice", "tenant": "t1", "portkey.metadata.plan": "pro"})
    )
    try:
        assert dict(context_metadata(trust=trust)) == {"_user": "alice", "plan": "pro"}
        with portkey_metadata(_user="bob"):
            assert dict(context_metadata(trust=trust)) == {"_user": "bob", "plan": "pro"}
        assert dict(context_metadata(trust=BaggageTrust.parse("tenant"))) == {"tenant": "t1"}
        assert dict(context_metadata(trust=TRUST_ALL))["tenant"] == "t1"
    finally:
        context.detach(token)


def test_an_explicit_user_entry_wins_over_enduser_id():
    token = context.attach(in_baggage({"enduser.id": "alice", "portkey.metadata._user": "carol"}))
    try:
        assert dict(context_metadata(trust=TRUST_ALL))["_user"] == "carol"
    finally:
        context.detach(token)


def test_values_are_made_safe_on_the_way_in():
    with portkey_metadata(n=5, text="a\nb" + "x" * 200):
        found = dict(context_metadata())
    assert found["n"] == "5"
    assert "\n" not in found["text"]
    assert len(found["text"]) == 128


def test_trusted_baggage_is_made_safe_and_odd_keys_are_skipped():
    ctx = baggage.set_baggage("portkey.metadata.note", "x\r\n" + "y" * 300)
    ctx = baggage.set_baggage(1, "not a string key", ctx)
    token = context.attach(ctx)
    try:
        found = dict(context_metadata(trust=TRUST_ALL))
    finally:
        context.detach(token)
    assert found == {"note": "x" + "y" * 126 + "…"}


def test_context_metadata_is_capped_at_64_entries_the_attributes_of_every_span():
    ctx = None
    for i in range(150):
        ctx = baggage.set_baggage(f"portkey.metadata.k{i}", "v", context=ctx)
    token = context.attach(ctx)
    try:
        assert len(context_metadata(trust=TRUST_ALL)) == 64
        with portkey_metadata({f"local{i}": "v" for i in range(100)}):
            assert len(context_metadata()) == 64
            assert len(context_metadata(trust=TRUST_ALL)) == 64
    finally:
        context.detach(token)


def test_context_metadata_travels_to_a_downstream_service_in_baggage(model, spans):
    """The README's promise: a service that is not Portkey receives ``portkey_metadata`` entries
    in the W3C ``baggage`` header (and no Portkey header)."""
    import httpx
    from opentelemetry import trace

    from otel_portkey import PortkeyInstrumentor

    PortkeyInstrumentor().instrument(gateway_urls=["http://127.0.0.1:9"])  # the model is not a gateway
    with (
        trace.get_tracer("t").start_as_current_span("request"),
        portkey_metadata(_user="alice", session="s 7"),
    ):
        httpx.post(
            f"{model.base_url}/chat/completions",
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
        )
    received = model.received[-1].headers
    pairs = (item.strip().split("=", 1) for item in received["baggage"].split(","))
    entries = {unquote_plus(key): unquote_plus(value) for key, value in pairs}
    assert entries == {"portkey.metadata._user": "alice", "portkey.metadata.session": "s 7"}
    assert not [name for name in received if name.startswith("x-portkey-")]
