"""Match settings are added only in a workspace whose data the steward manages."""

from __future__ import annotations

from typing import Any

from django.test import Client
from django.urls import reverse

from matching.models import MatchSettings
from profiles import services as profile_services
from profiles.enums import WorkspaceRole
from tests.profiles.factories import UserFactory

FORM = {
    "review_threshold": "0.6",
    "auto_merge_threshold": "0.61",
    "fields": '[{"name": "x", "source": "trait", "key": "x", "comparator": "exact"}]',
    "blocking": '[{"keys": ["x"]}]',
    "name_swap": "[]",
    "max_block_size": "1000",
    "u_sample_pairs": "300000",
    "parameters_mode": "estimated",
    "parameters": "{}",
}


def test_a_steward_who_only_views_a_workspace_cannot_add_its_settings(
    workspace: Any, other_workspace: Any
) -> None:
    # given: manage_data on globex, view_profiles only on acme
    user = UserFactory(username="mixed", is_staff=True)
    profile_services.steward_grant_roles(
        workspace=other_workspace, user=user, roles=[WorkspaceRole.MANAGE_DATA]
    )
    profile_services.steward_grant_roles(
        workspace=workspace, user=user, roles=[WorkspaceRole.VIEW_PROFILES]
    )
    client = Client()
    client.force_login(user)
    page = reverse("admin:matching_matchsettings_add")

    # when
    form_page = client.get(page)
    response = client.post(page, {**FORM, "workspace": str(workspace.pk)})

    # then: acme is not offered, and no auto-merge threshold was set on it
    choices = form_page.context["adminform"].form.fields["workspace"].queryset
    assert list(choices) == [other_workspace]
    assert response.status_code == 200
    assert not MatchSettings.objects.filter(workspace=workspace).exists()


def test_a_data_manager_adds_settings_to_their_workspace(other_workspace: Any) -> None:
    # given
    user = UserFactory(username="manager", is_staff=True)
    profile_services.steward_grant_roles(
        workspace=other_workspace, user=user, roles=[WorkspaceRole.MANAGE_DATA]
    )
    client = Client()
    client.force_login(user)

    # when
    response = client.post(
        reverse("admin:matching_matchsettings_add"), {**FORM, "workspace": str(other_workspace.pk)}
    )

    # then
    assert response.status_code == 302
    assert MatchSettings.objects.get(workspace=other_workspace).auto_merge_threshold == 0.61
