"""The stewards' admin for sources, identity rules, trait classification, profiles (masked, with
an audited reveal), merges and merge conflicts."""

from __future__ import annotations

from typing import Any

import pytest
from auditlog import get_logentry_model
from django.test import Client
from django.urls import reverse

from profiles import services
from profiles.enums import TraitClass, WorkspaceRole
from profiles.models import IdentityRule, MergeConflict, Profile, Source, TraitSchema
from tests.profiles.factories import UserFactory
from tests.profiles.ingest_helpers import msg

SENTINEL_EMAIL = "sentinel.jane.admin@example.com"
SENTINEL_PHONE = "+16505550199"
SENTINEL_NAME = "Quillon Sentinelle"
SENTINEL_USER_ID = "u-sentinel-4711"
SENTINELS = (SENTINEL_EMAIL, SENTINEL_PHONE, "650-555-0199", SENTINEL_NAME, SENTINEL_USER_ID)

LogEntry = get_logentry_model()


@pytest.fixture
def source(workspace: Any) -> Source:
    return services.source_create(workspace=workspace, name="Web shop")


@pytest.fixture
def profile(source: Source) -> Profile:
    """An acme profile with a sentinel email, phone and name, an attribute and an event."""
    services.ingest_messages(
        source=source,
        messages=[
            msg(
                "identify",
                user_id=SENTINEL_USER_ID,
                traits={
                    "email": SENTINEL_EMAIL,
                    "phone": "+1 650-555-0199",
                    "name": SENTINEL_NAME,
                    "plan": "pro",
                },
            ),
            msg(
                user_id=SENTINEL_USER_ID,
                name="Order Completed",
                properties={"total": 42, "email": SENTINEL_EMAIL},
            ),
        ],
    )
    return Profile.objects.get(workspace=source.workspace)


@pytest.fixture
def superuser(db: Any) -> Any:
    return UserFactory(username="root", is_staff=True, is_superuser=True)


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def access_entries(profile: Profile) -> Any:
    return LogEntry.objects.filter(action=LogEntry.Action.ACCESS, object_pk=str(profile.pk))


def assert_no_sentinel(content: bytes) -> None:
    for sentinel in SENTINELS:
        assert sentinel.encode() not in content, sentinel


# --- profiles: list and masked page ------------------------------------------------------------


def test_profile_list_shows_the_owners_profiles_without_personal_data(
    owner: Any, profile: Profile
) -> None:
    # when
    response = client_for(owner).get(reverse("admin:profiles_profile_changelist"))
    # then
    assert response.status_code == 200
    assert str(profile.pk).encode() in response.content
    assert_no_sentinel(response.content)


def test_profile_page_masks_identities_and_pii_traits(owner: Any, profile: Profile) -> None:
    # when
    response = client_for(owner).get(reverse("admin:profiles_profile_change", args=[profile.pk]))
    # then
    assert response.status_code == 200
    assert_no_sentinel(response.content)
    html = response.content.decode()
    assert "••••••" in html
    assert "Order Completed" in html
    assert "&quot;total&quot;: 42" in html
    assert "{&quot;plan&quot;: &quot;pro&quot;}" in html  # attributes are plain
    assert reverse("admin:profiles_profile_reveal", args=[profile.pk]) in html


def test_member_sees_the_profile_without_the_reveal_button(member: Any, profile: Profile) -> None:
    # when
    response = client_for(member).get(reverse("admin:profiles_profile_change", args=[profile.pk]))
    # then
    assert response.status_code == 200
    assert reverse("admin:profiles_profile_reveal", args=[profile.pk]).encode() not in (
        response.content
    )
    assert_no_sentinel(response.content)


def test_outsider_sees_no_acme_profiles_and_cannot_open_one(
    outsider: Any, profile: Profile
) -> None:
    client = client_for(outsider)
    # when
    listing = client.get(reverse("admin:profiles_profile_changelist"))
    page = client.get(reverse("admin:profiles_profile_change", args=[profile.pk]))
    reveal = client.post(
        reverse("admin:profiles_profile_reveal", args=[profile.pk]), {"reason": "curious"}
    )
    # then
    assert listing.status_code == 200
    assert str(profile.pk).encode() not in listing.content
    assert b"Acme Store" not in listing.content
    assert page.status_code == 404
    assert reveal.status_code == 404
    assert not access_entries(profile).exists()


# --- profiles: the audited reveal --------------------------------------------------------------


def test_reveal_get_shows_the_reason_form_only(owner: Any, profile: Profile) -> None:
    # when
    response = client_for(owner).get(reverse("admin:profiles_profile_reveal", args=[profile.pk]))
    # then
    assert response.status_code == 200
    assert b'name="reason"' in response.content
    assert_no_sentinel(response.content)
    assert not access_entries(profile).exists()


@pytest.mark.parametrize("reason", ["", "   "])
def test_reveal_without_a_reason_is_refused_and_not_audited(
    owner: Any, profile: Profile, reason: str
) -> None:
    # when
    response = client_for(owner).post(
        reverse("admin:profiles_profile_reveal", args=[profile.pk]), {"reason": reason}
    )
    # then
    assert response.status_code == 200
    assert response.context["form"].errors == {"reason": ["This field is required."]}
    assert_no_sentinel(response.content)
    assert not access_entries(profile).exists()


def test_member_without_reveal_pii_is_forbidden_and_not_audited(
    member: Any, profile: Profile
) -> None:
    client = client_for(member)
    url = reverse("admin:profiles_profile_reveal", args=[profile.pk])
    # when
    get = client.get(url)
    post = client.post(url, {"reason": "Handling request DSR-7"})
    # then
    assert (get.status_code, post.status_code) == (403, 403)
    assert_no_sentinel(post.content)
    assert not access_entries(profile).exists()


def test_owner_reveal_with_a_reason_shows_the_data_and_writes_one_access_entry(
    owner: Any, profile: Profile
) -> None:
    # given
    before = LogEntry.objects.filter(action=LogEntry.Action.ACCESS).count()
    # when
    response = client_for(owner).post(
        reverse("admin:profiles_profile_reveal", args=[profile.pk]),
        {"reason": "Handling access request DSR-7"},
    )
    # then
    assert response.status_code == 200
    html = response.content.decode()
    assert SENTINEL_EMAIL in html
    assert SENTINEL_PHONE in html
    assert SENTINEL_NAME in html
    assert SENTINEL_USER_ID in html
    assert "no-store" in response["Cache-Control"]
    assert LogEntry.objects.filter(action=LogEntry.Action.ACCESS).count() == before + 1
    entry = access_entries(profile).get()
    assert entry.action == 3
    assert entry.actor_id == owner.pk
    assert entry.additional_data["reason"] == "Handling access request DSR-7"
    assert entry.additional_data["via"] == "admin"


# --- sources ---------------------------------------------------------------------------------


def test_owner_sees_only_their_workspaces_sources(
    owner: Any, outsider: Any, source: Source, other_workspace: Any
) -> None:
    # given
    services.source_create(workspace=other_workspace, name="Globex app", kind="app")
    # when
    mine = client_for(owner).get(reverse("admin:profiles_source_changelist"))
    theirs = client_for(outsider).get(reverse("admin:profiles_source_changelist"))
    # then
    assert b"Web shop" in mine.content and b"Globex app" not in mine.content
    assert b"Globex app" in theirs.content and b"Web shop" not in theirs.content
    assert source.write_key.encode() not in mine.content


def test_stewards_cannot_add_sources(owner: Any) -> None:
    # when
    response = client_for(owner).post(
        reverse("admin:profiles_source_add"),
        {"workspace": "1", "name": "Sneaky", "kind": "website", "rate_limit_per_minute": "10"},
    )
    # then
    assert response.status_code == 403
    assert not Source.objects.filter(name="Sneaky").exists()


def test_source_add_calls_the_service_and_shows_the_write_key_once(
    superuser: Any, workspace: Any
) -> None:
    # when
    response = client_for(superuser).post(
        reverse("admin:profiles_source_add"),
        {
            "workspace": str(workspace.pk),
            "name": "Storefront",
            "kind": "website",
            "allowed_origins": "https://Shop.example.com:443/\n\nhttps://shop.example.com\n"
            "http://localhost:8000",
            "rate_limit_per_minute": "120",
        },
        follow=True,
    )
    # then
    assert response.status_code == 200
    source = Source.objects.get(workspace=workspace, name="Storefront")
    assert source.allowed_origins == ["https://shop.example.com", "http://localhost:8000"]
    assert source.rate_limit_per_minute == 120
    assert len(source.write_key) >= 24
    assert response.content.count(source.write_key.encode()) == 1
    # and: the message is not repeated on the next page
    again = client_for(superuser).get(reverse("admin:profiles_source_changelist"))
    assert source.write_key.encode() not in again.content


def test_source_add_refuses_a_bad_origin_and_creates_nothing(
    superuser: Any, workspace: Any
) -> None:
    # when
    response = client_for(superuser).post(
        reverse("admin:profiles_source_add"),
        {
            "workspace": str(workspace.pk),
            "name": "Storefront",
            "kind": "website",
            "allowed_origins": "https://shop.example.com/path",
            "rate_limit_per_minute": "120",
        },
    )
    # then
    assert response.status_code == 200
    assert "allowed_origins" in response.context["adminform"].form.errors
    assert not Source.objects.filter(name="Storefront").exists()


def test_source_disable_and_enable_actions(superuser: Any, source: Source) -> None:
    client = client_for(superuser)
    url = reverse("admin:profiles_source_changelist")
    # when
    client.post(url, {"action": "disable", "_selected_action": [source.pk]})
    source.refresh_from_db()
    disabled = source.enabled
    client.post(url, {"action": "enable", "_selected_action": [source.pk]})
    source.refresh_from_db()
    # then
    assert (disabled, source.enabled) == (False, True)


def test_steward_cannot_disable_a_source(owner: Any, source: Source) -> None:
    # when
    response = client_for(owner).post(
        reverse("admin:profiles_source_changelist"),
        {"action": "disable", "_selected_action": [source.pk]},
    )
    # then
    assert response.status_code in (200, 302)
    source.refresh_from_db()
    assert source.enabled is True


# --- identity rules and trait classification ---------------------------------------------------


_RULE_EDIT = {
    "priority": "15",
    "merge": "on",
    "max_per_profile": "3",
    "window_days": "",
    "blocked_values": '["test@example.com"]',
    "blocked_patterns": '["^noreply@"]',
}


def test_a_data_manager_edits_an_identity_rule_of_their_workspace(workspace: Any) -> None:
    # given: a steward holding manage_data (and view_profiles) on the workspace
    user = UserFactory(username="data-manager", is_staff=True)
    services.steward_grant_roles(
        workspace=workspace,
        user=user,
        roles=[WorkspaceRole.VIEW_PROFILES, WorkspaceRole.MANAGE_DATA],
    )
    rule = IdentityRule.objects.get(workspace=workspace, identifier_type="email")
    # when
    response = client_for(user).post(
        reverse("admin:profiles_identityrule_change", args=[rule.pk]), _RULE_EDIT
    )
    # then
    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.priority, rule.max_per_profile) == (15, 3)
    assert rule.blocked_patterns == ["^noreply@"]


def test_a_member_who_only_views_profiles_sees_identity_rules_but_cannot_change_them(
    member: Any, workspace: Any
) -> None:
    # given
    rule = IdentityRule.objects.get(workspace=workspace, identifier_type="email")
    before = (rule.priority, rule.max_per_profile, list(rule.blocked_patterns))
    url = reverse("admin:profiles_identityrule_change", args=[rule.pk])
    # when
    page = client_for(member).get(url)
    edit = client_for(member).post(url, _RULE_EDIT)
    schema = client_for(member).get(reverse("admin:profiles_traitschema_add"))
    # then: the rule is shown read-only, the edit is refused, nothing changed
    assert page.status_code == 200
    assert 'name="priority"' not in page.content.decode()
    assert edit.status_code == 403
    assert schema.status_code == 403
    rule.refresh_from_db()
    assert (rule.priority, rule.max_per_profile, list(rule.blocked_patterns)) == before


def test_identity_rule_with_a_broken_pattern_is_refused(owner: Any, workspace: Any) -> None:
    # given
    rule = IdentityRule.objects.get(workspace=workspace, identifier_type="email")
    before = list(rule.blocked_patterns)
    # when
    response = client_for(owner).post(
        reverse("admin:profiles_identityrule_change", args=[rule.pk]),
        {"priority": "20", "merge": "on", "blocked_values": "[]", "blocked_patterns": '["(("]'},
    )
    # then
    assert response.status_code == 200
    assert "blocked_patterns" in response.context["adminform"].form.errors
    rule.refresh_from_db()
    assert rule.blocked_patterns == before


def test_outsider_cannot_edit_acme_identity_rules(outsider: Any, workspace: Any) -> None:
    # given
    rule = IdentityRule.objects.get(workspace=workspace, identifier_type="email")
    # when
    response = client_for(outsider).post(
        reverse("admin:profiles_identityrule_change", args=[rule.pk]),
        {"priority": "99", "merge": "on", "blocked_values": "[]", "blocked_patterns": "[]"},
    )
    # then
    assert response.status_code == 302  # the admin's "does not exist" redirect
    rule.refresh_from_db()
    assert rule.priority != 99


def test_trait_schema_classify_actions(owner: Any, outsider: Any, workspace: Any) -> None:
    # given
    schema = TraitSchema.objects.create(workspace=workspace, key="favourite_colour")
    url = reverse("admin:profiles_traitschema_changelist")
    # when: the outsider tries first, then the owner
    client_for(outsider).post(
        url, {"action": "classify_as_attribute", "_selected_action": [schema.pk]}
    )
    schema.refresh_from_db()
    after_outsider = schema.classification
    client_for(owner).post(
        url, {"action": "classify_as_attribute", "_selected_action": [schema.pk]}
    )
    schema.refresh_from_db()
    after_owner = schema.classification
    client_for(owner).post(url, {"action": "classify_as_pii", "_selected_action": [schema.pk]})
    schema.refresh_from_db()
    # then
    assert after_outsider == TraitClass.UNCLASSIFIED
    assert after_owner == TraitClass.ATTRIBUTE
    assert schema.classification == TraitClass.PII


# --- merges and conflicts --------------------------------------------------------------------


@pytest.fixture
def conflict(source: Source) -> MergeConflict:
    services.ingest_messages(
        source=source, messages=[msg("identify", user_id="u-1", anonymous_id="shared")]
    )
    services.ingest_messages(
        source=source, messages=[msg("identify", user_id="u-2", anonymous_id="shared")]
    )
    return MergeConflict.objects.get()


def test_conflicts_are_listed_for_the_workspace_only(
    owner: Any, outsider: Any, conflict: MergeConflict
) -> None:
    url = reverse("admin:profiles_mergeconflict_changelist")
    # when
    mine = client_for(owner).get(url)
    theirs = client_for(outsider).get(url)
    # then
    assert str(conflict.profile_id).encode() in mine.content
    assert str(conflict.profile_id).encode() not in theirs.content


def test_mark_resolved_sets_resolved_at_and_audits_the_actor(
    owner: Any, conflict: MergeConflict
) -> None:
    # when
    response = client_for(owner).post(
        reverse("admin:profiles_mergeconflict_changelist"),
        {"action": "mark_resolved", "_selected_action": [conflict.pk]},
    )
    # then
    assert response.status_code == 302
    conflict.refresh_from_db()
    assert conflict.resolved_at is not None
    entry = LogEntry.objects.filter(object_pk=str(conflict.pk), action=LogEntry.Action.UPDATE).get()
    assert entry.actor_id == owner.pk
    assert list(entry.changes) == ["resolved_at"]


def test_outsider_cannot_resolve_an_acme_conflict(outsider: Any, conflict: MergeConflict) -> None:
    # when
    client_for(outsider).post(
        reverse("admin:profiles_mergeconflict_changelist"),
        {"action": "mark_resolved", "_selected_action": [conflict.pk]},
    )
    # then
    conflict.refresh_from_db()
    assert conflict.resolved_at is None


def test_merge_conflict_resolve_is_idempotent(owner: Any, conflict: MergeConflict) -> None:
    # given
    services.merge_conflict_resolve(conflict=conflict, actor=owner)
    first = conflict.resolved_at
    # when
    services.merge_conflict_resolve(conflict=MergeConflict.objects.get(), actor=owner)
    # then
    conflict.refresh_from_db()
    assert conflict.resolved_at == first
    assert (
        LogEntry.objects.filter(object_pk=str(conflict.pk), action=LogEntry.Action.UPDATE).count()
        == 1
    )


def test_merges_list_is_read_only_and_scoped(owner: Any, outsider: Any, source: Source) -> None:
    # given: two devices of one person join when they log in
    services.ingest_messages(source=source, messages=[msg(anonymous_id="phone")])
    services.ingest_messages(source=source, messages=[msg(anonymous_id="laptop")])
    services.ingest_messages(source=source, messages=[msg(user_id="u-9", anonymous_id="phone")])
    services.ingest_messages(source=source, messages=[msg(user_id="u-9", anonymous_id="laptop")])
    url = reverse("admin:profiles_merge_changelist")
    # when
    mine = client_for(owner).get(url)
    theirs = client_for(outsider).get(url)
    add = client_for(owner).get(reverse("admin:profiles_merge_add"))
    # then
    assert b"deterministic: anonymous_id seen with user_id" in mine.content
    assert b"deterministic" not in theirs.content
    assert add.status_code == 403
