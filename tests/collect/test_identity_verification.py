"""Identity verification on the collection API. The write key is public: where a source
verifies identities, a message proves its userId with `context.userHash` (the HMAC-SHA256 of
the userId under the source's secret, computed by the site's server), or it is kept, answered
200, and claims no one: its userId is dropped and only what its browser holds (anonymousId,
an alias's previousId, device ids) resolves it. `context.userHash` is never stored."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from collect import intake
from collect.models import IntakeBatch
from consent.models import ConsentRecord
from profiles import selectors as profile_selectors
from profiles import services as profile_services
from profiles.contracts import InboundMessage
from profiles.models import Event, IdentityPolicy, SourceSecret, Trait
from tests.collect.conftest import basic
from tests.test_no_plaintext_pii import scan_all_tables

ADA_EMAIL = "ada@example.com"
OK = {"success": True}
TRUNCATED_IP = {"ip_truncated": "127.0.0.0"}  # all an event of the test client keeps in context


def user_hash(secret: str, user_id: str) -> str:
    """What the site's server computes, as the docs tell it to."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def client_for(source: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic(source.write_key))
    return client


def send(client: APIClient, path: str, body: dict[str, Any]) -> Any:
    return client.post(path, json.dumps(body), content_type="application/json")


def consent_of(client: APIClient, anonymous_id: str) -> dict[str, str]:
    response = client.get("/v1/consent", {"anonymousId": anonymous_id})
    assert response.status_code == 200, response.content
    return dict(response.json()["state"])


def profile_of(source: Any, identifier_type: str, value: str) -> Any:
    profile = profile_selectors.profile_find_by_identifier(
        workspace=source.workspace, identifier_type=identifier_type, value=value
    )
    return profile.pk if profile is not None else None


@pytest.fixture
def sdk(source: Any) -> APIClient:
    return client_for(source)


@pytest.fixture
def ada(source: Any, sdk: APIClient) -> Any:
    """Ada signed in on her browser (anon-ada) and granted profiling, before the source
    verified identities; her profile id."""
    assert (
        send(
            sdk,
            "/v1/identify",
            {"userId": "ada", "anonymousId": "anon-ada", "traits": {"email": ADA_EMAIL}},
        ).json()
        == OK
    )
    granted = send(
        sdk,
        "/v1/consent",
        {"anonymousId": "anon-ada", "userId": "ada", "decisions": {"profiling": True}},
    )
    assert granted.status_code == 200, granted.content
    assert consent_of(sdk, "anon-ada")["profiling"] == "granted"
    return profile_of(source, "user_id", "ada")


@pytest.fixture
def secret(source: Any, ada: Any) -> str:
    """Verification turned on after ada's sign-in: the secret only the site's server holds."""
    return profile_services.source_identity_verification_enable(source=source).secret


def records_of(profile_id: Any) -> int:
    return ConsentRecord.objects.filter(profile_id=profile_id).count()


# --- the reviewer's three attacks --------------------------------------------------------------


def test_identify_then_read_consent_by_the_anonymous_id_leaks_nothing_of_ada(
    sdk: APIClient, source: Any, ada: Any, secret: str
) -> None:
    # given: a stranger's answer, for comparison
    stranger = consent_of(sdk, "anon-stranger")
    # when: the attacker claims ada for its own browser, without her hash
    response = send(sdk, "/v1/identify", {"userId": "ada", "anonymousId": "anon-evil"})
    # then: kept, answered as always, linked to no one
    assert (response.status_code, response.json()) == (200, OK)
    assert consent_of(sdk, "anon-evil") == stranger
    assert consent_of(sdk, "anon-evil").get("profiling") != "granted"
    evil = profile_of(source, "anonymous_id", "anon-evil")
    assert evil is not None and evil != ada
    stored = Event.objects.get(profile_id=evil)
    assert stored.type == "identify"


def test_identify_then_post_consent_by_the_anonymous_id_leaves_ada_unchanged(
    sdk: APIClient, source: Any, ada: Any, secret: str
) -> None:
    # given
    send(sdk, "/v1/identify", {"userId": "ada", "anonymousId": "anon-evil"})
    before = records_of(ada)
    # when: the attacker withdraws "her" consent through its own browser
    response = send(
        sdk, "/v1/consent", {"anonymousId": "anon-evil", "decisions": {"profiling": False}}
    )
    # then: recorded for the attacker's browser alone
    assert response.status_code == 200, response.content
    assert consent_of(sdk, "anon-ada")["profiling"] == "granted"
    assert records_of(ada) == before
    assert consent_of(sdk, "anon-evil")["profiling"] == "denied"


@pytest.mark.parametrize("anonymous_id", ["anon-evil", None])
def test_track_with_consent_preferences_and_no_hash_writes_nothing_for_ada(
    sdk: APIClient, source: Any, ada: Any, secret: str, anonymous_id: str | None
) -> None:
    # given
    before = records_of(ada)
    body: dict[str, Any] = {
        "userId": "ada",
        "event": "Viewed",
        "context": {"consent": {"categoryPreferences": {"Profiling": False}}},
    }
    if anonymous_id:
        body["anonymousId"] = anonymous_id
    # when
    response = send(sdk, "/v1/track", body)
    # then: ada's consent is not touched; the event is kept for the browser that sent it, and
    # one with no browser id to keep it under is refused
    assert records_of(ada) == before
    assert consent_of(sdk, "anon-ada")["profiling"] == "granted"
    assert not Event.objects.filter(name="Viewed", profile_id=ada).exists()
    if anonymous_id:  # the preferences speak for the browser that sent them
        assert (response.status_code, response.json()) == (200, OK)
        assert Event.objects.filter(name="Viewed").count() == 1
        assert consent_of(sdk, anonymous_id)["profiling"] == "denied"
    else:
        assert response.status_code == 400
        assert response.json()["code"] == "identity_verification_required"
        assert not Event.objects.filter(name="Viewed").exists()


def test_gpc_on_an_unverified_message_opts_out_the_browser_not_ada(
    sdk: APIClient, source: Any, ada: Any, secret: str
) -> None:
    # given
    before = records_of(ada)
    # when
    response = sdk.post(
        "/v1/track",
        json.dumps({"userId": "ada", "anonymousId": "anon-evil", "event": "Viewed"}),
        content_type="application/json",
        HTTP_SEC_GPC="1",
    )
    # then
    assert response.status_code == 200
    assert records_of(ada) == before
    evil = profile_of(source, "anonymous_id", "anon-evil")
    assert ConsentRecord.objects.filter(profile_id=evil).exists()


# --- the same through other identifiers and routes ----------------------------------------------


def test_identify_by_traits_email_without_a_user_id_links_nothing(
    sdk: APIClient, source: Any, ada: Any, secret: str
) -> None:
    # when
    response = send(
        sdk,
        "/v1/identify",
        {"anonymousId": "anon-evil", "traits": {"email": f" {ADA_EMAIL.upper()} ", "plan": "pro"}},
    )
    # then: the traits are the browser's own, encrypted, and no email identity joins them
    assert (response.status_code, response.json()) == (200, OK)
    evil = profile_of(source, "anonymous_id", "anon-evil")
    assert evil not in (None, ada)
    assert consent_of(sdk, "anon-evil").get("profiling") != "granted"
    assert profile_of(source, "email", ADA_EMAIL) == ada
    traits = {t.key: t for t in Trait.objects.filter(profile_id=evil)}
    assert sorted(traits) == ["email", "plan"]
    assert traits["email"].is_pii
    assert traits["email"].value_pii == f" {ADA_EMAIL.upper()} "
    assert scan_all_tables({"email": ADA_EMAIL}) == []


def test_identify_by_phone_external_ids_or_a_mapped_trait_links_nothing(
    source: Any, sdk: APIClient
) -> None:
    # given: ada known by phone, an external id and a mapped loyalty trait
    IdentityPolicy.objects.update_or_create(
        workspace=source.workspace, defaults={"trait_identifiers": {"loyalty": "loyalty_id"}}
    )
    send(
        sdk,
        "/v1/identify",
        {
            "userId": "ada",
            "anonymousId": "anon-ada",
            "traits": {"phone": "+44 20 7946 0000", "loyalty": "L-1815"},
            "context": {"externalIds": [{"id": "crm-1815", "type": "crm_id"}]},
        },
    )
    ada = profile_of(source, "user_id", "ada")
    profile_services.source_identity_verification_enable(source=source)
    # when
    send(
        sdk,
        "/v1/identify",
        {
            "anonymousId": "anon-evil",
            "traits": {"phone": "+44 20 7946 0000", "loyalty": "L-1815"},
            "context": {"externalIds": [{"id": "crm-1815", "type": "crm_id"}]},
        },
    )
    # then
    evil = profile_of(source, "anonymous_id", "anon-evil")
    assert evil not in (None, ada)
    assert profile_of(source, "phone", "+44 20 7946 0000") == ada
    assert profile_of(source, "crm_id", "crm-1815") == ada
    assert profile_of(source, "loyalty_id", "L-1815") == ada


def test_a_batch_of_unverified_messages_links_nothing(
    sdk: APIClient, source: Any, ada: Any, secret: str
) -> None:
    # given
    before, events = records_of(ada), Event.objects.count()
    # when
    response = send(
        sdk,
        "/v1/batch",
        {
            "batch": [
                {"type": "identify", "userId": "ada", "anonymousId": "anon-evil"},
                {"type": "identify", "anonymousId": "anon-evil-2", "traits": {"email": ADA_EMAIL}},
                {
                    "type": "track",
                    "userId": "ada",
                    "anonymousId": "anon-evil",
                    "event": "Viewed",
                    "context": {"consent": {"categoryPreferences": {"Profiling": False}}},
                },
            ]
        },
    )
    # then
    assert (response.status_code, response.json()) == (200, OK)
    assert profile_of(source, "anonymous_id", "anon-evil") not in (None, ada)
    assert profile_of(source, "anonymous_id", "anon-evil-2") not in (None, ada)
    assert consent_of(sdk, "anon-evil").get("profiling") == "denied"
    assert consent_of(sdk, "anon-ada")["profiling"] == "granted"
    assert records_of(ada) == before
    assert Event.objects.count() == events + 3


def test_an_unverified_alias_keeps_the_event_and_links_nothing(
    sdk: APIClient, source: Any, ada: Any, secret: str
) -> None:
    # when
    response = send(sdk, "/v1/alias", {"previousId": "anon-evil", "userId": "ada"})
    # then: the alias is stored on the previousId's (anonymous) profile
    assert (response.status_code, response.json()) == (200, OK)
    evil = profile_of(source, "anonymous_id", "anon-evil")
    assert evil not in (None, ada)
    assert Event.objects.get(type="alias").profile_id == evil
    assert consent_of(sdk, "anon-evil").get("profiling") != "granted"


def test_an_unverified_alias_treats_a_known_user_id_as_an_anonymous_id(
    sdk: APIClient, source: Any, ada: Any, secret: str
) -> None:
    # when: previousId is ada's userId
    send(sdk, "/v1/a", {"previousId": "ada", "anonymousId": "anon-evil"})
    # then
    assert profile_of(source, "anonymous_id", "anon-evil") not in (None, ada)


def test_a_hash_of_the_user_id_with_whitespace_verifies_nothing(
    sdk: APIClient, source: Any, ada: Any, secret: str
) -> None:
    # when: the hash covers " ada " exactly as sent, but profiles know "ada"
    send(
        sdk,
        "/v1/identify",
        {
            "userId": " ada ",
            "anonymousId": "anon-evil",
            "context": {"userHash": user_hash(secret, " ada ")},
        },
    )
    # then
    assert profile_of(source, "anonymous_id", "anon-evil") not in (None, ada)


@pytest.mark.parametrize("forged", ["", "00" * 32, "not-hex", 42, None])
def test_a_wrong_hash_verifies_nothing(
    sdk: APIClient, source: Any, ada: Any, secret: str, forged: Any
) -> None:
    # when
    send(
        sdk,
        "/v1/identify",
        {"userId": "ada", "anonymousId": "anon-evil", "context": {"userHash": forged}},
    )
    # then
    assert profile_of(source, "anonymous_id", "anon-evil") not in (None, ada)


def test_an_unverified_message_naming_an_erased_person_is_still_dropped(
    sdk: APIClient, source: Any, ada: Any, secret: str
) -> None:
    # given: an erased person's email on the suppression list
    profile_services.suppression_add(
        workspace=source.workspace, identifiers=[("email", "gone@example.com")], reason="erasure"
    )
    events = Event.objects.count()
    # when: it arrives as an unverified message's trait, beside a clean one
    response = send(
        sdk,
        "/v1/batch",
        {
            "batch": [
                {
                    "type": "identify",
                    "anonymousId": "anon-x",
                    "traits": {"email": "gone@example.com"},
                },
                {"type": "identify", "anonymousId": "anon-y", "traits": {"plan": "pro"}},
            ]
        },
    )
    # then: checked against every identifier it names, not only those it may join by
    assert (response.status_code, response.json()) == (200, OK)
    assert Event.objects.count() == events + 1
    assert profile_of(source, "anonymous_id", "anon-x") is None
    assert profile_of(source, "anonymous_id", "anon-y") is not None


# --- verified: as before -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/identify", "/v1/i"])
def test_a_verified_identify_links_as_before(
    sdk: APIClient, source: Any, ada: Any, secret: str, path: str
) -> None:
    # when: the page adds the hash its server printed, per call
    response = send(
        sdk,
        path,
        {
            "userId": "ada",
            "anonymousId": "anon-laptop",
            "context": {"userHash": user_hash(secret, "ada").upper()},
        },
    )
    # then: linked, and the hash it was checked by is not kept with the event
    assert (response.status_code, response.json()) == (200, OK)
    assert profile_of(source, "anonymous_id", "anon-laptop") == ada
    assert consent_of(sdk, "anon-laptop")["profiling"] == "granted"
    assert [e.context for e in Event.objects.filter(type="identify")] == [TRUNCATED_IP] * 2


def test_a_verified_batch_item_links_and_an_unverified_one_beside_it_does_not(
    sdk: APIClient, source: Any, ada: Any, secret: str
) -> None:
    # when: the hash at the batch level (merged under every item) vouches for ada's only
    send(
        sdk,
        "/v1/batch",
        {
            "context": {"userHash": user_hash(secret, "ada")},
            "batch": [
                {"type": "identify", "userId": "ada", "anonymousId": "anon-laptop"},
                {"type": "identify", "userId": "grace", "anonymousId": "anon-grace"},
            ],
        },
    )
    # then
    assert profile_of(source, "anonymous_id", "anon-laptop") == ada
    assert profile_of(source, "user_id", "grace") is None
    assert profile_of(source, "anonymous_id", "anon-grace") not in (None, ada)


def test_a_verified_track_records_its_consent_for_ada(
    sdk: APIClient, source: Any, ada: Any, secret: str
) -> None:
    before = records_of(ada)
    # when
    send(
        sdk,
        "/v1/track",
        {
            "userId": "ada",
            "anonymousId": "anon-ada",
            "event": "Viewed",
            "context": {
                "userHash": user_hash(secret, "ada"),
                "consent": {"categoryPreferences": {"Profiling": False}},
            },
        },
    )
    # then
    assert records_of(ada) == before + 1
    latest = ConsentRecord.objects.filter(profile_id=ada).latest("pk")
    assert (latest.subject_type, latest.decision) == ("user_id", "withdrawn")


# --- off: unchanged, but the hash is never stored ----------------------------------------------


def test_a_source_that_does_not_verify_links_a_user_id_as_before(
    sdk: APIClient, source: Any, ada: Any
) -> None:
    # when: with a hash shipped before verification is on, or none
    response = send(
        sdk,
        "/v1/identify",
        {"userId": "ada", "anonymousId": "anon-other", "context": {"userHash": "ab" * 32}},
    )
    plain = send(sdk, "/v1/identify", {"userId": "ada", "anonymousId": "anon-tablet"})
    # then: both linked, as ever; the hash not kept
    assert (response.status_code, response.json()) == (200, OK)
    assert (plain.status_code, plain.json()) == (200, OK)
    assert profile_of(source, "anonymous_id", "anon-other") == ada
    assert profile_of(source, "anonymous_id", "anon-tablet") == ada
    assert consent_of(sdk, "anon-other")["profiling"] == "granted"
    assert [e.context for e in Event.objects.filter(type="identify")] == [TRUNCATED_IP] * 3


@pytest.mark.parametrize("verifying", [False, True])
def test_the_user_hash_is_never_stored(
    sdk: APIClient, source: Any, ada: Any, verifying: bool
) -> None:
    # given: a hash shipped ahead of verification, or with it on
    key = (
        profile_services.source_identity_verification_enable(source=source).secret
        if verifying
        else "a secret of the site's server"
    )
    good, forged = user_hash(key, "ada"), user_hash("guessed", "ada")
    events = Event.objects.count()
    # when
    send(
        sdk,
        "/v1/identify",
        {"userId": "ada", "anonymousId": "anon-1", "context": {"userHash": good}},
    )
    send(
        sdk,
        "/v1/batch",
        {
            "context": {"userHash": forged},
            "batch": [
                {"type": "track", "userId": "ada", "anonymousId": "anon-2", "event": "Viewed"}
            ],
        },
    )
    # then: in no event's context, nor anywhere in the database
    assert Event.objects.count() == events + 2
    assert all("userHash" not in event.context for event in Event.objects.all())
    assert scan_all_tables({"hash": good, "forged": forged}) == []
    if verifying:
        assert scan_all_tables({"secret": key}) == []


# --- the asynchronous intake ---------------------------------------------------------------------


@override_settings(COLLECT_ASYNC_INTAKE=True)
def test_the_intake_keeps_the_verdict_until_the_drain(
    sdk: APIClient,
    source: Any,
    ada: Any,
    secret: str,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # when: one unverified and one verified identify, buffered
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = send(
            sdk,
            "/v1/batch",
            {
                "batch": [
                    {"type": "identify", "userId": "ada", "anonymousId": "anon-evil"},
                    {
                        "type": "identify",
                        "anonymousId": "anon-evil-2",
                        "traits": {"email": ADA_EMAIL},
                    },
                    {
                        "type": "identify",
                        "userId": "ada",
                        "anonymousId": "anon-laptop",
                        "context": {"userHash": user_hash(secret, "ada")},
                    },
                ]
            },
        )
    assert (response.status_code, response.json()) == (200, OK)
    assert IntakeBatch.objects.exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT payload FROM collect_intakebatch")
        for (payload,) in cursor.fetchall():
            assert user_hash(secret, "ada").encode() not in bytes(payload)
    # and: the drain runs
    for callback in callbacks:
        if "collect.tasks.intake_drain" in repr(callback):
            callback()
    # then
    assert IntakeBatch.objects.count() == 0
    assert profile_of(source, "anonymous_id", "anon-laptop") == ada
    assert profile_of(source, "anonymous_id", "anon-evil") not in (None, ada)
    assert profile_of(source, "anonymous_id", "anon-evil-2") not in (None, ada)


def test_the_flag_survives_serialization_and_old_rows_read_as_verified() -> None:
    # given
    sealed = intake._serialize(
        InboundMessage(
            type="identify",
            message_id="m-1",
            received_at=timezone.now(),
            timestamp=timezone.now(),
            anonymous_id="anon-evil",
            identity_verified=False,
        )
    )
    old = {k: v for k, v in sealed.items() if k != "identity_verified"}
    # when / then
    assert (
        intake._deserialize(json.loads(json.dumps(sealed, default=str))).identity_verified is False
    )
    assert intake._deserialize(json.loads(json.dumps(old, default=str))).identity_verified is True


# --- the secret read once, and unreadable ---------------------------------------------------------


def test_the_secret_is_read_once_per_request(
    sdk: APIClient, source: Any, ada: Any, secret: str
) -> None:
    # given
    batch = [
        {
            "type": "track",
            "userId": "ada",
            "event": f"E{n}",
            "context": {"userHash": user_hash(secret, "ada")},
        }
        for n in range(5)
    ]
    # when
    with CaptureQueriesContext(connection) as queries:
        send(sdk, "/v1/batch", {"batch": batch})
    # then
    table = SourceSecret._meta.db_table
    assert sum(table in q["sql"] for q in queries.captured_queries) == 1
    assert Event.objects.filter(profile_id=ada, name__startswith="E").count() == 5


def test_a_rotation_between_reading_and_opening_the_secret_leaves_the_messages_unverified(
    sdk: APIClient, source: Any, ada: Any, secret: str, monkeypatch: Any
) -> None:
    # given: the admin rotates after the request read the row, before it opened it
    field = SourceSecret._meta.get_field("secret")
    opened = field.decrypt_for
    rotated: list[str] = []

    def racing(instance: Any, sealed: bytes) -> Any:
        if not rotated:
            rotated.append(profile_services.source_identity_secret_rotate(source=source).secret)
        return opened(instance, sealed)

    monkeypatch.setattr(field, "decrypt_for", racing)
    # when
    response = send(
        sdk,
        "/v1/identify",
        {
            "userId": "ada",
            "anonymousId": "anon-laptop",
            "context": {"userHash": user_hash(secret, "ada")},
        },
    )
    # then: kept and answered as always, but it proved nothing
    assert rotated
    assert (response.status_code, response.json()) == (200, OK)
    assert profile_of(source, "anonymous_id", "anon-laptop") not in (None, ada)


def test_an_unverified_message_with_no_anonymous_id_is_refused_not_stored_as_no_one(
    sdk: APIClient, source: Any, ada: Any, secret: str
) -> None:
    # given
    events = Event.objects.count()
    # when: a userId alone, without its hash (a server-side sender on the browser's source)
    single = send(sdk, "/v1/track", {"userId": "ada", "event": "Order Completed"})
    batch = send(
        sdk,
        "/v1/batch",
        {
            "batch": [
                {"type": "track", "userId": "ada", "event": "Order Completed"},
                {"type": "track", "anonymousId": "anon-shop", "event": "Product Viewed"},
            ]
        },
    )
    # then: a clear error for it; the valid message beside it is kept
    assert single.status_code == 400
    assert single.json()["code"] == "identity_verification_required"
    assert "ada" not in single.content.decode()
    assert batch.status_code == 200, batch.content
    assert [(r["index"], r["code"]) for r in batch.json()["rejected"]] == [
        (0, "identity_verification_required")
    ]
    assert Event.objects.count() == events + 1


def test_an_unverified_message_with_a_device_id_is_kept_for_the_device(
    sdk: APIClient, source: Any, ada: Any, secret: str
) -> None:
    # when: an app's message names its device, not an anonymousId, and ada without her hash
    response = send(
        sdk,
        "/v1/track",
        {"userId": "ada", "event": "App Opened", "context": {"device": {"id": "device-77"}}},
    )
    # then: kept, on the device's profile, not ada's
    assert (response.status_code, response.json()) == (200, OK)
    stored = Event.objects.get(name="App Opened")
    assert stored.profile_id not in (None, ada)
    assert profile_of(source, "device_id", "device-77") == stored.profile_id
