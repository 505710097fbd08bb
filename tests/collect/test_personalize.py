"""`GET /v1/personalize`: a visitor's audiences and exposed traits, read by the website with its
write key, only when the personalization purpose allows processing them now; otherwise an empty
answer with the reason. Personal data is never answered."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from activation import selectors as activation_selectors
from activation import services as activation_services
from activation.exceptions import PersonalizationInvalid
from activation.models import PersonalizationConfig
from consent import services as consent_services
from consent.enums import Decision, Method
from consent.models import Purpose
from consent.services import Evidence, Subject
from profiles import selectors as profile_selectors
from profiles import services as profile_services
from profiles.enums import TraitClass
from profiles.models import Profile, TraitSchema
from tests.collect.conftest import ELSEWHERE, SHOP, basic
from tests.profiles.ingest_helpers import msg

pytestmark = pytest.mark.django_db

ANON = "anon-visitor-0001"
USER = "user-visitor-0001"
EMAIL = "visitor.sentinel@example.com"
VIP = {"trait": {"key": "plan", "op": "=", "value": "vip"}}
EMPTY: dict[str, Any] = {"audiences": [], "traits": {}}


def visitor(source: Any, *, anonymous_id: str = ANON, user_id: str = USER, plan: str = "vip"):
    outcome = profile_services.ingest_messages(
        source=source,
        messages=[
            msg(
                "identify",
                user_id=user_id,
                anonymous_id=anonymous_id,
                traits={"email": EMAIL, "country": "DE", "plan": plan},
            )
        ],
    )
    return outcome.profile_ids[0]


def decide(
    workspace: Any, profile_id: Any, decision: str, purpose: str = "personalization"
) -> None:
    consent_services.consent_record(
        workspace=workspace,
        subject=Subject("anonymous_id", ANON, profile_id),
        decisions={purpose: decision},
        evidence=Evidence(method=Method.BANNER, jurisdiction="DE", ip="198.51.100.7"),
    )


@pytest.fixture
def shop(workspace: Any, source: Any) -> Any:
    """A visitor of the acme shop in the `vip` audience, with personalization granted."""
    consent_services.purposes_ensure_defaults(workspace=workspace)
    profile_id = visitor(source)
    audience = activation_services.audience_create(
        workspace=workspace, key="vip", name="VIP", rules=VIP
    )
    activation_services.audience_refresh(audience=audience)
    activation_services.personalization_config_set(workspace=workspace, traits=["country"])
    decide(workspace, profile_id, Decision.GRANTED)
    return profile_id


def ask(source: Any, *, origin: str | None = SHOP, **params: str) -> Any:
    client = APIClient()
    headers: dict[str, Any] = {"HTTP_ORIGIN": origin} if origin else {}
    query = {"anonymousId": ANON, **params}
    return client.get("/v1/personalize", {"writeKey": source.write_key, **query}, **headers)


# --- answers ---------------------------------------------------------------------------------


def test_a_consenting_visitor_gets_their_audiences_and_the_exposed_traits(
    shop: Any, source: Any
) -> None:
    # when
    response = ask(source)

    # then
    assert response.status_code == 200
    assert response.json() == {"audiences": ["vip"], "traits": {"country": "DE"}, "reason": None}
    assert response["Cache-Control"] == "private, no-store"
    assert response["Access-Control-Allow-Origin"] == SHOP
    assert "Origin" in response["Vary"]


def test_the_key_may_come_as_http_basic(shop: Any, source: Any) -> None:
    # given
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic(source.write_key))

    # when
    response = client.get("/v1/personalize", {"anonymousId": ANON})

    # then: no Origin header (a server call)
    assert response.status_code == 200
    assert response.json()["audiences"] == ["vip"]


def test_a_denied_purpose_answers_empty_with_no_consent(
    shop: Any, workspace: Any, source: Any
) -> None:
    # given
    decide(workspace, shop, Decision.DENIED)

    # when
    response = ask(source)

    # then
    assert response.status_code == 200
    assert response.json() == {**EMPTY, "reason": "no_consent"}


def test_an_undecided_visitor_follows_the_purpose_default_of_their_jurisdiction(
    workspace: Any, source: Any
) -> None:
    # given: personalization is opt-in in the EU and opt-out elsewhere (the seeded defaults)
    consent_services.purposes_ensure_defaults(workspace=workspace)
    visitor(source)

    # when
    in_germany = ask(source, jurisdiction="DE")
    from_the_edge = APIClient().get(
        "/v1/personalize",
        {"writeKey": source.write_key, "anonymousId": ANON},
        HTTP_CDP_JURISDICTION="FR",
    )
    in_the_us = ask(source, jurisdiction="US")

    # then
    assert in_germany.json() == {**EMPTY, "reason": "no_consent"}
    assert from_the_edge.json() == {**EMPTY, "reason": "no_consent"}
    assert in_the_us.json() == {**EMPTY, "reason": None}


def test_gpc_refuses_a_purpose_that_is_a_sale_or_sharing(
    shop: Any, workspace: Any, source: Any
) -> None:
    # given: consent granted; personalization is not a sale by default
    allowed = APIClient().get(
        "/v1/personalize",
        {"writeKey": source.write_key, "anonymousId": ANON},
        HTTP_SEC_GPC="1",
    )
    Purpose.objects.filter(workspace=workspace, key="personalization").update(sale_or_share=True)

    # when
    refused = APIClient().get(
        "/v1/personalize",
        {"writeKey": source.write_key, "anonymousId": ANON},
        HTTP_SEC_GPC="1",
    )
    without_gpc = ask(source)

    # then
    assert allowed.json()["audiences"] == ["vip"]
    assert refused.json() == {**EMPTY, "reason": "no_consent"}
    assert without_gpc.json()["audiences"] == ["vip"]


def test_a_gpc_opt_out_recorded_on_a_sale_purpose_answers_no_consent(
    shop: Any, workspace: Any, source: Any
) -> None:
    # given: the workspace bases personalization on the advertising purpose (a sale or share),
    # which the visitor granted and their browser's GPC signal then opted out of
    activation_services.personalization_config_set(workspace=workspace, purpose="advertising")
    decide(workspace, shop, Decision.GRANTED, purpose="advertising")
    consent_services.consent_apply_gpc(
        workspace=workspace,
        subject=Subject("anonymous_id", ANON, shop),
        evidence=Evidence(method=Method.GPC, signals={"gpc": True}),
    )

    # when
    response = ask(source)

    # then
    assert response.json() == {**EMPTY, "reason": "no_consent"}


def test_an_unknown_visitor_answers_empty_with_unknown(shop: Any, source: Any) -> None:
    # when
    response = ask(source, anonymousId="never-seen")

    # then
    assert response.status_code == 200
    assert response.json() == {**EMPTY, "reason": "unknown"}


def test_a_restricted_visitor_answers_empty_with_restricted(shop: Any, source: Any) -> None:
    # given
    Profile.objects.filter(pk=shop).update(restricted=True)

    # when
    response = ask(source)

    # then
    assert response.json() == {**EMPTY, "reason": "restricted"}


def test_a_visitor_of_another_workspace_is_unknown(
    shop: Any, other_workspace: Any, other_source: Any
) -> None:
    # given: the other workspace has a visitor with another id only
    consent_services.purposes_ensure_defaults(workspace=other_workspace)

    # when: the acme visitor's anonymousId, with the other workspace's key and origin
    response = ask(other_source, origin="https://globex.example.org")

    # then
    assert response.status_code == 200
    assert response.json() == {**EMPTY, "reason": "unknown"}


def test_personalization_turned_off_answers_disabled(
    shop: Any, workspace: Any, source: Any
) -> None:
    # given
    activation_services.personalization_config_set(workspace=workspace, enabled=False)

    # when
    response = ask(source)

    # then
    assert response.json() == {**EMPTY, "reason": "disabled"}


def test_computed_traits_are_exposed_when_chosen(shop: Any, workspace: Any, source: Any) -> None:
    # given
    activation_services.computed_trait_create(
        workspace=workspace, key="identifies", name="Identifies", kind="count", event_name=""
    )
    activation_services.personalization_config_set(
        workspace=workspace, traits=["country", "plan"], computed_traits=["identifies"]
    )

    # when
    response = ask(source)

    # then
    assert response.json() == {
        "audiences": ["vip"],
        "traits": {"country": "DE", "plan": "vip", "identifies": 1},
        "reason": None,
    }


# --- personal data is never answered -----------------------------------------------------------


def test_a_personal_data_trait_cannot_be_exposed(workspace: Any) -> None:
    # given
    consent_services.purposes_ensure_defaults(workspace=workspace)

    # when / then
    with pytest.raises(PersonalizationInvalid) as caught:
        activation_services.personalization_config_set(workspace=workspace, traits=["email"])
    assert caught.value.field == "traits"
    assert PersonalizationConfig.objects.filter(workspace=workspace).count() == 0


def test_a_trait_reclassified_as_personal_data_is_no_longer_answered(
    shop: Any, workspace: Any, source: Any
) -> None:
    # given: `country` was exposed, then a steward classified it as personal data
    TraitSchema.objects.filter(workspace=workspace, key="country").update(
        classification=TraitClass.PII
    )

    # when
    response = ask(source)

    # then
    assert response.json() == {"audiences": ["vip"], "traits": {}, "reason": None}
    assert EMAIL not in response.content.decode()
    assert USER not in response.content.decode()


# --- userId lookups ------------------------------------------------------------------------------


def test_user_id_lookups_are_refused_unless_the_workspace_accepts_them(
    shop: Any, workspace: Any, source: Any
) -> None:
    # when
    refused = ask(source, anonymousId="", userId=USER)
    activation_services.personalization_config_set(workspace=workspace, accept_user_id=True)
    accepted = ask(source, anonymousId="", userId=USER)

    # then
    assert refused.status_code == 400
    assert refused.json()["code"] == "user_id_not_accepted"
    assert accepted.status_code == 200
    assert accepted.json()["audiences"] == ["vip"]


def test_a_source_that_verifies_identities_wants_the_user_hash_with_a_user_id(
    shop: Any, workspace: Any, source: Any
) -> None:
    # given: userId lookups accepted, and the source verifying identities
    activation_services.personalization_config_set(workspace=workspace, accept_user_id=True)
    secret = profile_services.source_identity_verification_enable(source=source).secret
    other = profile_services.source_create(workspace=workspace, name="App")
    other_secret = profile_services.source_identity_verification_enable(source=other).secret
    good = profile_selectors.user_hash_for(secret=secret, user_id=USER)
    # when
    missing = ask(source, anonymousId="", userId=USER)
    wrong = ask(source, anonymousId="", userId=USER, userHash="0" * 64)
    elsewhere = ask(
        source, anonymousId="", userId=USER,
        userHash=profile_selectors.user_hash_for(secret=other_secret, user_id=USER),
    )  # fmt: skip
    right = ask(source, anonymousId="", userId=USER, userHash=good)
    anonymous = ask(source)
    # then: nothing about the person without the site's own hash; an anonymousId needs none
    assert (missing.status_code, missing.json()["code"]) == (401, "identity_verification_required")
    assert (wrong.status_code, wrong.json()["code"]) == (403, "identity_verification_failed")
    assert (elsewhere.status_code, elsewhere.json()["code"]) == (
        403,
        "identity_verification_failed",
    )
    for refused in (missing, wrong, elsewhere):
        assert set(refused.json()) == {"code", "message"}
    assert (right.status_code, right.json()["audiences"]) == (200, ["vip"])
    assert (anonymous.status_code, anonymous.json()["audiences"]) == (200, ["vip"])


def test_a_verifying_source_refuses_a_user_id_with_surrounding_whitespace(
    shop: Any, workspace: Any, source: Any
) -> None:
    # given: the hash of the string sent, which profiles would find as USER trimmed
    activation_services.personalization_config_set(workspace=workspace, accept_user_id=True)
    secret = profile_services.source_identity_verification_enable(source=source).secret
    padded = f" {USER} "
    # when
    response = ask(
        source,
        anonymousId="",
        userId=padded,
        userHash=profile_selectors.user_hash_for(secret=secret, user_id=padded),
    )
    # then
    assert (response.status_code, response.json()["code"]) == (400, "invalid_user_id")
    assert set(response.json()) == {"code", "message"}


# --- authentication, CORS, bad input ---------------------------------------------------------


def test_a_wrong_write_key_is_401(shop: Any) -> None:
    # when
    response = APIClient().get(
        "/v1/personalize", {"writeKey": "wk_not_a_key", "anonymousId": ANON}, HTTP_ORIGIN=SHOP
    )

    # then
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_write_key"
    assert response["WWW-Authenticate"] == 'Basic realm="collect"'


def test_no_write_key_is_401(shop: Any) -> None:
    # when
    response = APIClient().get("/v1/personalize", {"anonymousId": ANON})

    # then
    assert response.status_code == 401
    assert response.json()["code"] == "missing_write_key"


def test_a_disabled_source_is_403(shop: Any, source: Any) -> None:
    # given
    source.enabled = False
    source.save(update_fields=["enabled"])

    # when
    response = ask(source)

    # then
    assert response.status_code == 403
    assert response.json()["code"] == "source_disabled"


def test_another_origin_is_refused_without_cors_headers(shop: Any, source: Any) -> None:
    # when
    response = ask(source, origin=ELSEWHERE)

    # then
    assert response.status_code == 403
    assert response.json()["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in response


def test_the_preflight_is_answered_for_a_source_origin_only(source: Any) -> None:
    # when
    allowed = APIClient().options(
        "/v1/personalize",
        HTTP_ORIGIN=SHOP,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization",
    )
    refused = APIClient().options(
        "/v1/personalize", HTTP_ORIGIN=ELSEWHERE, HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET"
    )

    # then
    assert allowed.status_code == 204
    assert allowed["Access-Control-Allow-Origin"] == SHOP
    assert "GET" in allowed["Access-Control-Allow-Methods"]
    assert "authorization" in allowed["Access-Control-Allow-Headers"]
    assert refused.status_code == 204
    assert "Access-Control-Allow-Origin" not in refused


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"anonymousId": ""}, "missing_identity"),
        ({"anonymousId": "x" * 257}, "invalid"),
        ({"jurisdiction": "Germany"}, "invalid"),
    ],
)
def test_bad_input_is_400(shop: Any, source: Any, params: dict[str, str], code: str) -> None:
    # when
    response = ask(source, **params)

    # then
    assert response.status_code == 400
    assert response.json()["code"] == code


def test_calls_count_against_the_source_rate_limit(shop: Any, source: Any) -> None:
    # given
    cache.clear()
    source.rate_limit_per_minute = 1
    source.save(update_fields=["rate_limit_per_minute"])

    # when
    first = ask(source)
    second = ask(source)

    # then
    assert first.status_code == 200
    assert second.status_code == 429
    assert int(second["Retry-After"]) >= 1


def test_the_selector_names_no_identifier_in_its_answer(shop: Any, workspace: Any) -> None:
    # when
    answer = activation_selectors.personalization_for_visitor(
        workspace=workspace, identities=[("anonymous_id", ANON)]
    )

    # then
    assert answer.audiences == ["vip"]
    assert answer.traits == {"country": "DE"}
    assert answer.reason is None
