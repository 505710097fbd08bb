"""The consent admin: purposes and notices for consent stewards, the append-only ledger shown
without subject identifiers, the per-profile timeline with its chain check, and the report."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from django.contrib import admin
from django.db import connection
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from consent import services
from consent.enums import Decision, Method
from consent.models import ConsentRecord, Notice, NoticeVersion, Purpose
from consent.services import Evidence, Subject
from profiles import services as profile_services
from profiles.enums import WorkspaceRole
from tests.profiles.factories import UserFactory
from tests.profiles.ingest_helpers import msg

ANON_VALUE = "anon-sentinel-5150"


@pytest.fixture
def acme_source(workspace: Any) -> Any:
    services.purposes_ensure_defaults(workspace=workspace)
    return profile_services.source_create(workspace=workspace, name="Web")


@pytest.fixture
def globex_source(other_workspace: Any) -> Any:
    services.purposes_ensure_defaults(workspace=other_workspace)
    return profile_services.source_create(workspace=other_workspace, name="Web")


@pytest.fixture
def superuser(db: Any) -> Any:
    return UserFactory(username="root", is_staff=True, is_superuser=True)


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def profile_for(source: Any, anonymous_id: str) -> Any:
    outcome = profile_services.ingest_messages(
        source=source, messages=[msg(anonymous_id=anonymous_id)]
    )
    return outcome.profile_ids[0]


def decide(source: Any, anonymous_id: str, profile_id: Any, **decisions: str) -> Any:
    notice_version = NoticeVersion.objects.get(notice__workspace=source.workspace, version=1)
    return services.consent_record(
        workspace=source.workspace,
        subject=Subject("anonymous_id", anonymous_id, profile_id),
        decisions=decisions,
        evidence=Evidence(
            method=Method.BANNER,
            jurisdiction="DE",
            notice_version=notice_version,
            ip="198.51.100.7",
        ),
    ).records


def gpc(source: Any, anonymous_id: str, profile_id: Any) -> Any:
    return services.consent_apply_gpc(
        workspace=source.workspace,
        subject=Subject("anonymous_id", anonymous_id, profile_id),
        evidence=Evidence(method=Method.GPC, signals={"gpc": True}),
    ).records


def timeline_url(profile_id: Any) -> str:
    return reverse("admin:consent_consentrecord_timeline", args=[profile_id])


def raw_pk(record: ConsentRecord) -> Any:
    return record.pk if connection.vendor == "postgresql" else record.pk.hex


# --- purposes --------------------------------------------------------------------------------


def test_steward_sees_the_purposes_of_their_workspace_only(
    owner: Any, outsider: Any, acme_source: Any, globex_source: Any
) -> None:
    # when
    mine = client_for(owner).get(reverse("admin:consent_purpose_changelist"))
    theirs = client_for(outsider).get(reverse("admin:consent_purpose_changelist"))
    # then
    assert mine.status_code == 200
    assert {p.workspace.slug for p in mine.context["cl"].result_list} == {"acme"}
    assert mine.context["cl"].result_count == 6
    assert b"Globex" not in mine.content
    assert {p.workspace.slug for p in theirs.context["cl"].result_list} == {"globex"}
    assert b"Acme Store" not in theirs.content


def test_member_without_manage_consent_cannot_open_purposes(member: Any, acme_source: Any) -> None:
    # when
    response = client_for(member).get(reverse("admin:consent_purpose_changelist"))
    # then
    assert response.status_code == 403


def purpose_form_data(purpose: Purpose, **changes: Any) -> dict[str, Any]:
    import json

    data = {
        "key": purpose.key,
        "name": purpose.name,
        "description": purpose.description,
        "legal_basis": purpose.legal_basis,
        "defaults": json.dumps(purpose.defaults),
        "tcf_purposes": json.dumps(purpose.tcf_purposes),
        "dpv_purposes": json.dumps(purpose.dpv_purposes),
        "data_categories": json.dumps(purpose.data_categories),
        "retention_days": purpose.retention_days,
        "consent_validity_days": purpose.consent_validity_days or "",
        "position": purpose.position,
    }
    if purpose.sale_or_share:
        data["sale_or_share"] = "on"
    data.update(changes)
    return data


def test_owner_edits_a_purpose_but_not_its_key_or_workspace(
    owner: Any, acme_source: Any, other_workspace: Any
) -> None:
    # given
    analytics = Purpose.objects.get(workspace=acme_source.workspace, key="analytics")
    url = reverse("admin:consent_purpose_change", args=[analytics.pk])
    # when
    response = client_for(owner).post(
        url,
        purpose_form_data(
            analytics,
            key="renamed",
            workspace=other_workspace.pk,
            name="Audience measurement",
            defaults='{"EU": "opt_in", "US-CA": "opt_out", "default": "opt_in"}',
            tcf_purposes="[8]",
            retention_days=90,
        ),
    )
    # then
    assert response.status_code == 302
    analytics.refresh_from_db()
    assert (
        analytics.key,
        analytics.workspace_id,
        analytics.name,
        analytics.defaults,
        analytics.tcf_purposes,
        analytics.retention_days,
    ) == (
        "analytics",
        acme_source.workspace.pk,
        "Audience measurement",
        {"EU": "opt_in", "US-CA": "opt_out", "default": "opt_in"},
        [8],
        90,
    )


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("defaults", '{"EU": "maybe"}', "opt_in"),
        ("tcf_purposes", "[12]", "1 to 11"),
        ("dpv_purposes", '"dpv:Advertising"', "JSON list of strings"),
        ("consent_validity_days", "0", "greater than or equal to 1"),
        ("consent_validity_days", "-30", "greater than or equal to"),
        ("consent_validity_days", "a year", "whole number"),
        ("consent_validity_days", "3651", "less than or equal to 3650"),
    ],
)
def test_purpose_form_refuses_malformed_mappings(
    owner: Any, acme_source: Any, field: str, value: str, error: str
) -> None:
    # given
    analytics = Purpose.objects.get(workspace=acme_source.workspace, key="analytics")
    before = Purpose.objects.filter(pk=analytics.pk).values().get()
    # when
    response = client_for(owner).post(
        reverse("admin:consent_purpose_change", args=[analytics.pk]),
        purpose_form_data(analytics, **{field: value}),
    )
    # then
    assert response.status_code == 200
    assert error in " ".join(response.context["adminform"].form.errors[field])
    assert Purpose.objects.filter(pk=analytics.pk).values().get() == before


@pytest.mark.parametrize(("value", "days"), [("180", 180), ("", None)])
def test_owner_sets_or_clears_a_purposes_consent_validity(
    owner: Any, acme_source: Any, value: str, days: int | None
) -> None:
    # given: analytics holds a grant 395 days, as seeded
    analytics = Purpose.objects.get(workspace=acme_source.workspace, key="analytics")
    assert analytics.consent_validity_days == 395
    # when
    response = client_for(owner).post(
        reverse("admin:consent_purpose_change", args=[analytics.pk]),
        purpose_form_data(analytics, consent_validity_days=value),
    )
    # then
    assert response.status_code == 302
    analytics.refresh_from_db()
    assert analytics.consent_validity_days == days


def test_outsider_cannot_edit_an_acme_purpose(outsider: Any, acme_source: Any) -> None:
    # given
    analytics = Purpose.objects.get(workspace=acme_source.workspace, key="analytics")
    before = Purpose.objects.filter(pk=analytics.pk).values().get()
    # when
    response = client_for(outsider).post(
        reverse("admin:consent_purpose_change", args=[analytics.pk]),
        purpose_form_data(analytics, name="Hijacked"),
    )
    # then: the admin answers as for an id that does not exist
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")
    assert Purpose.objects.filter(pk=analytics.pk).values().get() == before


SEED_POST = {
    "action": "seed_default_purposes",
    "index": "0",
    "select_across": "1",
    "_selected_action": "all",
}


def test_seed_action_seeds_the_stewards_workspaces_from_an_empty_list(
    owner: Any, other_workspace: Any
) -> None:
    # given: no purposes anywhere
    client = client_for(owner)
    listing = client.get(reverse("admin:consent_purpose_changelist"))
    assert b"Seed default purposes" in listing.content
    # when
    response = client.post(reverse("admin:consent_purpose_changelist"), SEED_POST)
    # then
    assert response.status_code == 302
    assert list(
        Purpose.objects.filter(workspace__slug="acme")
        .order_by("position")
        .values_list("key", flat=True)
    ) == [
        "necessary",
        "analytics",
        "personalization",
        "marketing_email",
        "advertising",
        "profiling",
    ]
    assert list(
        NoticeVersion.objects.filter(notice__workspace__slug="acme").values_list(
            "notice__key", "version"
        )
    ) == [("banner", 1)]
    assert not Purpose.objects.filter(workspace=other_workspace).exists()
    assert not Notice.objects.filter(workspace=other_workspace).exists()


def test_outsider_seed_touches_only_their_own_workspace(outsider: Any, workspace: Any) -> None:
    # when
    response = client_for(outsider).post(reverse("admin:consent_purpose_changelist"), SEED_POST)
    # then
    assert response.status_code == 302
    assert Purpose.objects.filter(workspace__slug="globex").count() == 6
    assert not Purpose.objects.filter(workspace=workspace).exists()
    assert not Notice.objects.filter(workspace=workspace).exists()


# --- notices ---------------------------------------------------------------------------------


def test_publishing_a_notice_version_creates_the_next_version_with_its_text_hash(
    owner: Any, acme_source: Any
) -> None:
    # given
    notice = Notice.objects.get(workspace=acme_source.workspace, key="banner")
    first = notice.versions.get()
    text = "Acme Store uses cookies for analytics and email. Choose what you accept."
    url = reverse("admin:consent_notice_publish", args=[notice.pk])
    client = client_for(owner)
    form = client.get(url)
    assert form.status_code == 200
    assert form.context["form"].initial["text"] == first.text
    # when
    response = client.post(
        url,
        {
            "text": text,
            "language": "de",
            "purposes": ["analytics", "marketing_email"],
            "policy_url": "https://shop.example.com/privacy",
        },
    )
    # then
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:consent_notice_change", args=[notice.pk])
    assert list(
        notice.versions.order_by("-version").values_list(
            "version", "language", "text_hash", "purposes", "policy_url"
        )
    ) == [
        (
            2,
            "de",
            hashlib.sha256(text.encode()).hexdigest(),
            ["analytics", "marketing_email"],
            "https://shop.example.com/privacy",
        ),
        (1, "en", first.text_hash, first.purposes, ""),
    ]


def test_adding_a_notice_leads_to_publishing_its_first_version(
    owner: Any, acme_source: Any, other_workspace: Any
) -> None:
    # given
    client = client_for(owner)
    add = reverse("admin:consent_notice_add")
    # when
    response = client.post(
        add, {"workspace": acme_source.workspace.pk, "key": "preferences", "title": "Centre"}
    )
    refused = client.post(
        add, {"workspace": other_workspace.pk, "key": "preferences", "title": "Centre"}
    )
    # then
    notice = Notice.objects.get(key="preferences")
    assert (notice.workspace_id, notice.versions.count()) == (acme_source.workspace.pk, 0)
    assert response["Location"] == reverse("admin:consent_notice_publish", args=[notice.pk])
    assert list(refused.context["adminform"].form.errors) == ["workspace"]
    assert not Notice.objects.filter(workspace=other_workspace).exists()


def test_publish_refuses_an_unknown_purpose_and_publishes_nothing(
    owner: Any, acme_source: Any, globex_source: Any
) -> None:
    # given
    notice = Notice.objects.get(workspace=acme_source.workspace, key="banner")
    # when
    response = client_for(owner).post(
        reverse("admin:consent_notice_publish", args=[notice.pk]),
        {"text": "New text", "language": "en", "purposes": ["cross_site_tracking"]},
    )
    # then
    assert response.status_code == 200
    assert list(response.context["form"].errors) == ["purposes"]
    assert notice.versions.count() == 1


def test_notice_versions_are_never_edited_in_the_admin(superuser: Any, acme_source: Any) -> None:
    # given
    notice = Notice.objects.get(workspace=acme_source.workspace, key="banner")
    # when
    response = client_for(superuser).get(reverse("admin:consent_notice_change", args=[notice.pk]))
    # then
    assert response.status_code == 200
    [inline] = response.context["inline_admin_formsets"]
    request = RequestFactory().get("/")
    request.user = superuser
    assert (
        inline.has_add_permission,
        inline.has_change_permission,
        inline.has_delete_permission,
    ) == (False, False, False)
    assert reverse("admin:consent_notice_publish", args=[notice.pk]).encode() in response.content


def test_outsider_cannot_publish_on_an_acme_notice(outsider: Any, acme_source: Any) -> None:
    # given
    notice = Notice.objects.get(workspace=acme_source.workspace, key="banner")
    # when
    response = client_for(outsider).post(
        reverse("admin:consent_notice_publish", args=[notice.pk]),
        {"text": "Hijacked", "language": "en", "purposes": ["analytics"]},
    )
    # then
    assert response.status_code == 404
    assert list(notice.versions.values_list("version", flat=True)) == [1]


# --- the ledger ------------------------------------------------------------------------------


@pytest.fixture
def acme_records(acme_source: Any) -> list[ConsentRecord]:
    profile_id = profile_for(acme_source, ANON_VALUE)
    return decide(acme_source, ANON_VALUE, profile_id, analytics=Decision.GRANTED)


@pytest.fixture
def globex_records(globex_source: Any) -> list[ConsentRecord]:
    profile_id = profile_for(globex_source, "globex-visitor")
    return decide(globex_source, "globex-visitor", profile_id, analytics=Decision.DENIED)


def test_ledger_list_is_scoped_and_shows_no_subject_identifier(
    owner: Any, outsider: Any, acme_records: list[ConsentRecord], globex_records: Any
) -> None:
    # given
    [mine] = acme_records
    [theirs] = globex_records
    # when
    response = client_for(owner).get(reverse("admin:consent_consentrecord_changelist"))
    outsiders = client_for(outsider).get(reverse("admin:consent_consentrecord_changelist"))
    # then
    assert response.status_code == 200
    assert [r.pk for r in response.context["cl"].result_list] == [mine.pk]
    html = response.content.decode()
    assert str(mine.profile_id) in html
    assert mine.record_hash[:12] in html
    assert mine.record_hash not in html
    assert timeline_url(mine.profile_id) in html
    assert ANON_VALUE not in html
    assert bytes(mine.subject_index).hex() not in html
    assert [r.pk for r in outsiders.context["cl"].result_list] == [theirs.pk]
    assert str(mine.profile_id) not in outsiders.content.decode()


def test_ledger_filters_offer_only_the_stewards_workspaces_and_purposes(
    owner: Any, outsider: Any, acme_source: Any, globex_records: Any
) -> None:
    # given
    profile_id = profile_for(acme_source, ANON_VALUE)
    [analytics, email] = decide(
        acme_source,
        ANON_VALUE,
        profile_id,
        analytics=Decision.GRANTED,
        marketing_email=Decision.DENIED,
    )
    changelist = reverse("admin:consent_consentrecord_changelist")
    # when
    filtered = client_for(owner).get(changelist, {"purpose": analytics.purpose_id})
    probing = client_for(outsider).get(changelist, {"workspace": acme_source.workspace.pk})
    # then
    assert [r.pk for r in filtered.context["cl"].result_list] == [analytics.pk]
    [workspaces, purposes, *_] = filtered.context["cl"].filter_specs
    assert [label for _value, label in workspaces.lookup_choices] == ["Acme Store"]
    assert len(purposes.lookup_choices) == 6
    assert list(probing.context["cl"].result_list) == []
    assert b"Acme Store" not in probing.content
    assert email.purpose.key == "marketing_email"


def test_member_with_view_profiles_reads_the_ledger(
    member: Any, acme_records: list[ConsentRecord]
) -> None:
    # when
    response = client_for(member).get(reverse("admin:consent_consentrecord_changelist"))
    # then
    assert response.status_code == 200
    assert [r.pk for r in response.context["cl"].result_list] == [acme_records[0].pk]


def test_steward_without_a_ledger_role_is_refused(
    workspace: Any, acme_records: list[ConsentRecord]
) -> None:
    # given
    auditor = UserFactory(username="auditor", is_staff=True)
    profile_services.steward_grant_roles(
        workspace=workspace, user=auditor, roles=[WorkspaceRole.VIEW_AUDIT]
    )
    client = client_for(auditor)
    # when
    listing = client.get(reverse("admin:consent_consentrecord_changelist"))
    timeline = client.get(timeline_url(acme_records[0].profile_id))
    report = client.get(reverse("admin:consent_purpose_report"))
    # then
    assert (listing.status_code, timeline.status_code, report.status_code) == (403, 404, 403)


def test_record_page_shows_no_subject_index_or_proof_hash(
    owner: Any, acme_records: list[ConsentRecord]
) -> None:
    # given
    [record] = acme_records
    # when
    response = client_for(owner).get(
        reverse("admin:consent_consentrecord_change", args=[record.pk])
    )
    # then
    assert response.status_code == 200
    html = response.content.decode()
    assert record.record_hash in html
    assert "keyed hashes of: ip" in html
    assert bytes(record.subject_index).hex() not in html
    assert record.proof["ip"] not in html
    assert ANON_VALUE not in html


def test_the_ledger_is_read_only_even_for_a_superuser(
    superuser: Any, acme_records: list[ConsentRecord]
) -> None:
    # given
    [record] = acme_records
    before = ConsentRecord.objects.filter(pk=record.pk).values().get()
    model_admin = admin.site._registry[ConsentRecord]
    request = RequestFactory().get("/")
    request.user = superuser
    client = client_for(superuser)
    # when
    add = client.get(reverse("admin:consent_consentrecord_add"))
    change = client.post(
        reverse("admin:consent_consentrecord_change", args=[record.pk]),
        {"decision": Decision.DENIED},
    )
    delete = client.post(
        reverse("admin:consent_consentrecord_delete", args=[record.pk]), {"post": "yes"}
    )
    bulk = client.post(
        reverse("admin:consent_consentrecord_changelist"),
        {"action": "delete_selected", "index": "0", "_selected_action": [str(record.pk)]},
    )
    # then
    assert (
        model_admin.has_add_permission(request),
        model_admin.has_change_permission(request, record),
        model_admin.has_delete_permission(request, record),
    ) == (False, False, False)
    assert "delete_selected" not in model_admin.get_actions(request)
    assert (add.status_code, change.status_code, delete.status_code) == (403, 403, 403)
    assert bulk.status_code == 200  # the unknown action is ignored
    assert ConsentRecord.objects.filter(pk=record.pk).values().get() == before
    assert ConsentRecord.objects.count() == 1


# --- the timeline ----------------------------------------------------------------------------


@pytest.fixture
def timeline_profile(acme_source: Any) -> tuple[Any, list[ConsentRecord]]:
    """A profile that granted analytics and advertising, then sent a GPC signal."""
    profile_id = profile_for(acme_source, ANON_VALUE)
    first = decide(
        acme_source,
        ANON_VALUE,
        profile_id,
        analytics=Decision.GRANTED,
        advertising=Decision.GRANTED,
    )
    second = gpc(acme_source, ANON_VALUE, profile_id)
    return profile_id, [*first, *second]


def test_timeline_lists_the_records_newest_first_with_chain_intact(
    owner: Any, timeline_profile: tuple[Any, list[ConsentRecord]]
) -> None:
    # given
    profile_id, [advertising, analytics, opt_out] = timeline_profile
    # when
    response = client_for(owner).get(timeline_url(profile_id))
    # then
    assert response.status_code == 200
    rows = response.context["rows"]
    assert [
        (r["record"].pk, r["record"].purpose.key, r["record"].decision, r["notice"], r["gpc"])
        for r in rows
    ] == [
        (opt_out.pk, "advertising", Decision.DENIED, "—", True),
        (analytics.pk, "analytics", Decision.GRANTED, "banner v1", False),
        (advertising.pk, "advertising", Decision.GRANTED, "banner v1", False),
    ]
    assert [(c.subject_type, c.checked, c.broken_record) for c in response.context["checks"]] == [
        ("anonymous_id", 3, None)
    ]
    html = response.content.decode()
    assert "Chain intact" in html
    assert "broken" not in html
    assert ANON_VALUE not in html
    assert bytes(opt_out.subject_index).hex() not in html
    assert response.context["states"]["advertising"]["needs_reconsent"] is True


def test_timeline_names_the_record_edited_behind_the_ledgers_back(
    owner: Any, timeline_profile: tuple[Any, list[ConsentRecord]]
) -> None:
    # given
    profile_id, [_advertising, analytics, _opt_out] = timeline_profile
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE consent_consentrecord SET decision = 'denied' WHERE id = %s",
            [raw_pk(analytics)],
        )
    # when
    response = client_for(owner).get(timeline_url(profile_id))
    # then
    assert response.status_code == 200
    assert [(c.checked, c.broken_record) for c in response.context["checks"]] == [(2, analytics.pk)]
    assert [r["record"].pk for r in response.context["rows"] if r["broken"]] == [analytics.pk]
    html = response.content.decode()
    assert "Chain broken" in html
    assert f"broken at record {analytics.pk}" in html
    assert "Chain intact" not in html


def test_outsider_gets_404_on_an_acme_timeline(
    outsider: Any, timeline_profile: tuple[Any, list[ConsentRecord]]
) -> None:
    # given
    profile_id, _records = timeline_profile
    # when
    response = client_for(outsider).get(timeline_url(profile_id))
    # then
    assert response.status_code == 404
    assert ANON_VALUE.encode() not in response.content


def test_a_merged_profiles_timeline_is_its_survivors(owner: Any, acme_source: Any) -> None:
    # given: consent on a device, then the device logs in as a known customer
    customer = profile_for(acme_source, "laptop")
    profile_services.ingest_messages(
        source=acme_source, messages=[msg("identify", user_id="u-9", anonymous_id="laptop")]
    )
    device = profile_for(acme_source, "phone")
    [record] = decide(acme_source, "phone", device, marketing_email=Decision.GRANTED)
    profile_services.ingest_messages(
        source=acme_source, messages=[msg("identify", user_id="u-9", anonymous_id="phone")]
    )
    client = client_for(owner)
    # when
    redirect = client.get(timeline_url(device))
    page = client.get(timeline_url(customer))
    # then
    assert (redirect.status_code, redirect["Location"]) == (302, timeline_url(customer))
    assert [(r["record"].pk, r["merged_from"]) for r in page.context["rows"]] == [
        (record.pk, device)
    ]
    assert page.context["chain_intact"] is True


# --- the report ------------------------------------------------------------------------------


def test_report_counts_are_exact_for_a_hand_built_scenario(
    owner: Any, outsider: Any, acme_source: Any, globex_source: Any, monkeypatch: Any
) -> None:
    # given: four people in acme, two decisions of them 40 days ago, noise in globex
    source = acme_source
    p1, p2, p3, p4 = (profile_for(source, f"r{n}") for n in range(1, 5))
    long_ago = timezone.now() - timedelta(days=40)
    with monkeypatch.context() as past:
        past.setattr(timezone, "now", lambda: long_ago)
        decide(source, "r3", p3, analytics=Decision.GRANTED)
        decide(source, "r3", p3, analytics=Decision.WITHDRAWN)
        gpc(source, "r2", p2)
    decide(source, "r1", p1, analytics=Decision.GRANTED, advertising=Decision.GRANTED)
    decide(source, "r2", p2, analytics=Decision.DENIED)
    decide(source, "r4", p4, analytics=Decision.GRANTED)
    decide(source, "r4", p4, analytics=Decision.WITHDRAWN)
    gpc(source, "r1", p1)  # over p1's opt-in: flagged for re-consent
    globex_profile = profile_for(globex_source, "g1")
    decide(globex_source, "g1", globex_profile, analytics=Decision.WITHDRAWN)
    gpc(globex_source, "g1", globex_profile)
    # when
    response = client_for(owner).get(reverse("admin:consent_purpose_report"))
    outsiders = client_for(outsider).get(reverse("admin:consent_purpose_report"))
    # then
    assert response.status_code == 200
    [item] = response.context["reports"]
    report = item["report"]
    assert item["workspace"].slug == "acme"
    assert [
        (
            r.key,
            r.states,
            r.granted,
            r.denied,
            r.withdrawn,
            r.granted_percent,
            r.withdrawals_recent,
        )
        for r in report.purposes
    ] == [
        ("necessary", 0, 0, 0, 0, None, 0),
        ("analytics", 4, 1, 1, 2, 25.0, 1),
        ("personalization", 0, 0, 0, 0, None, 0),
        ("marketing_email", 0, 0, 0, 0, None, 0),
        ("advertising", 2, 0, 2, 0, 0.0, 0),
        ("profiling", 0, 0, 0, 0, None, 0),
    ]
    assert (
        report.withdrawals_recent,
        report.gpc_opt_outs,
        report.gpc_opt_outs_recent,
        report.needs_reconsent_profiles,
    ) == (1, 2, 1, 1)
    assert item["reconsent_sample"] == [p1]
    html = response.content.decode()
    assert "25.0%" in html
    assert timeline_url(p1) in html
    assert b"Acme Store" not in outsiders.content
    [globex] = outsiders.context["reports"]
    assert (globex["workspace"].slug, globex["report"].gpc_opt_outs) == ("globex", 1)
