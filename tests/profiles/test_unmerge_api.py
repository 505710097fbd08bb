"""Undoing a merge through the management API and the admin: auth, workspace scoping, bad
input, and the happy path."""

from __future__ import annotations

from typing import Any

import pytest
from auditlog import get_logentry_model
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from profiles import services
from profiles.enums import ProfileStatus, WorkspaceRole
from profiles.models import Merge, Profile
from tests.profiles.ingest_helpers import msg


@pytest.fixture
def source(workspace: Any) -> Any:
    return services.source_create(workspace=workspace, name="Web")


def person(source: Any, anon: str) -> Any:
    return services.ingest_messages(
        source=source, messages=[msg("identify", anonymous_id=anon, traits={"plan": anon})]
    ).profile_ids[0]


@pytest.fixture
def merged(source: Any) -> tuple[Any, Any, Merge]:
    """Ann absorbed Bob: his anonymous id was seen with hers."""
    ann, bob = person(source, "ann"), person(source, "bob")
    services.ingest_messages(
        source=source, messages=[msg("alias", anonymous_id="ann", previous_id="bob")]
    )
    merge = Merge.objects.get()
    assert (merge.survivor_id, merge.absorbed_id) == (ann, bob)
    return ann, bob, merge


def token_client(workspace: Any, permissions: list[str]) -> APIClient:
    issued = services.api_token_create(workspace=workspace, name="crm", permissions=permissions)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    return client


def url(profile_id: Any, merge_id: Any, slash: bool = True) -> str:
    return f"/api/v1/profiles/{profile_id}/merges/{merge_id}/unmerge" + ("/" if slash else "")


def still_merged(bob: Any, merge: Merge) -> bool:
    merge.refresh_from_db()
    return merge.unmerged_at is None and Profile.objects.get(pk=bob).status == ProfileStatus.MERGED


# --- API -------------------------------------------------------------------------------------


@pytest.mark.parametrize("slash", [True, False])
def test_api_unmerge_gives_the_profile_back(
    workspace: Any, merged: tuple[Any, Any, Merge], slash: bool
) -> None:
    # given
    ann, bob, merge = merged
    client = token_client(workspace, [WorkspaceRole.MERGE_PROFILES])
    # when
    response = client.post(url(ann, merge.pk, slash), {"reason": "two people"}, format="json")
    # then
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["merge_id"], body["survivor_id"], body["restored_id"]) == (
        merge.pk, str(ann), str(bob),
    )  # fmt: skip
    assert body["profile_ids"] == [str(bob)]
    assert (body["identities"], body["traits"], body["events"], body["data_keys"]) == (1, 1, 1, 1)
    assert body["unmerged_at"]
    assert Profile.objects.get(pk=bob).status == ProfileStatus.ACTIVE
    log = get_logentry_model()
    entry = log.objects.get_for_object(merge).get(action=log.Action.UPDATE)
    assert entry.additional_data["via"] == "api:crm"
    assert entry.additional_data["reason"] == "two people"


def test_api_unmerge_through_the_absorbed_id_finds_the_survivors_merge(
    workspace: Any, merged: tuple[Any, Any, Merge]
) -> None:
    _ann, bob, merge = merged
    client = token_client(workspace, [WorkspaceRole.MERGE_PROFILES])
    response = client.post(url(bob, merge.pk), format="json")
    assert response.status_code == 200
    assert response.json()["restored_id"] == str(bob)


@pytest.mark.parametrize("slash", [True, False])
@pytest.mark.parametrize(
    ("credentials", "status", "code"),
    [
        (None, 401, None),
        ("Bearer cdp_not-a-token", 401, None),
        ([WorkspaceRole.VIEW_PROFILES, WorkspaceRole.REVEAL_PII], 403, "forbidden"),
    ],
)
def test_api_unmerge_needs_a_token_with_merge_profiles(
    workspace: Any,
    merged: tuple[Any, Any, Merge],
    credentials: Any,
    status: int,
    code: Any,
    slash: bool,
) -> None:
    ann, bob, merge = merged
    if isinstance(credentials, list):
        client = token_client(workspace, credentials)
    else:
        client = APIClient()
        if credentials:
            client.credentials(HTTP_AUTHORIZATION=credentials)
    response = client.post(url(ann, merge.pk, slash), format="json")
    assert response.status_code == status
    if code:
        assert response.json()["code"] == code
    assert still_merged(bob, merge)


@pytest.mark.parametrize("slash", [True, False])
def test_api_unmerge_of_another_workspace_is_not_found(
    merged: tuple[Any, Any, Merge], other_workspace: Any, slash: bool
) -> None:
    # given: a token of another workspace, with every role
    ann, bob, merge = merged
    client = token_client(other_workspace, list(WorkspaceRole.values))
    # when
    response = client.post(url(ann, merge.pk, slash), format="json")
    # then: exactly like an unknown profile
    assert response.status_code == 404
    assert response.json()["code"] == "profile_not_found"
    # and with a profile of its own workspace, the merge is not found either
    other = person(services.source_create(workspace=other_workspace, name="Web"), "x")
    response = client.post(url(other, merge.pk, slash), format="json")
    assert (response.status_code, response.json()["code"]) == (404, "merge_not_found")
    assert still_merged(bob, merge)


@pytest.mark.parametrize("merge_id", ["abc", "-1", "99999", "1" * 40, "1.5"])
def test_api_unmerge_of_an_unknown_merge_is_not_found(
    workspace: Any, merged: tuple[Any, Any, Merge], merge_id: str
) -> None:
    ann, bob, merge = merged
    client = token_client(workspace, [WorkspaceRole.MERGE_PROFILES])
    response = client.post(url(ann, merge_id), format="json")
    assert (response.status_code, response.json()["code"]) == (404, "merge_not_found")
    assert still_merged(bob, merge)


def test_api_unmerge_of_a_merge_of_another_profile_is_not_found(
    source: Any, workspace: Any, merged: tuple[Any, Any, Merge]
) -> None:
    _ann, bob, merge = merged
    cleo = person(source, "cleo")
    client = token_client(workspace, [WorkspaceRole.MERGE_PROFILES])
    response = client.post(url(cleo, merge.pk), format="json")
    assert (response.status_code, response.json()["code"]) == (404, "merge_not_found")
    assert still_merged(bob, merge)


def test_api_unmerge_refuses_an_undone_merge_and_an_older_one(
    source: Any, workspace: Any, merged: tuple[Any, Any, Merge]
) -> None:
    # given: Ann absorbs Cleo after Bob
    ann, bob, first = merged
    person(source, "cleo")
    services.ingest_messages(
        source=source, messages=[msg("alias", anonymous_id="ann", previous_id="cleo")]
    )
    second = Merge.objects.latest("pk")
    client = token_client(workspace, [WorkspaceRole.MERGE_PROFILES])
    # when / then: the older merge first
    response = client.post(url(ann, first.pk), format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "later_merge_depends"
    assert still_merged(bob, first)
    # the later one, then the same again
    assert client.post(url(ann, second.pk), format="json").status_code == 200
    again = client.post(url(ann, second.pk), format="json")
    assert (again.status_code, again.json()["code"]) == (409, "already_unmerged")
    # then the older one
    assert client.post(url(ann, first.pk), format="json").status_code == 200


def test_api_unmerge_rejects_a_bad_body(workspace: Any, merged: tuple[Any, Any, Merge]) -> None:
    ann, bob, merge = merged
    client = token_client(workspace, [WorkspaceRole.MERGE_PROFILES])
    response = client.post(url(ann, merge.pk), {"reason": "x" * 501}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert still_merged(bob, merge)


# --- admin -----------------------------------------------------------------------------------


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def admin_url(profile_id: Any, merge: Merge) -> str:
    return reverse("admin:profiles_profile_unmerge", args=[profile_id, merge.pk])


def test_admin_profile_page_offers_undo_to_stewards_who_may(
    owner: Any, member: Any, merged: tuple[Any, Any, Merge]
) -> None:
    ann, _bob, merge = merged
    page = reverse("admin:profiles_profile_change", args=[ann])
    assert admin_url(ann, merge).encode() in client_for(owner).get(page).content
    member_page = client_for(member).get(page)
    assert member_page.status_code == 200
    assert admin_url(ann, merge).encode() not in member_page.content


def test_admin_unmerge_with_a_reason_undoes_it(owner: Any, merged: tuple[Any, Any, Merge]) -> None:
    ann, bob, merge = merged
    client = client_for(owner)
    form = client.get(admin_url(ann, merge))
    assert form.status_code == 200
    assert str(bob).encode() in form.content
    # a POST without a reason changes nothing
    assert client.post(admin_url(ann, merge), {"reason": " "}).status_code == 200
    assert still_merged(bob, merge)
    # with one
    response = client.post(admin_url(ann, merge), {"reason": "two people"}, follow=True)
    assert response.status_code == 200
    assert b"undone" in response.content
    assert Profile.objects.get(pk=bob).status == ProfileStatus.ACTIVE
    log = get_logentry_model()
    entry = log.objects.get_for_object(merge).get(action=log.Action.UPDATE)
    assert (entry.actor, entry.additional_data["via"]) == (owner, "admin")
    # and again: refused, with the reason shown
    again = client.post(admin_url(ann, merge), {"reason": "again"}, follow=True)
    assert b"undone already" in again.content


def test_admin_unmerge_is_forbidden_without_the_role_and_hidden_across_workspaces(
    member: Any, outsider: Any, merged: tuple[Any, Any, Merge]
) -> None:
    ann, bob, merge = merged
    assert client_for(member).post(admin_url(ann, merge), {"reason": "x"}).status_code == 403
    assert client_for(outsider).post(admin_url(ann, merge), {"reason": "x"}).status_code == 404
    assert still_merged(bob, merge)


def test_admin_merge_list_action_undoes_most_recent_first(
    source: Any, owner: Any, merged: tuple[Any, Any, Merge]
) -> None:
    person(source, "cleo")
    services.ingest_messages(
        source=source, messages=[msg("alias", anonymous_id="ann", previous_id="cleo")]
    )
    response = client_for(owner).post(
        reverse("admin:profiles_merge_changelist"),
        {"action": "unmerge", "_selected_action": [str(m.pk) for m in Merge.objects.all()]},
        follow=True,
    )
    assert response.status_code == 200
    assert b"2 merge(s) undone." in response.content
    assert not Merge.objects.filter(unmerged_at__isnull=True).exists()
    assert Profile.objects.filter(status=ProfileStatus.ACTIVE).count() == 3


def test_admin_merge_list_has_no_undo_action_for_viewers(
    member: Any, merged: tuple[Any, Any, Merge]
) -> None:
    _ann, bob, merge = merged
    response = client_for(member).post(
        reverse("admin:profiles_merge_changelist"),
        {"action": "unmerge", "_selected_action": [str(merge.pk)]},
        follow=True,
    )
    assert b"2 merge(s) undone." not in response.content
    assert still_merged(bob, merge)
