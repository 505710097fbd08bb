"""Identity verification on the consent API: where a source turns it on, every request that
names a userId (POST /v1/consent, GET /v1/consent, GET /v1/consent/receipts/{id}) carries
`userHash`, the HMAC-SHA256 of the userId under the source's secret, or is refused with nothing
read or recorded. The write key is public; the secret is the site's server's alone."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from rest_framework.test import APIClient

from cdp.core.crypto import blind_index
from consent.models import ConsentRecord, Receipt
from profiles import services as profile_services
from profiles.models import SourceSecret
from tests.consent.test_consent_api import SHOP, client_for, counts, post

ENDPOINTS = ["post", "state", "receipt"]
REFUSED_CODES = {401: "identity_verification_required", 403: "identity_verification_failed"}


@pytest.fixture
def banner(source: Any) -> APIClient:
    return client_for(source)


@pytest.fixture
def ada_receipt(banner: APIClient) -> str:
    """Ada's choice and its receipt, recorded before the source verified identities."""
    response = post(
        banner, {"anonymousId": "anon-ada", "userId": "ada", "decisions": {"profiling": True}}
    )
    assert response.status_code == 200
    return str(response.json()["receipt"])


def user_hash(secret: str, user_id: str) -> str:
    """What the site's server computes, as the docs tell it to."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def one_digit_off(digest: str) -> str:
    return digest[:-1] + ("1" if digest[-1] == "0" else "0")


def call(endpoint: str, client: APIClient, identity: dict[str, str], receipt_id: str) -> Any:
    """One consent API request naming `identity` (always with ada's browser's anonymousId)."""
    named = {"anonymousId": "anon-ada", **identity}
    if endpoint == "post":
        return post(client, {**named, "decisions": {"analytics": "granted"}}, HTTP_ORIGIN=SHOP)
    if endpoint == "state":
        return client.get("/v1/consent", named, HTTP_ORIGIN=SHOP)
    return client.get(f"/v1/consent/receipts/{receipt_id}", named, HTTP_ORIGIN=SHOP)


def assert_answered(endpoint: str, response: Any, receipt_id: str) -> None:
    assert response.status_code == 200, response.content
    body = response.json()
    if endpoint == "post":
        assert body["state"] == {"analytics": "granted"}
    elif endpoint == "state":
        assert body["state"] == {"profiling": "granted"}
    else:
        assert body["id"] == receipt_id


def assert_refused(response: Any, status: int) -> None:
    assert response.status_code == status, response.content
    assert response.json() == {
        "code": REFUSED_CODES[status],
        "message": response.json()["message"],
    }
    # nothing of ada's consent or receipt in the answer
    assert b"profiling" not in response.content and b"signature" not in response.content
    # the banner reads the refusal across origins, to fall back to the browser alone
    assert response["Access-Control-Allow-Origin"] == SHOP


# --- off (the default): unchanged --------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_off_by_default_a_user_id_needs_no_hash(
    banner: APIClient, source: Any, ada_receipt: str, endpoint: str
) -> None:
    # when
    response = call(endpoint, banner, {"userId": "ada"}, ada_receipt)
    # then
    assert source.identity_verification is False
    assert_answered(endpoint, response, ada_receipt)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_turned_off_again_a_user_id_needs_no_hash(
    banner: APIClient, source: Any, ada_receipt: str, endpoint: str
) -> None:
    # given
    profile_services.source_identity_verification_enable(source=source)
    profile_services.source_identity_verification_disable(source=source)
    # when
    response = call(endpoint, banner, {"userId": "ada", "userHash": "0" * 64}, ada_receipt)
    # then: a hash sent while verification is off is ignored, whatever it is
    assert_answered(endpoint, response, ada_receipt)


# --- on -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_an_anonymous_id_alone_needs_no_hash(banner: APIClient, source: Any, endpoint: str) -> None:
    # given: the browser's own choice and receipt
    posted = post(banner, {"anonymousId": "anon-ada", "decisions": {"profiling": True}})
    profile_services.source_identity_verification_enable(source=source)
    # when
    response = call(endpoint, banner, {}, posted.json()["receipt"])
    # then
    assert_answered(endpoint, response, posted.json()["receipt"])


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("sent", [{}, {"userHash": ""}], ids=["no-hash", "empty-hash"])
def test_a_user_id_without_its_hash_is_refused_and_nothing_is_recorded(
    banner: APIClient, source: Any, ada_receipt: str, endpoint: str, sent: dict[str, str]
) -> None:
    # given
    profile_services.source_identity_verification_enable(source=source)
    before = counts()
    # when: someone who knows ada's userId and the page's public write key
    response = call(endpoint, banner, {"userId": "ada", **sent}, ada_receipt)
    # then
    assert_refused(response, 401)
    assert response["WWW-Authenticate"] == 'UserHash realm="identity-verification"'
    assert counts() == before


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    "wrong",
    [
        pytest.param(lambda secret: user_hash(secret, "eve"), id="hash-of-another-user"),
        pytest.param(lambda secret: one_digit_off(user_hash(secret, "ada")), id="one-digit-off"),
        pytest.param(lambda secret: user_hash("cdp_iv_guess", "ada"), id="guessed-secret"),
        pytest.param(lambda secret: hashlib.sha256(b"ada").hexdigest(), id="unkeyed-sha256"),
        pytest.param(lambda secret: "é" * 64, id="not-hex"),
    ],
)
def test_a_wrong_hash_is_refused_and_nothing_is_recorded(
    banner: APIClient, source: Any, ada_receipt: str, endpoint: str, wrong: Any
) -> None:
    # given
    issued = profile_services.source_identity_verification_enable(source=source)
    before = counts()
    # when
    response = call(
        endpoint, banner, {"userId": "ada", "userHash": wrong(issued.secret)}, ada_receipt
    )
    # then
    assert_refused(response, 403)
    assert counts() == before


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_hash_made_with_another_sources_secret_is_refused(
    banner: APIClient, source: Any, workspace: Any, ada_receipt: str, endpoint: str
) -> None:
    # given: the same workspace's app, verifying identities with a secret of its own
    app = profile_services.source_create(workspace=workspace, name="Shop app", kind="app")
    theirs = profile_services.source_identity_verification_enable(source=app)
    profile_services.source_identity_verification_enable(source=source)
    before = counts()
    # when
    response = call(
        endpoint,
        banner,
        {"userId": "ada", "userHash": user_hash(theirs.secret, "ada")},
        ada_receipt,
    )
    # then
    assert_refused(response, 403)
    assert counts() == before


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_hash_made_with_a_rotated_secret_is_refused(
    banner: APIClient, source: Any, ada_receipt: str, endpoint: str
) -> None:
    # given
    old = profile_services.source_identity_verification_enable(source=source)
    new = profile_services.source_identity_secret_rotate(source=source)
    before = counts()
    # when
    stale = call(
        endpoint, banner, {"userId": "ada", "userHash": user_hash(old.secret, "ada")}, ada_receipt
    )
    # then
    assert new.secret != old.secret
    assert_refused(stale, 403)
    assert counts() == before


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_the_right_hash_is_answered_as_before(
    banner: APIClient, source: Any, ada_receipt: str, endpoint: str
) -> None:
    # given
    issued = profile_services.source_identity_verification_enable(source=source)
    # when: the hash as the site's server printed it (any case of hex digits)
    response = call(
        endpoint,
        banner,
        {"userId": "ada", "userHash": user_hash(issued.secret, "ada").upper()},
        ada_receipt,
    )
    # then
    assert_answered(endpoint, response, ada_receipt)


def test_the_right_hash_records_the_choice_for_the_user(banner: APIClient, source: Any) -> None:
    # given
    issued = profile_services.source_identity_verification_enable(source=source)
    # when
    response = post(
        banner,
        {
            "anonymousId": "anon-ada",
            "userId": "ada",
            "userHash": user_hash(issued.secret, "ada"),
            "decisions": {"advertising": "denied"},
        },
        content_type="text/plain",
    )
    # then
    assert response.status_code == 200
    record = ConsentRecord.objects.get()
    assert (record.subject_type, bytes(record.subject_index), record.decision) == (
        "user_id",
        blind_index(source.workspace_id, "user_id", "ada"),
        "denied",
    )
    assert Receipt.objects.filter(pk=response.json()["receipt"]).exists()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_user_id_with_surrounding_whitespace_is_refused_before_anything_is_read(
    endpoint: str, banner: APIClient, source: Any, ada_receipt: str
) -> None:
    # given: the hash covers " ada " as sent, but profiles are found by "ada": a hash the
    # site's server made for one string must not vouch for another person's profile
    issued = profile_services.source_identity_verification_enable(source=source)
    before = counts()
    # when: with the hash of the exact string, and with that of the trimmed one
    exact = call(
        endpoint,
        banner,
        {"userId": " ada ", "userHash": user_hash(issued.secret, " ada ")},
        ada_receipt,
    )
    trimmed = call(
        endpoint,
        banner,
        {"userId": " ada ", "userHash": user_hash(issued.secret, "ada")},
        ada_receipt,
    )
    # then
    for response in (exact, trimmed):
        assert response.status_code == 400, response.content
        assert response.json()["code"] == "invalid_user_id"
        assert "whitespace" in response.json()["message"]
    assert counts() == before


def test_whitespace_around_a_user_id_is_accepted_where_verification_is_off(
    banner: APIClient,
) -> None:
    # when
    response = post(
        banner, {"anonymousId": "anon-ada", "userId": " ada ", "decisions": {"analytics": True}}
    )
    # then
    assert response.status_code == 200, response.content


# --- a rotation racing the check ---------------------------------------------------------------


def race_on_open(monkeypatch: Any, change: Any) -> list[str]:
    """Commit `change` (a rotation, a turn-off) after the secret's row is read and before it is
    opened: the key that sealed the row read is destroyed by then."""
    field = SourceSecret._meta.get_field("secret")
    opened = field.decrypt_for
    done: list[str] = []

    def racing(instance: Any, sealed: bytes) -> Any:
        if not done:
            done.append(str(change()))
        return opened(instance, sealed)

    monkeypatch.setattr(field, "decrypt_for", racing)
    return done


@pytest.mark.parametrize("change", ["rotate", "turn off"])
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_change_of_secret_between_reading_and_opening_it_is_refused_not_a_crash(
    endpoint: str, change: str, banner: APIClient, source: Any, ada_receipt: str, monkeypatch: Any
) -> None:
    # given
    issued = profile_services.source_identity_verification_enable(source=source)
    changes = {
        "rotate": lambda: profile_services.source_identity_secret_rotate(source=source),
        "turn off": lambda: profile_services.source_identity_verification_disable(source=source),
    }
    raced = race_on_open(monkeypatch, changes[change])
    before = counts()
    # when
    response = call(
        endpoint,
        banner,
        {"userId": "ada", "userHash": user_hash(issued.secret, "ada")},
        ada_receipt,
    )
    # then
    assert raced
    assert_refused(response, 403)
    assert counts() == before


# --- outsider: another workspace's key ----------------------------------------------------------


@pytest.fixture
def globex(other_workspace: Any) -> Any:
    source = profile_services.source_create(
        workspace=other_workspace, name="Globex website", allowed_origins=[SHOP]
    )
    return profile_services.source_identity_verification_enable(source=source)


def test_another_workspaces_key_with_its_own_valid_hash_reads_nothing_of_this_workspace(
    banner: APIClient, source: Any, ada_receipt: str, globex: Any
) -> None:
    # given: both verify identities; globex's server signs "ada" for its own site
    profile_services.source_identity_verification_enable(source=source)
    outsider = client_for(globex.source)
    signed = {"userId": "ada", "userHash": user_hash(globex.secret, "ada")}
    before = counts()
    # when
    state = call("state", outsider, signed, ada_receipt)
    receipt = call("receipt", outsider, signed, ada_receipt)
    # then: as before verification existed, acme's consent and receipts are not globex's
    assert (state.status_code, state.json()) == (200, {"state": {}, "needsReconsent": []})
    assert (receipt.status_code, receipt.json()["code"]) == (404, "receipt_not_found")
    assert counts() == before


def test_another_workspaces_key_with_its_own_valid_hash_writes_only_there(
    banner: APIClient, source: Any, ada_receipt: str, globex: Any
) -> None:
    # given
    profile_services.source_identity_verification_enable(source=source)
    acme_records = ConsentRecord.objects.filter(workspace=source.workspace).count()
    # when
    response = call(
        "post",
        client_for(globex.source),
        {"userId": "ada", "userHash": user_hash(globex.secret, "ada")},
        ada_receipt,
    )
    # then
    assert response.status_code == 200
    assert ConsentRecord.objects.filter(workspace=source.workspace).count() == acme_records
    assert ConsentRecord.objects.filter(workspace=globex.source.workspace).count() == 1


def test_this_workspaces_hash_does_not_pass_another_workspaces_key(
    banner: APIClient, source: Any, ada_receipt: str, globex: Any
) -> None:
    # given
    ours = profile_services.source_identity_verification_enable(source=source)
    before = counts()
    # when
    response = call(
        "post",
        client_for(globex.source),
        {"userId": "ada", "userHash": user_hash(ours.secret, "ada")},
        ada_receipt,
    )
    # then
    assert_refused(response, 403)
    assert counts() == before
