"""Workspaces, steward roles and API tokens: the management commands, the role services and
selectors, and the admin's workspace scoping (a steward sees only their workspaces' rows)."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from guardian.shortcuts import get_perms
from rest_framework.test import APIClient

from profiles import selectors, services
from profiles.enums import WorkspaceRole
from profiles.exceptions import UnknownPermission
from profiles.models import ApiToken, Profile, Workspace
from tests.profiles.factories import UserFactory, WorkspaceFactory, make_profile

CHOICES = (
    "view_profiles, reveal_pii, manage_consent, handle_requests, manage_audiences, view_audit, "
    "merge_profiles, manage_data"
)


def _tokens() -> list[tuple[Any, ...]]:
    return list(
        ApiToken.objects.order_by("pk").values_list(
            "pk", "workspace__slug", "name", "token_hash", "permissions", "revoked_at"
        )
    )


def _run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# --- commands -----------------------------------------------------------------------------


def test_create_workspace_command(db: Any) -> None:
    # when
    out, _err = _run("create_workspace", "initech", "--name", "Initech")

    # then
    assert out == "Created workspace initech\n"
    assert list(Workspace.objects.values_list("slug", "name")) == [("initech", "Initech")]


def test_create_workspace_command_refuses_a_taken_slug(workspace: Workspace) -> None:
    # given
    before = list(Workspace.objects.values_list("pk", "slug", "name"))

    # when
    with pytest.raises(CommandError, match=r"^A workspace with that slug exists already\.$"):
        _run("create_workspace", "acme", "--name", "Another Acme")

    # then
    assert list(Workspace.objects.values_list("pk", "slug", "name")) == before


def test_create_api_token_prints_the_token_once_and_stores_its_hash(
    workspace: Workspace,
) -> None:
    # when
    out, err = _run(
        "create_api_token",
        "--workspace",
        "acme",
        "--name",
        "crm sync",
        "--permission",
        "view_profiles",
        "--permission",
        "handle_requests",
    )

    # then
    secret = out.strip()
    assert out == f"{secret}\n"
    assert secret.startswith("cdp_")
    assert len(secret) == 47
    assert err == "Store this token now; it is not shown again.\n"
    token = ApiToken.objects.get()
    assert token.workspace == workspace
    assert token.name == "crm sync"
    assert token.permissions == ["view_profiles", "handle_requests"]
    assert token.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert token.prefix == secret[:12]
    stored = [str(v) for v in ApiToken.objects.values().get().values()]
    assert not any(secret in value for value in stored)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert client.get("/api/v1/workspace/").json()["token_name"] == "crm sync"


def test_create_api_token_refuses_an_unknown_permission(workspace: Workspace) -> None:
    # when
    with pytest.raises(CommandError) as raised:
        _run("create_api_token", "--workspace", "acme", "--permission", "superuser")

    # then
    assert str(raised.value) == f"Unknown permission(s): superuser. Choose from: {CHOICES}."
    assert _tokens() == []


def test_create_api_token_refuses_an_unknown_workspace(workspace: Workspace) -> None:
    # when
    with pytest.raises(CommandError, match=r"^No such workspace\.$"):
        _run("create_api_token", "--workspace", "initech", "--permission", "view_profiles")

    # then
    assert _tokens() == []


def test_grant_role_command(workspace: Workspace) -> None:
    # given
    steward = UserFactory(username="alice")

    # when
    out, _err = _run(
        "grant_role", "--workspace", "acme", "--user", "alice", "--role", "view_profiles"
    )

    # then
    assert out == "Granted view_profiles on acme\n"
    assert get_perms(steward, workspace) == ["view_profiles"]


def test_grant_role_command_refuses_an_unknown_role(workspace: Workspace) -> None:
    # given
    steward = UserFactory(username="alice")

    # when
    with pytest.raises(CommandError) as raised:
        _run(
            "grant_role",
            "--workspace",
            "acme",
            "--user",
            "alice",
            "--role",
            "view_profiles",
            "--role",
            "admin",
        )

    # then
    assert str(raised.value) == f"Unknown permission(s): admin. Choose from: {CHOICES}."
    assert get_perms(steward, workspace) == []


@pytest.mark.parametrize(
    ("workspace_slug", "username", "message"),
    [("initech", "alice", "No such workspace."), ("acme", "mallory", "No such user.")],
)
def test_grant_role_command_refuses_unknown_workspace_or_user(
    workspace: Workspace, workspace_slug: str, username: str, message: str
) -> None:
    # given
    steward = UserFactory(username="alice")

    # when
    with pytest.raises(CommandError) as raised:
        _run(
            "grant_role",
            "--workspace",
            workspace_slug,
            "--user",
            username,
            "--role",
            "view_profiles",
        )

    # then
    assert str(raised.value) == message
    assert get_perms(steward, workspace) == []


# --- role services and selectors ----------------------------------------------------------


def test_steward_grant_roles_gives_object_permissions_on_that_workspace_only(
    workspace: Workspace, other_workspace: Workspace
) -> None:
    # given
    steward = UserFactory(username="alice")

    # when
    services.steward_grant_roles(
        workspace=workspace,
        user=steward,
        roles=[WorkspaceRole.REVEAL_PII, WorkspaceRole.VIEW_PROFILES, WorkspaceRole.REVEAL_PII],
    )

    # then
    assert sorted(get_perms(steward, workspace)) == ["reveal_pii", "view_profiles"]
    assert get_perms(steward, other_workspace) == []
    assert steward.has_perm("profiles.reveal_pii", workspace) is True
    assert steward.has_perm("profiles.reveal_pii") is False
    assert selectors.user_has_role(user=steward, workspace=workspace, role="reveal_pii") is True
    assert (
        selectors.user_has_role(user=steward, workspace=other_workspace, role="reveal_pii") is False
    )


def test_steward_grant_roles_refuses_an_unknown_role_and_grants_nothing(
    workspace: Workspace,
) -> None:
    # given
    steward = UserFactory(username="alice")

    # when
    with pytest.raises(UnknownPermission):
        services.steward_grant_roles(
            workspace=workspace, user=steward, roles=["view_profiles", "root"]
        )

    # then
    assert get_perms(steward, workspace) == []


def test_steward_revoke_roles(owner: Any, workspace: Workspace) -> None:
    # when
    services.steward_revoke_roles(workspace=workspace, user=owner, roles=["reveal_pii"])

    # then
    assert sorted(get_perms(owner, workspace)) == sorted(set(WorkspaceRole.values) - {"reveal_pii"})


def test_workspace_list_for_user(
    owner: Any, member: Any, outsider: Any, workspace: Workspace, other_workspace: Workspace
) -> None:
    # given
    superuser = UserFactory(username="root", is_superuser=True, is_staff=True)
    inactive = UserFactory(username="gone", is_active=False)
    services.steward_grant_roles(workspace=workspace, user=inactive, roles=["view_profiles"])
    WorkspaceFactory(slug="initech", name="Initech")

    # when
    def slugs(user: Any, role: str | None = None) -> list[str]:
        return sorted(w.slug for w in selectors.workspace_list_for_user(user=user, role=role))

    # then
    assert slugs(owner) == ["acme"]
    assert slugs(member) == ["acme"]
    assert slugs(outsider) == ["globex"]
    assert slugs(superuser) == ["acme", "globex", "initech"]
    assert slugs(AnonymousUser()) == []
    assert slugs(inactive) == []
    assert slugs(member, role="reveal_pii") == []
    assert slugs(owner, role="reveal_pii") == ["acme"]


# --- the admin ----------------------------------------------------------------------------


def _admin(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def tokens(workspace: Workspace, other_workspace: Workspace) -> dict[str, ApiToken]:
    return {
        "acme": services.api_token_create(
            workspace=workspace, name="acme crm", permissions=["view_profiles"]
        ).token,
        "globex": services.api_token_create(
            workspace=other_workspace, name="globex crm", permissions=["view_profiles"]
        ).token,
    }


def test_owner_sees_only_their_workspace_in_the_admin(
    owner: Any, other_workspace: Workspace
) -> None:
    # when
    response = _admin(owner).get("/admin/profiles/workspace/")

    # then
    assert response.status_code == 200
    assert [w.slug for w in response.context["cl"].result_list] == ["acme"]
    assert "Globex" not in response.content.decode()


def test_owner_sees_only_their_workspaces_tokens_in_the_admin(
    owner: Any, tokens: dict[str, ApiToken]
) -> None:
    # when
    response = _admin(owner).get("/admin/profiles/apitoken/")

    # then
    assert response.status_code == 200
    assert [t.name for t in response.context["cl"].result_list] == ["acme crm"]
    html = response.content.decode()
    assert "globex" not in html.lower()


def test_outsider_sees_no_acme_rows_in_the_admin(
    outsider: Any, workspace: Workspace, tokens: dict[str, ApiToken]
) -> None:
    # given
    client = _admin(outsider)

    # when
    workspaces = client.get("/admin/profiles/workspace/")
    api_tokens = client.get("/admin/profiles/apitoken/")
    acme_token = client.get(f"/admin/profiles/apitoken/{tokens['acme'].pk}/change/")
    acme = client.get(f"/admin/profiles/workspace/{workspace.pk}/change/")

    # then
    assert [w.slug for w in workspaces.context["cl"].result_list] == ["globex"]
    assert [t.name for t in api_tokens.context["cl"].result_list] == ["globex crm"]
    for response in (workspaces, api_tokens):
        assert response.status_code == 200
        assert "acme" not in response.content.decode().lower()
    for response in (acme_token, acme):
        assert response.status_code == 302
        assert response["Location"] == "/admin/"


def test_outsider_cannot_revoke_acme_tokens_from_the_admin(
    outsider: Any, tokens: dict[str, ApiToken]
) -> None:
    # given
    before = _tokens()

    # when
    response = _admin(outsider).post(
        "/admin/profiles/apitoken/",
        {"action": "revoke", "_selected_action": [tokens["acme"].pk]},
    )

    # then
    assert response.status_code == 200
    assert "Revoke the selected tokens" not in response.content.decode()
    assert _tokens() == before


def test_member_cannot_revoke_tokens_from_the_admin(
    member: Any, tokens: dict[str, ApiToken]
) -> None:
    # given: revoking is a change; token changes are for superusers
    before = _tokens()

    # when
    response = _admin(member).post(
        "/admin/profiles/apitoken/",
        {"action": "revoke", "_selected_action": [tokens["acme"].pk]},
    )

    # then
    assert response.status_code == 200
    assert "Revoke the selected tokens" not in response.content.decode()
    assert _tokens() == before


def test_superuser_revokes_a_token_from_the_admin(tokens: dict[str, ApiToken]) -> None:
    # given
    superuser = UserFactory(username="root", is_superuser=True, is_staff=True)

    # when
    response = _admin(superuser).post(
        "/admin/profiles/apitoken/",
        {"action": "revoke", "_selected_action": [tokens["acme"].pk]},
    )

    # then
    assert response.status_code == 302
    assert ApiToken.objects.get(pk=tokens["acme"].pk).revoked_at is not None
    assert ApiToken.objects.get(pk=tokens["globex"].pk).revoked_at is None


def test_profile_changelist_renders_for_the_member(
    member: Any, workspace: Workspace, other_workspace: Workspace
) -> None:
    # given
    mine = make_profile(workspace)
    make_profile(other_workspace)

    # when
    response = _admin(member).get("/admin/profiles/profile/")

    # then
    assert response.status_code == 200
    assert [p.pk for p in response.context["cl"].result_list] == [mine.pk]
    assert "globex" not in response.content.decode().lower()


def test_outsider_sees_no_acme_profiles(
    outsider: Any, workspace: Workspace, other_workspace: Workspace
) -> None:
    # given
    make_profile(workspace)
    theirs = make_profile(other_workspace)
    before = list(Profile.objects.order_by("pk").values_list("pk", "workspace_id"))

    # when
    response = _admin(outsider).get("/admin/profiles/profile/")

    # then
    assert response.status_code == 200
    assert [p.pk for p in response.context["cl"].result_list] == [theirs.pk]
    assert "acme" not in response.content.decode().lower()
    assert list(Profile.objects.order_by("pk").values_list("pk", "workspace_id")) == before


def test_a_staff_user_without_roles_is_refused(workspace: Workspace) -> None:
    # given
    nobody = UserFactory(username="nobody", is_staff=True)

    # when
    responses = [
        _admin(nobody).get(url)
        for url in ("/admin/profiles/workspace/", "/admin/profiles/apitoken/")
    ]

    # then
    assert [r.status_code for r in responses] == [403, 403]
