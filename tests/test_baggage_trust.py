"""BaggageTrust: which baggage keys the operator trusts as Portkey metadata."""

from hypothesis import given
from hypothesis import strategies as st

from otel_portkey._contract.baggage_trust import BaggageTrust
from otel_portkey._contract.metadata import MAX_ENTRIES, MAX_VALUE_CHARS


def test_nothing_is_trusted_by_default():
    trust = BaggageTrust.parse(None)
    assert not trust
    assert trust == BaggageTrust.parse(" , ")
    assert trust.metadata({"portkey.metadata._user": "x", "enduser.id": "y"}) == {}


def test_exact_keys_and_prefixes():
    trust = BaggageTrust.parse("enduser.id, portkey.metadata.*, tenant.id")
    assert trust.trusts("portkey.metadata.session")
    assert trust.trusts("tenant.id")
    assert not trust.trusts("tenant.idx")
    assert not trust.trusts("_user")
    assert BaggageTrust.parse("*").trusts("anything")


def test_trusted_entries_map_to_metadata_keys():
    trust = BaggageTrust.parse("*")
    found = trust.metadata(
        {
            "portkey.metadata.session": "s1",
            "enduser.id": "alice",
            "tenant.id": "acme",
            "portkey.metadata.plan": "pro",
        }
    )
    assert found == {"_user": "alice", "session": "s1", "tenant.id": "acme", "plan": "pro"}
    assert trust.metadata({"enduser.id": "alice", "portkey.metadata._user": "carol"}) == {"_user": "carol"}
    assert trust.metadata({"plan": "plain", "portkey.metadata.plan": "prefixed"}) == {"plan": "prefixed"}
    assert trust.metadata({"portkey.metadata.plan": "prefixed", "plan": "plain"}) == {"plan": "prefixed"}


@given(st.dictionaries(st.text(max_size=40), st.text(max_size=400), max_size=150))
def test_whatever_arrives_trusted_follows_portkeys_rules(entries):
    found = BaggageTrust.parse("*").metadata(entries)
    assert len(found) <= MAX_ENTRIES
    for value in found.values():
        assert len(value) <= MAX_VALUE_CHARS
        assert all(c >= " " for c in value)


def test_trust_is_on_with_keys_alone_or_prefixes_alone():
    assert BaggageTrust.parse("tenant.id")
    assert BaggageTrust.parse("portkey.metadata.*")
    assert not BaggageTrust.parse("")


def test_a_prefix_trusts_only_keys_that_start_with_all_of_it():
    trust = BaggageTrust.parse("portkey.metadata.*")
    assert trust.prefixes == ("portkey.metadata.",)
    assert trust.trusts("portkey.metadata.session")
    assert not trust.trusts("portkey.metadataX")
    assert not trust.trusts("portkey.metadata")
    assert trust.metadata({"portkey.metadataX": "forged", "portkey.metadata.plan": "pro"}) == {"plan": "pro"}


def test_enduser_id_comes_first_unless_an_explicit_user_entry_is_there():
    trust = BaggageTrust.parse("*")
    with_explicit = trust.metadata(
        {"portkey.metadata.plan": "pro", "portkey.metadata._user": "carol", "enduser.id": "alice"}
    )
    assert list(with_explicit.items()) == [("plan", "pro"), ("_user", "carol")]
    from_enduser = trust.metadata({"portkey.metadata.plan": "pro", "enduser.id": "alice"})
    assert list(from_enduser.items()) == [("_user", "alice"), ("plan", "pro")]
