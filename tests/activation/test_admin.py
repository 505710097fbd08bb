"""The activation admin: audiences (saved through the services, rule errors with their path),
lifecycle stages, computed traits, destinations (secret write-only), syncs with "Run now", sync
runs, removals, the delivery-ledger search and explanation, the personalization settings; and
stewards of another workspace see none of it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from auditlog import get_logentry_model
from django.test import Client
from django.urls import reverse

from activation import services
from activation.enums import RemovalReason, RemovalStatus
from activation.models import (
    Audience,
    ComputedTrait,
    Delivery,
    Destination,
    LifecycleStage,
    PersonalizationConfig,
    Removal,
    Sync,
    SyncRun,
)
from consent import services as consent_services
from tests.activation.api_helpers import VIP, shopper
from tests.activation.sync_helpers import enter, grant, person, run_sync

pytestmark = pytest.mark.django_db

SECRET = "whsec_admin_sentinel_0123456789"
BAD_RULES = {"all": [VIP, {"trait": {"key": "plan", "op": "="}}]}


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def vip(workspace: Any) -> Audience:
    return services.audience_create(workspace=workspace, key="vip", name="VIP", rules=VIP)


@pytest.fixture
def globex_vip(other_workspace: Any) -> Audience:
    return services.audience_create(workspace=other_workspace, key="vip", name="Gold", rules=VIP)


def audience_form(workspace: Any, **changes: Any) -> dict[str, Any]:
    data = {
        "workspace": workspace.pk,
        "key": "buyers",
        "name": "Buyers",
        "description": "",
        "rules": json.dumps(VIP),
        "status": "active",
        "_save": "Save",
    }
    data.update(changes)
    return data


def action(name: str, *ids: Any) -> dict[str, Any]:
    return {"action": name, "index": "0", "_selected_action": [str(i) for i in ids]}


# --- audiences -------------------------------------------------------------------------------


def test_stewards_see_only_the_audiences_of_their_workspaces(
    owner: Any, outsider: Any, vip: Audience, globex_vip: Audience
) -> None:
    # when
    mine = client_for(owner).get(reverse("admin:activation_audience_changelist"))
    theirs = client_for(outsider).get(reverse("admin:activation_audience_changelist"))

    # then
    assert [a.pk for a in mine.context["cl"].result_list] == [vip.pk]
    assert [a.pk for a in theirs.context["cl"].result_list] == [globex_vip.pk]


def test_a_steward_without_manage_audiences_cannot_open_audiences(member: Any, vip: Any) -> None:
    # when
    response = client_for(member).get(reverse("admin:activation_audience_changelist"))

    # then
    assert response.status_code == 403


def test_an_audience_added_in_the_admin_goes_through_the_service(
    owner: Any, workspace: Any
) -> None:
    # when
    response = client_for(owner).post(
        reverse("admin:activation_audience_add"), audience_form(workspace)
    )

    # then
    assert response.status_code == 302
    audience = Audience.objects.get(workspace=workspace, key="buyers")
    assert (audience.rules, audience.created_by_id) == (VIP, owner.pk)
    entry = get_logentry_model().objects.get_for_object(audience).get()
    assert entry.actor_id == owner.pk


def test_invalid_rules_show_their_path_on_the_form(owner: Any, workspace: Any) -> None:
    # when
    response = client_for(owner).post(
        reverse("admin:activation_audience_add"),
        audience_form(workspace, rules=json.dumps(BAD_RULES)),
    )

    # then
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["rules"]
    assert errors[0].startswith("at /all/1/trait: ")
    assert not Audience.objects.filter(workspace=workspace).exists()


def test_changing_an_audience_updates_it_through_the_service(
    owner: Any, workspace: Any, vip: Audience
) -> None:
    # given
    gold = {"trait": {"key": "plan", "op": "=", "value": "gold"}}

    # when
    response = client_for(owner).post(
        reverse("admin:activation_audience_change", args=[vip.pk]),
        {
            "name": "VIP customers",
            "description": "",
            "rules": json.dumps(gold),
            "status": "paused",
            "_save": "Save",
        },
    )

    # then
    assert response.status_code == 302
    vip.refresh_from_db()
    assert (vip.name, vip.rules, vip.status, vip.key) == ("VIP customers", gold, "paused", "vip")


def test_a_steward_of_another_workspace_cannot_change_an_audience(
    outsider: Any, vip: Audience
) -> None:
    # when
    response = client_for(outsider).post(
        reverse("admin:activation_audience_change", args=[vip.pk]),
        {"name": "Hijacked", "rules": json.dumps(VIP), "status": "active", "_save": "Save"},
    )

    # then: answered as for an id that does not exist
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")
    vip.refresh_from_db()
    assert vip.name == "VIP"


def test_refresh_now_and_the_membership_history(owner: Any, workspace: Any, vip: Audience) -> None:
    # given
    member = shopper(workspace)
    client = client_for(owner)

    # when
    refreshed = client.post(
        reverse("admin:activation_audience_changelist"), action("refresh_membership", vip.pk)
    )
    page = client.get(reverse("admin:activation_audience_change", args=[vip.pk]))
    history = client.get(
        reverse("admin:activation_membershipchange_changelist") + f"?audience__id__exact={vip.pk}"
    )

    # then
    assert refreshed.status_code == 302
    vip.refresh_from_db()
    assert vip.size == 1
    assert [c.profile_id for c in page.context["recent_changes"]] == [member.profile_id]
    assert [c.profile_id for c in history.context["cl"].result_list] == [member.profile_id]
    assert member.user_id not in page.content.decode()


def test_an_outsider_action_on_an_audience_does_nothing(outsider: Any, vip: Audience) -> None:
    # given
    shopper(vip.workspace)

    # when
    client_for(outsider).post(
        reverse("admin:activation_audience_changelist"), action("refresh_membership", vip.pk)
    )

    # then
    vip.refresh_from_db()
    assert vip.size == 0


# --- lifecycle stages and computed traits --------------------------------------------------------


def test_lifecycle_stage_rules_are_checked_on_the_form(owner: Any, workspace: Any) -> None:
    # given
    client = client_for(owner)
    form = {
        "workspace": workspace.pk,
        "key": "vips",
        "name": "VIPs",
        "description": "",
        "position": 9,
        "_save": "Save",
    }

    # when
    refused = client.post(
        reverse("admin:activation_lifecyclestage_add"), {**form, "rules": json.dumps(BAD_RULES)}
    )
    added = client.post(
        reverse("admin:activation_lifecyclestage_add"), {**form, "rules": json.dumps(VIP)}
    )

    # then
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors["rules"][0].startswith("at /all/1/trait")
    assert added.status_code == 302
    assert LifecycleStage.objects.get(workspace=workspace, key="vips").rules == VIP


def test_a_computed_trait_over_a_personal_property_is_refused(owner: Any, workspace: Any) -> None:
    # given
    form = {
        "workspace": workspace.pk,
        "key": "last_email",
        "name": "Last email",
        "kind": "last",
        "event_name": "Order Completed",
        "event_filter": "[]",
        "property": "email",
        "window_days": "",
        "enabled": "on",
        "_save": "Save",
    }

    # when
    refused = client_for(owner).post(reverse("admin:activation_computedtrait_add"), form)
    added = client_for(owner).post(
        reverse("admin:activation_computedtrait_add"),
        {**form, "key": "orders", "name": "Orders", "kind": "count", "property": ""},
    )

    # then
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors["property"]
    assert added.status_code == 302
    assert list(ComputedTrait.objects.values_list("key", flat=True)) == ["orders"]


# --- destinations ----------------------------------------------------------------------------


@pytest.fixture
def purposes(workspace: Any, settings: Any) -> None:
    consent_services.purposes_ensure_defaults(workspace=workspace)
    settings.CDP_WEBHOOK_ALLOW_PRIVATE = True  # no public name resolves in the sandbox


def destination_form(workspace: Any, **changes: Any) -> dict[str, Any]:
    data = {
        "workspace": workspace.pk,
        "name": "CRM hook",
        "kind": "webhook",
        "purpose_keys": ["marketing_email"],
        "data": json.dumps({"identifiers": ["user_id"], "traits": ["country"]}),
        "config": json.dumps({"url": "https://127.0.0.1:8443/cdp"}),
        "new_secret": SECRET,
        "min_audience_size": 100,
        "enabled": "on",
        "_save": "Save",
    }
    data.update(changes)
    return data


def test_a_destination_secret_is_write_only(owner: Any, workspace: Any, purposes: Any) -> None:
    # given
    client = client_for(owner)

    # when
    added = client.post(reverse("admin:activation_destination_add"), destination_form(workspace))
    destination = Destination.objects.get(workspace=workspace)
    page = client.get(reverse("admin:activation_destination_change", args=[destination.pk]))
    listed = client.get(reverse("admin:activation_destination_changelist"))
    renamed = client.post(
        reverse("admin:activation_destination_change", args=[destination.pk]),
        {**destination_form(workspace, name="CRM", new_secret=""), "workspace": ""},
    )

    # then
    assert added.status_code == 302
    assert [p.key for p in destination.purposes.all()] == ["marketing_email"]
    for response in (page, listed):
        assert response.status_code == 200
        assert SECRET not in response.content.decode()
    assert renamed.status_code == 302
    destination.refresh_from_db()
    assert (destination.name, destination.secret) == ("CRM", SECRET)


def test_a_new_secret_replaces_the_old_one(owner: Any, workspace: Any, purposes: Any) -> None:
    # given
    destination = services.destination_create(
        workspace=workspace,
        name="CRM hook",
        kind="webhook",
        purposes=["marketing_email"],
        data={"identifiers": ["user_id"]},
        config={"url": "https://127.0.0.1:8443/cdp"},
        secret=SECRET,
    )
    replacement = "whsec_admin_replacement_987654321"

    # when
    response = client_for(owner).post(
        reverse("admin:activation_destination_change", args=[destination.pk]),
        destination_form(
            workspace, new_secret=replacement, data=json.dumps({"identifiers": ["user_id"]})
        ),
    )

    # then
    assert response.status_code == 302
    destination.refresh_from_db()
    assert destination.secret == replacement


def test_an_invalid_destination_shows_the_service_error(
    owner: Any, workspace: Any, purposes: Any
) -> None:
    # when
    response = client_for(owner).post(
        reverse("admin:activation_destination_add"), destination_form(workspace, new_secret="short")
    )

    # then
    assert response.status_code == 200
    errors = response.context["adminform"].form.non_field_errors()
    assert "signing secret of at least 16 characters" in errors[0]
    assert not Destination.objects.exists()


def test_a_steward_of_another_workspace_sees_no_destination(
    outsider: Any, workspace: Any, purposes: Any
) -> None:
    # given
    destination = services.destination_create(
        workspace=workspace,
        name="Nightly CSV",
        kind="csv",
        purposes=["analytics"],
        data={"identifiers": ["user_id"]},
        config={},
    )

    # when
    listed = client_for(outsider).get(reverse("admin:activation_destination_changelist"))
    page = client_for(outsider).get(
        reverse("admin:activation_destination_change", args=[destination.pk])
    )

    # then
    assert list(listed.context["cl"].result_list) == []
    assert page.status_code == 302


# --- syncs, runs, removals and the ledger ------------------------------------------------------


@pytest.fixture
def synced(
    workspace: Any, export_dir: Any, django_capture_on_commit_callbacks: Any
) -> dict[str, Any]:
    """A CSV sync of `vip`, run once: one member sent, one without consent excluded."""
    consent_services.purposes_ensure_defaults(workspace=workspace)
    audience = services.audience_create(workspace=workspace, key="vip", name="VIP", rules=VIP)
    destination = services.destination_create(
        workspace=workspace,
        name="Nightly CSV",
        kind="csv",
        purposes=["analytics"],
        data={"identifiers": ["user_id"], "traits": ["country"]},
        config={"prefix": "nightly"},
    )
    sync = services.sync_create(audience=audience, destination=destination, mode="full")
    allowed, refused = person(workspace), person(workspace)
    recorded = grant(workspace, allowed, "analytics")
    enter(audience, allowed, refused)
    run = run_sync(sync, django_capture_on_commit_callbacks)
    return {"sync": sync, "run": run, "allowed": allowed, "record": recorded.records[0]}


def test_run_now_queues_a_run(
    owner: Any, synced: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(owner).post(
            reverse("admin:activation_sync_changelist"), action("run_now", synced["sync"].pk)
        )

    # then
    assert response.status_code == 302
    runs = SyncRun.objects.filter(sync=synced["sync"]).order_by("created_at")
    assert runs.count() == 2
    assert runs.last().started_by_id == owner.pk  # type: ignore[union-attr]


def test_an_outsider_cannot_run_a_sync(outsider: Any, synced: dict[str, Any]) -> None:
    # when
    client_for(outsider).post(
        reverse("admin:activation_sync_changelist"), action("run_now", synced["sync"].pk)
    )

    # then
    assert SyncRun.objects.count() == 1


def test_sync_runs_show_counts_and_exclusions(owner: Any, synced: dict[str, Any]) -> None:
    # when
    response = client_for(owner).get(reverse("admin:activation_syncrun_changelist"))

    # then
    assert response.status_code == 200
    [run] = response.context["cl"].result_list
    assert (run.sent, run.status) == (1, "succeeded")
    content = response.content.decode()
    assert "2/2 (100%)" in content
    assert any(f"{reason}: 1" in content for reason in synced["run"].excluded)


def test_the_ledger_explains_why_a_person_was_sent(owner: Any, synced: dict[str, Any]) -> None:
    # given
    allowed = synced["allowed"]
    delivery = Delivery.objects.get(profile_id=allowed.profile_id)
    client = client_for(owner)

    # when
    searched = client.get(
        reverse("admin:activation_delivery_search"), {"profile": str(allowed.profile_id)}
    )
    explained = client.get(reverse("admin:activation_delivery_explain", args=[delivery.pk]))

    # then
    assert [d.pk for d in searched.context["rows"]] == [delivery.pk]
    content = explained.content.decode()
    assert explained.status_code == 200
    assert delivery.payload_sha256 in content
    assert str(synced["record"].pk) in content
    assert synced["record"].record_hash[:16] in content
    assert allowed.user_id not in content and allowed.email not in content


def test_a_steward_of_another_workspace_cannot_read_the_ledger(
    outsider: Any, synced: dict[str, Any]
) -> None:
    # given
    allowed = synced["allowed"]
    delivery = Delivery.objects.get(profile_id=allowed.profile_id)
    client = client_for(outsider)

    # when
    searched = client.get(
        reverse("admin:activation_delivery_search"), {"profile": str(allowed.profile_id)}
    )
    explained = client.get(reverse("admin:activation_delivery_explain", args=[delivery.pk]))
    listed = client.get(reverse("admin:activation_delivery_changelist"))

    # then
    assert searched.context["rows"] == []
    assert explained.status_code == 404
    assert list(listed.context["cl"].result_list) == []


def test_a_profile_steward_may_read_the_ledger_but_not_change_syncs(
    member: Any, synced: dict[str, Any]
) -> None:
    # when
    searched = client_for(member).get(
        reverse("admin:activation_delivery_search"),
        {"profile": str(synced["allowed"].profile_id)},
    )
    syncs = client_for(member).get(reverse("admin:activation_sync_changelist"))

    # then
    assert len(searched.context["rows"]) == 1
    assert syncs.status_code == 403


def test_a_removal_never_shows_its_payload_and_can_be_retried(
    owner: Any, synced: dict[str, Any]
) -> None:
    # given: a dead removal
    from profiles import services as profile_services
    from profiles.enums import DataKeyPurpose

    sync = synced["sync"]
    removal = Removal(
        workspace=sync.workspace,
        destination=sync.destination,
        audience=sync.audience,
        profile_id=synced["allowed"].profile_id,
        reason=RemovalReason.CONSENT_WITHDRAWN,
        status=RemovalStatus.DEAD,
        attempts=8,
    )
    removal.data_key_id = profile_services.data_key_create_unowned(
        workspace_id=sync.workspace_id, purpose=DataKeyPurpose.REMOVAL
    )
    removal.payload = {"user_id": synced["allowed"].user_id}
    removal.save()
    client = client_for(owner)

    # when
    page = client.get(reverse("admin:activation_removal_change", args=[removal.pk]))
    retried = client.post(
        reverse("admin:activation_removal_changelist"), action("retry", removal.pk)
    )

    # then
    assert page.status_code == 200
    assert synced["allowed"].user_id not in page.content.decode()
    assert retried.status_code == 302
    removal.refresh_from_db()
    assert removal.status != RemovalStatus.DEAD


# --- personalization -----------------------------------------------------------------------------


def test_personalization_settings_refuse_personal_data(owner: Any, workspace: Any) -> None:
    # given
    consent_services.purposes_ensure_defaults(workspace=workspace)
    form = {
        "workspace": workspace.pk,
        "enabled": "on",
        "purpose": "personalization",
        "expose_audiences": "on",
        "traits": json.dumps(["email"]),
        "computed_traits": "[]",
        "_save": "Save",
    }
    client = client_for(owner)

    # when
    refused = client.post(reverse("admin:activation_personalizationconfig_add"), form)
    saved = client.post(
        reverse("admin:activation_personalizationconfig_add"),
        {**form, "traits": json.dumps(["country"])},
    )

    # then
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors["traits"]
    assert saved.status_code == 302
    config = PersonalizationConfig.objects.get(workspace=workspace)
    assert (config.traits, config.accept_user_id) == (["country"], False)


def test_every_activation_page_refuses_a_steward_without_a_role(db: Any) -> None:
    # given
    from tests.profiles.factories import UserFactory

    nobody = client_for(UserFactory(username="nobody", is_staff=True))

    # when
    statuses = {
        name: nobody.get(reverse(f"admin:activation_{name}_changelist")).status_code
        for name in (
            "audience",
            "lifecyclestage",
            "computedtrait",
            "destination",
            "sync",
            "syncrun",
            "removal",
            "delivery",
            "membershipchange",
            "personalizationconfig",
        )
    }
    search = nobody.get(reverse("admin:activation_delivery_search")).status_code

    # then
    assert set(statuses.values()) == {403}
    assert search == 403
    assert not Sync.objects.exists()


def test_retrying_a_removal_already_sent_says_it_was_not_queued(
    owner: Any, synced: dict[str, Any]
) -> None:
    # given: a removal sent already (its payload destroyed)
    sync = synced["sync"]
    removal = Removal.objects.create(
        workspace=sync.workspace,
        destination=sync.destination,
        audience=sync.audience,
        profile_id=synced["allowed"].profile_id,
        reason=RemovalReason.CONSENT_WITHDRAWN,
        status=RemovalStatus.SENT,
        attempts=1,
    )

    # when
    retried = client_for(owner).post(
        reverse("admin:activation_removal_changelist"), action("retry", removal.pk), follow=True
    )

    # then: no claim that it was queued
    shown = [str(m) for m in retried.context["messages"]]
    assert shown == [
        "1 removal(s) not queued again: only a dead or failed removal whose payload is kept "
        "can be retried."
    ]
    removal.refresh_from_db()
    assert removal.status == RemovalStatus.SENT
