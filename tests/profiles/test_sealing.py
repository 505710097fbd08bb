"""What ingestion takes out of an event's properties and context to seal, and how the sealed
parts go back (profiles.sealing)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.sealing import (
    MAX_DEPTH,
    SealedKeys,
    holds_email,
    merge_sealed,
    split_context,
    split_properties,
)

KEYS = SealedKeys(["favourite_street"])


def test_personal_keys_are_sealed_at_any_depth_however_spelt() -> None:
    # given
    properties = {
        "total": 42,
        "Phone Number": "+44 20 7946 0958",
        "shipping": {"recipient": {"firstName": "Jane", "city": "Leeds"}},
        "products": [{"sku": "a", "name": "Lamp"}, {"sku": "b"}],
        "Favourite-Street": "Elm Row",  # a workspace's personal trait key
    }
    # when
    plain, sealed = split_properties(properties, KEYS)
    # then
    assert plain == {
        "total": 42,
        "shipping": {"recipient": {"city": "Leeds"}},
        "products": [{"sku": "a"}, {"sku": "b"}],
    }
    assert sealed == {
        "Phone Number": "+44 20 7946 0958",
        "shipping": {"recipient": {"firstName": "Jane"}},
        "products": [{"name": "Lamp"}, None],
        "Favourite-Street": "Elm Row",
    }
    assert merge_sealed(plain, sealed) == properties


def test_emails_are_found_in_any_string_also_percent_encoded() -> None:
    # given
    properties = {
        "note": "write to jane@example.com",
        "tags": ["vip", "JANE%40EXAMPLE.COM"],
        "coupon": "SPRING-24",
    }
    # when
    plain, sealed = split_properties(properties, KEYS)
    # then: a list with an email in it goes whole (its order kept)
    assert plain == {"coupon": "SPRING-24"}
    assert sealed == {"note": "write to jane@example.com", "tags": ["vip", "JANE%40EXAMPLE.COM"]}
    assert holds_email("ref=jane%40example.com") and holds_email("a+b%40c.co")
    assert not holds_email("50% off, 40 items") and not holds_email("@handle")


def test_an_address_used_as_a_key_is_sealed_with_its_value() -> None:
    plain, sealed = split_properties({"sent": {"jane@example.com": "ok", "count": 1}}, KEYS)
    assert (plain, sealed) == ({"sent": {"count": 1}}, {"sent": {"jane@example.com": "ok"}})


def test_url_keys_are_known_however_spelt() -> None:
    # given
    properties = dict.fromkeys(
        ("URL", "page_url", "canonicalUrl", "initial_referrer", "href", "link"),
        "https://shop.example.com/a?first=Jane",
    )
    # when
    plain, sealed = split_properties(properties, KEYS)
    # then
    assert set(plain.values()) == {"https://shop.example.com/a"}
    assert sealed == properties


def test_urls_keep_their_address_plain_and_their_query_sealed() -> None:
    # given: what analytics.js sends with a page call
    properties = {
        "url": "https://shop.example.com/thanks?first=Jane&email=jane%40example.com#top",
        "path": "/thanks",
        "search": "?first=Jane&email=jane%40example.com",
        "referrer": "https://mail.example.org/u/jane@example.com/inbox",
        "title": "Thanks",
    }
    # when
    plain, sealed = split_properties(properties, KEYS)
    # then
    assert plain == {
        "url": "https://shop.example.com/thanks",
        "path": "/thanks",
        "referrer": "https://mail.example.org/u/[email]/inbox",
        "title": "Thanks",
    }
    assert set(sealed) == {"url", "search", "referrer"}
    assert merge_sealed(plain, sealed) == properties
    # a percent-encoded address in the path is masked too, its dot encoded or not
    assert split_properties({"link": "https://t.example/u/JANE%40example.com/x"}, KEYS) == (
        {"link": "https://t.example/u/[email]/x"},
        {"link": "https://t.example/u/JANE%40example.com/x"},
    )
    assert split_properties({"url": "https://t.example/u/jane%40example%2Ecom"}, KEYS) == (
        {"url": "https://t.example/u/[email]"},
        {"url": "https://t.example/u/jane%40example%2Ecom"},
    )
    # ...and encoded twice (a link inside a link), in a URL or any other value
    plain, sealed = split_properties(
        {"url": "https://t.example/r/jane%2540example.com", "note": "to jane%2540example.com"},
        KEYS,
    )
    assert plain == {"url": "https://t.example/r/[email]"}
    assert sealed == {
        "url": "https://t.example/r/jane%2540example.com",
        "note": "to jane%2540example.com",
    }
    # ...and three times
    plain, sealed = split_properties({"url": "https://t.example/u/jane%252540example.com"}, KEYS)
    assert plain == {"url": "https://t.example/u/[email]"}
    assert sealed == {"url": "https://t.example/u/jane%252540example.com"}
    # only the segment that held the address is decoded: the rest of the path stays as sent,
    # and a "+" in the address is the address's (no "jane " left plain before the mask)
    url = "https://t.example/c/red+shoes/a%2Fb/jane+tag%2540example.com/orders?step=2"
    assert split_properties({"url": url}, KEYS) == (
        {"url": "https://t.example/c/red+shoes/a%2Fb/[email]/orders"},
        {"url": url},
    )
    # an address without a query or email is left alone, an empty search too
    assert split_properties({"url": "https://x.example/a", "search": ""}, KEYS) == (
        {"url": "https://x.example/a", "search": ""},
        {},
    )


def test_the_context_seals_identifiers_and_coordinates_but_not_names_of_things() -> None:
    # given
    context = {
        "library": {"name": "analytics-ios", "version": "4.1.0"},
        "app": {"name": "Shop", "version": "2.3"},
        "device": {"id": "dev-1", "advertisingId": "ad-1", "token": "tok", "model": "iPhone"},
        "location": {"city": "Leeds", "latitude": 53.8, "longitude": -1.55},
        "page": {"url": "https://shop.example.com/?ref=jane%40example.com", "path": "/"},
        "traits": {"email": "jane@example.com"},
        "externalIds": [{"id": "x", "type": "crm_id"}],
        "ip": "203.0.113.7",
    }
    # when
    plain, sealed = split_context(context, "203.0.113.7", "203.0.113.0")
    # then: traits and external ids are stored as traits and identities, not here
    assert plain == {
        "library": {"name": "analytics-ios", "version": "4.1.0"},
        "app": {"name": "Shop", "version": "2.3"},
        "device": {"model": "iPhone"},
        "location": {"city": "Leeds"},
        "page": {"url": "https://shop.example.com/", "path": "/"},
        "ip_truncated": "203.0.113.0",
    }
    assert sealed == {
        "device": {"id": "dev-1", "advertisingId": "ad-1", "token": "tok"},
        "location": {"latitude": 53.8, "longitude": -1.55},
        "page": {"url": "https://shop.example.com/?ref=jane%40example.com"},
        "ip": "203.0.113.7",
    }


def test_an_object_nested_deeper_than_the_limit_is_sealed_whole() -> None:
    # given
    deep: Any = {"leaf": "plain"}
    for _ in range(MAX_DEPTH + 5):
        deep = {"next": deep}
    # when
    plain, sealed = split_properties({"deep": deep, "total": 1}, KEYS)
    # then
    assert plain["total"] == 1
    assert merge_sealed(plain, sealed) == {"deep": deep, "total": 1}
    assert "leaf" not in repr(plain)


def test_events_sealed_one_level_deep_before_merge_the_same_way() -> None:
    # given: an event stored by an earlier release (the page's url sealed, one level deep)
    plain = {"page": {"path": "/a", "url": "[email]"}, "locale": "en"}
    sealed = {"page": {"url": "https://x.example/?e=a@b.co"}, "ip": "198.51.100.1"}
    # when / then
    assert merge_sealed(plain, sealed) == {
        "page": {"path": "/a", "url": "https://x.example/?e=a@b.co"},
        "locale": "en",
        "ip": "198.51.100.1",
    }
    assert plain == {"page": {"path": "/a", "url": "[email]"}, "locale": "en"}


_KEY = st.sampled_from(["sku", "name", "email", "url", "search", "note", "Phone-Number", "x"])
_TEXT = st.sampled_from(
    ["", "plain", "jane@example.com", "a%40b.co", "https://s.example/p?q=1", "?a=b", "@x"]
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEY, inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_KEY, _JSON, max_size=6))
def test_merging_the_sealed_parts_back_gives_the_event_as_sent(properties: dict) -> None:
    # when
    plain, sealed = split_properties(properties, KEYS)
    # then: nothing is lost, and no email is left in the plain part
    assert merge_sealed(plain, sealed) == properties
    assert "jane@example.com" not in repr(plain) and "a%40b.co" not in repr(plain)
    assert not any(key in KEYS for key in _keys(plain))


def _keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [*value, *(k for v in value.values() for k in _keys(v))]
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []
