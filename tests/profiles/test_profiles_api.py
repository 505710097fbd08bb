"""Management API for profiles: lookup and list, detail with masked or audited reveal, event
timeline, identities, merges; always scoped to the token's workspace."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from auditlog import get_logentry_model
from django.utils import timezone
from rest_framework.test import APIClient

from profiles import services
from profiles.enums import ProfileStatus, WorkspaceRole
from profiles.models import Event, IdentityPolicy, IdentityRule, MergeConflict, Profile
from profiles.views_model import MASK
from tests.profiles.ingest_helpers import msg

ACCESS = 3  # auditlog's LogEntry.Action.ACCESS
SENTINEL = "zq-sentinel"
EMAIL = f"{SENTINEL}@example.com"
ENDPOINTS = ["", "events/", "identities/", "merges/"]


@pytest.fixture
def source(workspace: Any) -> Any:
    return services.source_create(workspace=workspace, name="Web")


@pytest.fixture
def profile(source: Any) -> Profile:
    """Jane: a user id, an email, a PII trait holding the sentinel and a plain attribute."""
    outcome = services.ingest_messages(
        source=source,
        messages=[
            msg(
                "identify",
                user_id="u-1",
                traits={"email": EMAIL, "first_name": SENTINEL, "plan": "pro"},
                minutes=5,
            )
        ],
    )
    return Profile.objects.get(pk=outcome.profile_ids[0])


def token_client(workspace: Any, permissions: list[str], name: str = "crm") -> APIClient:
    issued = services.api_token_create(workspace=workspace, name=name, permissions=permissions)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    return client


def access_entries() -> Any:
    return get_logentry_model().objects.filter(action=ACCESS)


def url(profile_id: Any, endpoint: str = "") -> str:
    return f"/api/v1/profiles/{profile_id}/{endpoint}"


# --- authentication and permissions --------------------------------------------------------


def test_no_token_is_unauthenticated(profile: Profile) -> None:
    # when
    response = APIClient().get(url(profile.pk))
    # then
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"


def test_revoked_token_is_unauthenticated(workspace: Any, profile: Profile) -> None:
    # given
    issued = services.api_token_create(
        workspace=workspace, name="old", permissions=[WorkspaceRole.VIEW_PROFILES]
    )
    services.api_token_revoke(token=issued.token)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    # when
    response = client.get("/api/v1/profiles/")
    # then
    assert response.status_code == 401
    assert response.json() == {"code": "unauthenticated", "message": "Invalid or revoked token."}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_token_without_view_profiles_is_forbidden(
    workspace: Any, profile: Profile, endpoint: str
) -> None:
    # given
    client = token_client(workspace, [WorkspaceRole.MANAGE_CONSENT])
    # when
    response = client.get(url(profile.pk, endpoint))
    # then
    assert response.status_code == 403
    assert response.json() == {
        "code": "forbidden",
        "message": "This token lacks the 'view_profiles' permission.",
    }


def test_token_without_view_profiles_cannot_list(workspace: Any, profile: Profile) -> None:
    # given
    client = token_client(workspace, [WorkspaceRole.MANAGE_CONSENT])
    # when
    response = client.get("/api/v1/profiles/", {"email": EMAIL})
    # then
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


@pytest.mark.parametrize("endpoint", ["", "identities/"])
def test_readonly_token_cannot_reveal(
    api_client_readonly: APIClient, profile: Profile, endpoint: str
) -> None:
    # when
    response = api_client_readonly.get(
        url(profile.pk, endpoint), {"reveal": "true", "reason": "support ticket 42"}
    )
    # then
    assert response.status_code == 403
    assert response.json() == {
        "code": "forbidden",
        "message": "This token lacks the 'reveal_pii' permission.",
    }
    assert SENTINEL not in response.content.decode()
    assert access_entries().count() == 0


# --- the outsider: another workspace's token ------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_outsider_gets_not_found_and_nothing_is_written(
    outsider_api_client: APIClient, profile: Profile, endpoint: str
) -> None:
    # given
    entries_before = get_logentry_model().objects.count()
    # when
    response = outsider_api_client.get(
        url(profile.pk, endpoint), {"reveal": "true", "reason": "curious"}
    )
    # then
    assert response.status_code == 404
    assert response.json() == {"code": "profile_not_found", "message": "No such profile."}
    assert access_entries().count() == 0
    assert get_logentry_model().objects.count() == entries_before
    profile.refresh_from_db()
    assert (profile.status, profile.attributes) == (ProfileStatus.ACTIVE, {"plan": "pro"})


def test_outsider_lookup_by_identifier_finds_nothing(
    outsider_api_client: APIClient, profile: Profile
) -> None:
    # when
    response = outsider_api_client.get("/api/v1/profiles/", {"email": EMAIL})
    # then
    assert response.status_code == 200
    assert response.json() == {"next": None, "previous": None, "results": []}


def test_outsider_list_does_not_include_other_workspaces(
    outsider_api_client: APIClient, profile: Profile
) -> None:
    # when
    response = outsider_api_client.get("/api/v1/profiles/")
    # then
    assert response.status_code == 200
    assert response.json()["results"] == []


# --- bad input ------------------------------------------------------------------------------


def test_two_identifier_parameters_are_invalid(api_client: APIClient, profile: Profile) -> None:
    # when
    response = api_client.get("/api/v1/profiles/", {"email": EMAIL, "user_id": "u-1"})
    # then
    assert response.status_code == 400
    assert response.json() == {
        "code": "invalid",
        "message": "Give at most one identifier parameter.",
    }


def test_a_repeated_identifier_parameter_is_invalid(
    api_client: APIClient, profile: Profile
) -> None:
    # when
    response = api_client.get("/api/v1/profiles/?user_id=u-1&user_id=u-2")
    # then
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_malformed_or_unknown_id_is_not_found(api_client: APIClient, endpoint: str) -> None:
    # when
    malformed = api_client.get(url("not-a-uuid", endpoint))
    unknown = api_client.get(url("0190aaaa-0000-7000-8000-000000000000", endpoint))
    # then
    assert (malformed.status_code, unknown.status_code) == (404, 404)
    assert (
        malformed.json()
        == unknown.json()
        == {
            "code": "profile_not_found",
            "message": "No such profile.",
        }
    )


@pytest.mark.parametrize("reason", [None, "", "   "])
@pytest.mark.parametrize("endpoint", ["", "identities/"])
def test_reveal_without_reason_is_refused(
    api_client: APIClient, profile: Profile, endpoint: str, reason: str | None
) -> None:
    # given
    query = {"reveal": "true"} if reason is None else {"reveal": "true", "reason": reason}
    # when
    response = api_client.get(url(profile.pk, endpoint), query)
    # then
    assert response.status_code == 400
    assert response.json() == {
        "code": "reason_required",
        "message": "A reason is required to reveal personal data.",
    }
    assert SENTINEL not in response.content.decode()
    assert access_entries().count() == 0


# --- lookup and list ------------------------------------------------------------------------


def test_lookup_by_email_normalizes_case_and_whitespace(
    api_client: APIClient, profile: Profile
) -> None:
    # given: stored as zq-sentinel@example.com
    # when
    response = api_client.get("/api/v1/profiles/", {"email": "  ZQ-Sentinel@Example.COM "})
    # then
    assert response.status_code == 200
    body = response.json()
    assert (body["next"], body["previous"]) == (None, None)
    assert [p["id"] for p in body["results"]] == [str(profile.pk)]
    assert body["results"][0]["attributes"] == {"plan": "pro"}
    assert body["results"][0]["merge_count"] == 0


@pytest.mark.parametrize(
    ("parameter", "value"),
    [("user_id", "u-1"), ("USER_ID", " u-1 "), ("email", EMAIL)],
)
def test_lookup_by_any_identifier_type(
    api_client: APIClient, profile: Profile, parameter: str, value: str
) -> None:
    # when
    response = api_client.get(f"/api/v1/profiles/?{parameter}={quote(value)}")
    # then
    assert [p["id"] for p in response.json()["results"]] == [str(profile.pk)]


def test_lookup_by_a_workspace_own_identifier_type(api_client: APIClient, source: Any) -> None:
    # given
    outcome = services.ingest_messages(
        source=source,
        messages=[
            msg(
                "identify",
                user_id="u-7",
                context={"externalIds": [{"id": "L-1001", "type": "loyalty_id"}]},
            )
        ],
    )
    # when
    response = api_client.get("/api/v1/profiles/", {"loyalty_id": "L-1001"})
    # then
    assert [p["id"] for p in response.json()["results"]] == [str(outcome.profile_ids[0])]


@pytest.mark.parametrize(
    ("parameter", "value"),
    [("email", "nobody@example.com"), ("email", "not an email"), ("phone", "+4930123456")],
)
def test_lookup_without_a_match_is_an_empty_page(
    api_client: APIClient, profile: Profile, parameter: str, value: str
) -> None:
    # when
    response = api_client.get("/api/v1/profiles/", {parameter: value})
    # then
    assert response.status_code == 200
    assert response.json() == {"next": None, "previous": None, "results": []}


@pytest.mark.parametrize("parameter", ["emial", "reveal", "crm_id", "loy%00alty", "%21"])
def test_a_parameter_that_names_no_identifier_type_is_refused(
    api_client: APIClient, profile: Profile, parameter: str
) -> None:
    # given: a misspelt parameter answered an empty page, as if nobody had that identifier
    # when
    response = api_client.get(f"/api/v1/profiles/?{parameter}=x")
    # then
    assert response.status_code == 400
    assert response.json()["code"] == "unknown_identifier_type"


def test_an_unknown_identifier_type_is_named(api_client: APIClient, profile: Profile) -> None:
    # when
    response = api_client.get("/api/v1/profiles/", {"emial": EMAIL})
    # then
    assert response.json() == {
        "code": "unknown_identifier_type",
        "message": "Unknown identifier type: emial.",
    }


def test_a_declared_identifier_type_without_identities_is_an_empty_page(
    api_client: APIClient, workspace: Any, profile: Profile
) -> None:
    # given: declared by an identity rule and by a trait mapping, held by nobody yet
    IdentityRule.objects.create(workspace=workspace, identifier_type="crm_id")
    IdentityPolicy.objects.update_or_create(
        workspace=workspace, defaults={"trait_identifiers": {"loyalty": "Loyalty ID"}}
    )
    # when
    by_rule = api_client.get("/api/v1/profiles/", {"crm_id": "c-1"})
    by_mapping = api_client.get("/api/v1/profiles/", {"loyalty_id": "L-1"})
    # then
    for response in (by_rule, by_mapping):
        assert response.status_code == 200
        assert response.json() == {"next": None, "previous": None, "results": []}


def test_list_pages_through_active_profiles_newest_first(
    api_client: APIClient, source: Any
) -> None:
    # given: three profiles, two of them merged into one
    services.ingest_messages(source=source, messages=[msg(anonymous_id="a-1")])
    services.ingest_messages(source=source, messages=[msg(anonymous_id="a-2")])
    services.ingest_messages(source=source, messages=[msg(anonymous_id="a-3")])
    services.ingest_messages(
        source=source,
        messages=[msg("identify", user_id="u-1", anonymous_id="a-1")],
    )
    services.ingest_messages(
        source=source,
        messages=[msg("identify", user_id="u-1", anonymous_id="a-2")],
    )
    active = list(
        Profile.objects.filter(status=ProfileStatus.ACTIVE)
        .order_by("-created_at", "-id")
        .values_list("pk", flat=True)
    )
    # when
    first = api_client.get("/api/v1/profiles/", {"page_size": 1})
    second = api_client.get(first.json()["next"])
    # then
    assert len(active) == 2
    assert [p["id"] for p in first.json()["results"]] == [str(active[0])]
    assert [p["id"] for p in second.json()["results"]] == [str(active[1])]
    assert second.json()["next"] is None
    assert set(first.json()["results"][0]) == {
        "id",
        "created_at",
        "first_seen_at",
        "last_seen_at",
        "attributes",
        "merge_count",
    }


# --- detail and identities: masked, revealed -----------------------------------------------


def test_detail_masks_personal_data(api_client: APIClient, profile: Profile) -> None:
    # when
    response = api_client.get(url(profile.pk))
    # then
    assert response.status_code == 200
    body = response.json()
    assert SENTINEL not in response.content.decode()
    assert (body["id"], body["revealed"], body["merged_from"]) == (str(profile.pk), False, [])
    assert body["attributes"] == {"plan": "pro"}
    assert [(i["type"], i["value"], i["source"]) for i in body["identities"]] == [
        ("email", MASK, "Web"),
        ("user_id", MASK, "Web"),
    ]
    assert [(t["key"], t["is_pii"], t["value"]) for t in body["traits"]] == [
        ("email", True, MASK),
        ("first_name", True, MASK),
        ("plan", False, "pro"),
    ]
    assert access_entries().count() == 0


def test_detail_reveal_decrypts_and_writes_an_access_entry(
    workspace: Any, profile: Profile
) -> None:
    # given
    client = token_client(workspace, list(WorkspaceRole.values), name="helpdesk")
    # when
    response = client.get(url(profile.pk), {"reveal": "true", "reason": "  ticket 42  "})
    # then
    assert response.status_code == 200
    body = response.json()
    assert body["revealed"] is True
    assert [(i["type"], i["value"]) for i in body["identities"]] == [
        ("email", EMAIL),
        ("user_id", "u-1"),
    ]
    assert [(t["key"], t["value"]) for t in body["traits"]] == [
        ("email", EMAIL),
        ("first_name", SENTINEL),
        ("plan", "pro"),
    ]
    [entry] = access_entries()
    assert (entry.object_pk, entry.actor) == (str(profile.pk), None)
    assert entry.additional_data == {
        "reason": "ticket 42",
        "fields": ["identities", "traits"],
        "via": "api:helpdesk",
    }


def test_reveal_records_the_person_who_created_the_token(
    workspace: Any, owner: Any, profile: Profile
) -> None:
    # given
    issued = services.api_token_create(
        workspace=workspace, name="owner-cli", permissions=WorkspaceRole.values, created_by=owner
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    # when
    client.get(url(profile.pk, "identities/"), {"reveal": "true", "reason": "ticket 43"})
    # then
    [entry] = access_entries()
    assert entry.actor == owner
    assert entry.additional_data["via"] == "api:owner-cli"


def test_reveal_false_stays_masked_without_an_entry(
    api_client: APIClient, profile: Profile
) -> None:
    # when
    response = api_client.get(url(profile.pk), {"reveal": "false", "reason": "ticket 42"})
    # then
    assert response.json()["revealed"] is False
    assert SENTINEL not in response.content.decode()
    assert access_entries().count() == 0


def test_identities_masked(api_client_readonly: APIClient, profile: Profile) -> None:
    # when
    response = api_client_readonly.get(url(profile.pk, "identities/"))
    # then
    assert response.status_code == 200
    body = response.json()
    assert SENTINEL not in response.content.decode()
    assert (body["profile_id"], body["revealed"]) == (str(profile.pk), False)
    assert [(i["type"], i["value"], i["source"]) for i in body["results"]] == [
        ("email", MASK, "Web"),
        ("user_id", MASK, "Web"),
    ]
    assert (body["results"][0]["first_seen_at"], body["results"][0]["last_seen_at"]) == (
        "2026-11-01T12:05:00Z",
        "2026-11-01T12:05:00Z",
    )


def test_identities_revealed_with_reason(api_client: APIClient, profile: Profile) -> None:
    # when
    response = api_client.get(
        url(profile.pk, "identities/"), {"reveal": "true", "reason": "ticket 44"}
    )
    # then
    assert response.status_code == 200
    assert [(i["type"], i["value"]) for i in response.json()["results"]] == [
        ("email", EMAIL),
        ("user_id", "u-1"),
    ]
    [entry] = access_entries()
    assert (entry.object_pk, entry.additional_data["reason"]) == (str(profile.pk), "ticket 44")


# --- merges ---------------------------------------------------------------------------------


@pytest.fixture
def merged(source: Any) -> tuple[Any, Any]:
    """Two devices of one person, merged when they log in on both: (survivor, absorbed)."""
    services.ingest_messages(source=source, messages=[msg(anonymous_id="phone-anon")])
    services.ingest_messages(source=source, messages=[msg(anonymous_id="laptop-anon")])
    services.ingest_messages(
        source=source, messages=[msg("identify", user_id="u-1", anonymous_id="phone-anon")]
    )
    services.ingest_messages(
        source=source, messages=[msg("identify", user_id="u-1", anonymous_id="laptop-anon")]
    )
    survivor = Profile.objects.get(status=ProfileStatus.ACTIVE)
    absorbed = Profile.objects.get(status=ProfileStatus.MERGED)
    return survivor.pk, absorbed.pk


def test_absorbed_id_answers_with_the_survivor(
    api_client: APIClient, merged: tuple[Any, Any]
) -> None:
    # given
    survivor, absorbed = merged
    # when
    response = api_client.get(url(absorbed))
    # then
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["merged_from"], body["merge_count"]) == (
        str(survivor),
        [str(absorbed)],
        1,
    )
    assert [i["type"] for i in body["identities"]] == ["anonymous_id", "anonymous_id", "user_id"]


def test_merges_lists_the_ledger(api_client: APIClient, merged: tuple[Any, Any]) -> None:
    # given
    survivor, absorbed = merged
    # when
    response = api_client.get(url(absorbed, "merges/"))
    # then
    assert response.status_code == 200
    body = response.json()
    assert body["profile_id"] == str(survivor)
    assert [
        (m["absorbed_id"], m["identifier_type"], m["rule"], m["unmerged_at"])
        for m in body["merges"]
    ] == [
        (
            str(absorbed),
            "anonymous_id",
            "deterministic: anonymous_id seen with user_id in one message",
            None,
        )
    ]
    assert body["conflicts"] == []


def test_merges_lists_open_conflicts_only(api_client: APIClient, source: Any) -> None:
    # given: a shared computer used by u-1, then u-2 logs in on it (refused), twice
    first = services.ingest_messages(
        source=source, messages=[msg("identify", user_id="u-1", anonymous_id="shared")]
    )
    second = services.ingest_messages(
        source=source,
        messages=[msg("identify", user_id="u-2", anonymous_id="shared", message_id="m-2")],
    )
    services.ingest_messages(
        source=source,
        messages=[msg("identify", user_id="u-2", anonymous_id="shared", message_id="m-3")],
    )
    # a steward already reviewed the second refusal
    MergeConflict.objects.filter(message_id="m-3").update(resolved_at=timezone.now())
    # when
    response = api_client.get(url(second.profile_ids[0], "merges/"))
    # then
    assert response.status_code == 200
    body = response.json()
    assert body["merges"] == []
    assert [
        (c["other_profile_id"], c["identifier_type"], c["reason"], c["message_id"])
        for c in body["conflicts"]
    ] == [(str(first.profile_ids[0]), "anonymous_id", "limit per profile of user_id", "m-2")]


# --- events ---------------------------------------------------------------------------------


def test_events_page_newest_first_without_sealed_data(api_client: APIClient, source: Any) -> None:
    # given
    outcome = services.ingest_messages(
        source=source,
        messages=[
            msg(anonymous_id="a-1", name="Viewed", message_id="m-1", minutes=1),
            msg(
                anonymous_id="a-1",
                name="Ordered",
                message_id="m-2",
                minutes=2,
                properties={"total": 42, "email": EMAIL},
                ip="203.0.113.77",
            ),
            msg(anonymous_id="a-1", name="Paid", message_id="m-3", minutes=3),
        ],
    )
    profile_id = outcome.profile_ids[0]
    # when
    first = api_client.get(url(profile_id, "events/"), {"page_size": 2})
    second = api_client.get(first.json()["next"])
    # then
    assert first.status_code == second.status_code == 200
    assert SENTINEL not in first.content.decode() + second.content.decode()
    assert "203.0.113.77" not in first.content.decode()
    assert [e["message_id"] for e in first.json()["results"]] == ["m-3", "m-2"]
    assert [e["message_id"] for e in second.json()["results"]] == ["m-1"]
    assert second.json()["next"] is None
    ordered = first.json()["results"][1]
    assert {k: v for k, v in ordered.items() if k != "id"} == {
        "message_id": "m-2",
        "type": "track",
        "name": "Ordered",
        "timestamp": "2026-11-01T12:02:00Z",
        "received_at": "2026-11-01T12:02:00Z",
        "source": "Web",
        "properties": {"total": 42},
        "context": {"ip_truncated": "203.0.113.0"},
    }


def test_events_refuse_a_parameter_they_do_not_know(
    api_client: APIClient, profile: Profile
) -> None:
    # when
    response = api_client.get(url(profile.pk, "events/"), {"type": "track", "page_size": "5"})
    # then
    assert response.status_code == 400
    assert response.json() == {
        "code": "unknown_parameter",
        "message": "Unknown query parameter(s): type.",
        "parameters": ["type"],
    }


def test_events_of_an_absorbed_id_are_the_survivors(
    api_client: APIClient, merged: tuple[Any, Any]
) -> None:
    # given
    survivor, absorbed = merged
    expected = list(
        Event.objects.filter(profile_id=survivor)
        .order_by("-timestamp", "-id")
        .values_list("message_id", flat=True)
    )
    # when
    response = api_client.get(url(absorbed, "events/"))
    # then
    assert len(expected) == 4
    assert [e["message_id"] for e in response.json()["results"]] == expected
