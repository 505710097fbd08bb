"""Compliance reports: each kind's figures on hand-built data, both formats (printable HTML and
CSV) through the command and the admin, no personal-data value in any of them, and the
admin's per-workspace permission (a steward of another workspace gets 404 and sees nothing)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from cdp.core import registry
from cdp.core.exceptions import InvalidInput
from consent import services as consent_services
from consent.enums import Decision, Method
from consent.services import Evidence, Subject
from governance import reports, retention, services
from governance.enums import ReportFormat, ReportKind, RequestState
from governance.models import DataSubjectRequest, GovernanceSettings
from profiles import services as profile_services
from profiles.models import Profile
from tests.governance.request_helpers import frozen, in_progress, submitted
from tests.profiles.factories import UserFactory
from tests.profiles.ingest_helpers import msg
from tests.test_no_plaintext_pii import SENTINELS

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
PAGE = reverse("admin:governance_compliancereport_changelist")


def download_url(slug: str, kind: str, fmt: str) -> str:
    return reverse("admin:governance_compliancereport_download", args=[slug, kind, fmt])


def section(report: reports.Report, title: str) -> reports.Section:
    return next(s for s in report.sections if s.title.startswith(title))


@pytest.fixture
def source(workspace: Any) -> Any:
    return profile_services.source_create(workspace=workspace, name="Web")


def person(source: Any, user_id: str, **traits: Any) -> Profile:
    outcome = profile_services.ingest_messages(
        source=source, messages=[msg("identify", user_id=user_id, traits=traits)]
    )
    return Profile.objects.get(pk=outcome.profile_ids[0])


# --- dsr -------------------------------------------------------------------------------------


def _request(workspace: Any, request_type: str, regime: str, **fields: Any) -> Any:
    dsr = submitted(workspace, request_type=request_type, regime=regime).request
    DataSubjectRequest.objects.filter(pk=dsr.pk).update(**fields)
    return dsr


def test_the_dsr_report_counts_deadlines_kept_per_type_and_regime(
    workspace: Any, other_workspace: Any
) -> None:
    # given: January 2027; NOW is 1 March
    jan = lambda day: datetime(2027, 1, day, 9, 0, tzinfo=UTC)  # noqa: E731
    _request(workspace, "access", "gdpr", state=RequestState.FULFILLED, received_at=jan(5),
             due_at=jan(5) + timedelta(days=31), closed_at=jan(15))  # fmt: skip
    _request(workspace, "access", "gdpr", state=RequestState.FULFILLED, received_at=jan(6),
             due_at=jan(6) + timedelta(days=31), closed_at=jan(6) + timedelta(days=45))  # fmt: skip
    overdue = _request(workspace, "erasure", "ccpa", state=RequestState.IN_PROGRESS,
                       received_at=jan(10), due_at=jan(10) + timedelta(days=45))  # fmt: skip
    _request(workspace, "erasure", "ccpa", state=RequestState.REVOKED, received_at=jan(11),
             due_at=jan(11) + timedelta(days=45), closed_at=jan(12))  # fmt: skip
    december = datetime(2026, 12, 1, tzinfo=UTC)
    _request(workspace, "access", "gdpr", state=RequestState.DENIED, received_at=december,
             due_at=jan(1), closed_at=jan(20))  # fmt: skip
    _request(other_workspace, "access", "gdpr", received_at=jan(7), due_at=jan(7))
    # when
    report = reports.report_build(
        workspace=workspace, kind="dsr", since=date(2027, 1, 1), until=date(2027, 1, 31), now=NOW
    )
    # then
    assert section(report, "Requests per type").rows == [
        ["Access", "GDPR", 2, 2, 1, "50.0", 1, 0, 0, 0, 0, 27.5],
        ["Erasure", "CCPA/CPRA", 2, 0, 0, "", 0, 1, 1, 1, 0, ""],
        ["all", "all", 4, 2, 1, "50.0", 1, 1, 1, 1, 0, 27.5],
    ]
    assert section(report, "Open requests past").rows == [
        [str(overdue.pk), "Erasure", "CCPA/CPRA", "In progress", "2027-01-10 09:00",
         "2027-02-24 09:00", 5, ""]
    ]  # fmt: skip
    assert dict(report.summary)["answered on time (%)"] == "50.0"
    assert (report.since, report.until) == (
        datetime(2027, 1, 1, tzinfo=UTC),
        datetime(2027, 2, 1, tzinfo=UTC),
    )


def test_a_period_ending_before_it_starts_is_refused(workspace: Any) -> None:
    with pytest.raises(InvalidInput) as refused:
        reports.report_build(
            workspace=workspace, kind="dsr", since=date(2027, 2, 1), until=date(2027, 1, 1)
        )
    assert refused.value.code == "invalid_period"


# --- consent ---------------------------------------------------------------------------------


def test_the_consent_report_gives_rates_withdrawals_and_gpc(workspace: Any, source: Any) -> None:
    # given
    consent_services.purposes_ensure_defaults(workspace=workspace)
    a, b, c = (person(source, who) for who in ("a", "b", "c"))

    def decide(profile: Profile, who: str, method: str = Method.BANNER, **decisions: str) -> None:
        consent_services.consent_record(
            workspace=workspace,
            subject=Subject("user_id", who, profile.pk),
            decisions=decisions,
            evidence=Evidence(method=method),
        )

    decide(a, "a", analytics=Decision.GRANTED)
    decide(b, "b", analytics=Decision.GRANTED)
    decide(b, "b", analytics=Decision.WITHDRAWN)
    decide(c, "c", Method.GPC, advertising=Decision.DENIED)
    # when
    report = reports.report_build(workspace=workspace, kind="consent")
    # then
    rows = {row[0]: row for row in section(report, "Rates per purpose").rows}
    assert rows["analytics"] == ["analytics", "Analytics", 2, 1, 0, 1, 0, 50.0, 1]
    assert rows["advertising"][2:] == [1, 0, 1, 0, 0, 0.0, 0]
    summary = dict(report.summary)
    assert (summary["withdrawals in the period"], summary["GPC opt-outs in the period"]) == (1, 1)


# --- ropa ------------------------------------------------------------------------------------


def test_the_records_of_processing_list_purposes_data_recipients_and_retention(
    workspace: Any, source: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given
    consent_services.purposes_ensure_defaults(workspace=workspace)
    GovernanceSettings.objects.create(
        workspace=workspace, controller_contact="Acme Ltd, privacy@acme.example.com"
    )
    person(source, "u1", email="ropa.person@example.com", plan="gold")
    profile_services.ingest_messages(
        source=source, messages=[msg(user_id="u1", name="Order Completed")]
    )
    retention.retention_defaults_ensure(workspace=workspace)
    monkeypatch.setattr(registry, "_recipient_providers", {})
    before = reports.report_build(workspace=workspace, kind="ropa")
    registry.register_recipients(
        "tests.ads",
        lambda ws: [
            registry.Recipient(
                name="Ads Co",
                kind="destination",
                purposes=("advertising",),
                country="US",
                safeguards="Standard contractual clauses",
            )
        ],
    )
    # when
    report = reports.report_build(workspace=workspace, kind="ropa")
    # then
    summary = dict(report.summary)
    assert summary["controller"] == "Acme Ltd, privacy@acme.example.com"
    assert summary["profiles"] == 1
    purposes = [row[0] for row in section(report, "Purposes").rows]
    assert purposes[:2] == ["necessary", "analytics"]
    assert section(report, "Categories of data subjects").rows == [["Web", "Website", "yes"]]
    assert section(report, "Categories of personal data: identifiers").rows == [
        ["email", 1],
        ["user_id", 1],
    ]
    traits = {row[0]: row[1] for row in section(report, "Categories of personal data: traits").rows}
    assert traits["email"] == "Personal data (encrypted)"
    assert traits["plan"] == "Attribute (plain, usable in audiences)"
    assert section(report, "Categories of personal data: events").rows == [
        ["identify", "(unnamed)", 1],
        ["track", "Order Completed", 1],
    ]
    assert section(before, "Recipients").rows == []
    assert section(before, "Recipients").note.startswith("No recipient is registered")
    assert section(report, "Recipients").rows == [
        ["Ads Co", "destination", "tests.ads", "advertising", "", "US",
         "Standard contractual clauses"]
    ]  # fmt: skip
    assert section(report, "Transfers").rows == [["Ads Co", "US", "Standard contractual clauses"]]
    assert [row[:3] for row in section(report, "Time limits for erasure (").rows] == [
        ["Full IP addresses", "Full IP address of events (the truncated one stays)", "7 days"],
        ["Raw events", "Events (by name, or all events)", "13 months"],
        ["Inactive profiles", "Profiles inactive for the period (erased)", "3 years"],
    ]


# --- pii-access ------------------------------------------------------------------------------


def test_the_access_report_lists_the_workspaces_reveals_even_of_erased_profiles(
    workspace: Any, other_workspace: Any, source: Any, owner: Any, outsider: Any
) -> None:
    # given: two reveals here (one profile erased since), one elsewhere
    kept = person(source, "kept")
    erased = person(source, "erased", email="erased.person@example.com")
    for profile, reason in ((kept, "Customer called about an order"), (erased, "=cmd()")):
        profile_services.profile_reveal(
            workspace=workspace, profile=profile, actor=owner, reason=reason, via="admin"
        )
    elsewhere = person(profile_services.source_create(workspace=other_workspace, name="W"), "x")
    profile_services.profile_reveal(
        workspace=other_workspace, profile=elsewhere, actor=outsider, reason="Theirs", via="api"
    )
    dsr = in_progress(workspace, contact="erased.person@example.com", request_type="erasure")
    services.request_fulfil(request=dsr, actor=owner)
    assert not Profile.objects.filter(pk=erased.pk).exists()
    # when
    report = reports.report_build(workspace=workspace, kind="pii-access")
    # then
    rows = section(report, "Reveals").rows
    assert [(r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows] == [
        ("owner", "profiles.profile", str(kept.pk), "identities, traits",
         "Customer called about an order", "admin"),
        ("owner", "profiles.profile", str(erased.pk), "identities, traits", "=cmd()", "admin"),
    ]  # fmt: skip
    assert dict(report.summary)["reveals"] == 2
    # and in CSV a reason that looks like a formula is quoted
    assert "'=cmd()" in reports.report_csv(report)


def test_the_access_report_lists_the_subjects_downloads(
    workspace: Any, source: Any, owner: Any
) -> None:
    # given
    person(source, "u1", email="dl.person@example.com")
    dsr = in_progress(workspace, contact="dl.person@example.com")
    services.request_fulfil(request=dsr, actor=owner)
    services.request_export_download(request=dsr, via="portal")
    # when
    report = reports.report_build(workspace=workspace, kind="pii-access")
    # then
    (row,) = section(report, "Reveals").rows
    assert (row[1], row[2], row[4], row[5], row[6]) == (
        "the data subject",
        "governance.exportarchive",
        "archive",
        "subject download",
        "portal",
    )


# --- audit -----------------------------------------------------------------------------------


def test_the_audit_report_verifies_the_chain_and_lists_retention_runs(
    workspace: Any, source: Any, owner: Any
) -> None:
    # given
    retention.retention_apply(workspace=workspace)
    profile_services.profile_reveal(
        workspace=workspace, profile=person(source, "u1"), actor=owner, reason="Check", via="admin"
    )
    verified_request = in_progress(workspace)
    # when
    report = reports.report_build(workspace=workspace, kind="audit")
    # then
    summary = dict(report.summary)
    assert summary["hash chain"] == "intact"
    assert summary["retention runs in the period"] == 3
    assert summary["reveals in the period"] == 1
    runs = section(report, "Retention runs").rows
    assert sorted(row[1] for row in runs) == [
        "Full IP addresses",
        "Inactive profiles",
        "Raw events",
    ]
    counts = {(row[0], row[1]): row[2] for row in section(report, "Audited actions").rows}
    assert counts[("retention policies", "create")] == 3
    assert counts[("data-subject requests", "create")] == 1
    assert counts[("personal data revealed", "access")] == 1
    assert verified_request.state == RequestState.IN_PROGRESS


# --- formats, command, no personal data ------------------------------------------------------


@pytest.mark.parametrize("kind", ReportKind.values)
@pytest.mark.parametrize("fmt", ReportFormat.values)
def test_every_report_renders_in_both_formats_through_the_command(
    workspace: Any, source: Any, kind: str, fmt: str, tmp_path: Path
) -> None:
    # given
    consent_services.purposes_ensure_defaults(workspace=workspace)
    in_progress(workspace)
    output = tmp_path / f"report.{fmt}"
    # when
    call_command(
        "compliance_report", "--workspace", "acme", "--kind", kind, "--format", fmt,
        "--since", "2020-01-01", "--output", str(output), stderr=io.StringIO(),
    )  # fmt: skip
    # then
    text = output.read_text(encoding="utf-8")
    title = reports.report_build(workspace=workspace, kind=kind).title
    if fmt == "html":
        assert text.startswith("<!doctype html>")
        assert f"<h1>{title}</h1>" in text.replace("&#x27;", "'")
        assert "Acme Store (acme)" in text
    else:
        rows = list(csv.reader(io.StringIO(text)))
        assert rows[0] == ["report", kind, title]
        assert rows[1] == ["workspace", "acme", "Acme Store"]
        assert any(row[:1] == ["section"] for row in rows)


def test_the_command_writes_to_standard_output_and_refuses_bad_input(workspace: Any) -> None:
    # when
    out = io.StringIO()
    call_command("compliance_report", "--workspace", "acme", "--kind", "dsr", "--format", "csv",
                 stdout=out)  # fmt: skip
    # then
    assert out.getvalue().startswith("report,dsr,")
    for args in (
        ["--workspace", "nope", "--kind", "dsr"],
        ["--workspace", "acme", "--kind", "dsr", "--since", "yesterday"],
        ["--workspace", "acme", "--kind", "dsr", "--since", "2027-02-01", "--until", "2027-01-01"],
    ):
        with pytest.raises(CommandError):
            call_command("compliance_report", *args, stdout=io.StringIO())


def test_no_report_holds_a_personal_data_value(workspace: Any, source: Any, owner: Any) -> None:
    # given: sentinel personal data, revealed with a reason, and a request about it
    consent_services.purposes_ensure_defaults(workspace=workspace)
    sentinel = person(
        source, SENTINELS["user_id"], email=SENTINELS["email"], first_name=SENTINELS["first_name"]
    )
    profile_services.ingest_messages(
        source=source,
        messages=[msg(user_id=SENTINELS["user_id"], name="Viewed", ip=SENTINELS["ip"],
                      properties={"address": SENTINELS["property"]})],
    )  # fmt: skip
    profile_services.profile_reveal(
        workspace=workspace, profile=sentinel, actor=owner, reason="Support ticket", via="admin"
    )
    in_progress(workspace, contact=SENTINELS["email"])
    # when
    outputs = [
        reports.report_render(reports.report_build(workspace=workspace, kind=kind), fmt=fmt)[0]
        for kind in ReportKind.values
        for fmt in ReportFormat.values
    ]
    # then
    for text in outputs:
        for value in SENTINELS.values():
            assert value.lower() not in text.lower()


# --- the admin -------------------------------------------------------------------------------


def test_an_auditor_sees_the_reports_page_and_downloads_both_formats(
    client: Client, workspace: Any, other_workspace: Any, owner: Any
) -> None:
    # given
    client.force_login(owner)
    in_progress(workspace)
    # when
    index = client.get(reverse("admin:app_list", args=["governance"]))
    page = client.get(PAGE, {"since": "2020-01-01"})
    html = client.get(download_url("acme", "dsr", "html"), {"since": "2020-01-01"})
    data = client.get(download_url("acme", "dsr", "csv"), {"since": "2020-01-01"})
    # then
    assert PAGE in index.content.decode()
    assert page.status_code == 200
    assert [w.slug for w in page.context["workspaces"]] == ["acme"]
    assert download_url("acme", "ropa", "csv") + "?since=2020-01-01" in page.content.decode()
    assert html.status_code == 200 and html["Content-Type"] == "text/html; charset=utf-8"
    assert "Data-subject requests: deadlines kept" in html.content.decode()
    assert data.status_code == 200 and data["Content-Type"] == "text/csv; charset=utf-8"
    assert data["Content-Disposition"].startswith('attachment; filename="acme-dsr-')
    assert "private" in data["Cache-Control"] and "no-store" in data["Cache-Control"]
    rows = list(csv.reader(io.StringIO(data.content.decode())))
    assert ["summary", "requests received", "1"] in rows


@pytest.mark.parametrize("kind", ReportKind.values)
def test_a_steward_of_another_workspace_gets_404_and_sees_nothing(
    client: Client, workspace: Any, other_workspace: Any, outsider: Any, kind: str
) -> None:
    # given
    in_progress(workspace)
    client.force_login(outsider)
    # when
    page = client.get(PAGE)
    responses = [client.get(download_url("acme", kind, fmt)) for fmt in ReportFormat.values]
    # then
    assert [w.slug for w in page.context["workspaces"]] == ["globex"]
    assert "acme" not in page.content.decode()
    assert [r.status_code for r in responses] == [404, 404]
    assert all("Acme" not in r.content.decode() for r in responses)


def test_a_steward_without_view_audit_cannot_open_the_reports(
    client: Client, workspace: Any, member: Any
) -> None:
    # given
    client.force_login(member)
    # when
    page = client.get(PAGE)
    report = client.get(download_url("acme", "dsr", "html"))
    # then
    assert page.status_code == 403
    assert report.status_code == 404


def test_unknown_kinds_formats_and_bad_periods_are_refused(
    client: Client, workspace: Any, owner: Any
) -> None:
    # given
    client.force_login(owner)
    # when
    unknown_kind = client.get(download_url("acme", "secrets", "html"))
    unknown_format = client.get(download_url("acme", "dsr", "pdf"))
    reversed_period = client.get(
        download_url("acme", "dsr", "csv"), {"since": "2027-02-01", "until": "2027-01-01"}
    )
    not_a_date = client.get(download_url("acme", "dsr", "csv"), {"since": "soon"})
    # then
    assert (unknown_kind.status_code, unknown_format.status_code) == (404, 404)
    assert reversed_period.status_code == 400
    assert not_a_date.status_code == 400


def test_a_superuser_sees_every_workspace(
    client: Client, workspace: Any, other_workspace: Any
) -> None:
    # given
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    # when
    page = client.get(PAGE)
    report = client.get(download_url("globex", "audit", "html"))
    # then
    assert [w.slug for w in page.context["workspaces"]] == ["acme", "globex"]
    assert report.status_code == 200


def test_reports_use_the_frozen_clock_for_their_default_period(workspace: Any) -> None:
    # when
    with frozen(NOW):
        report = reports.report_build(workspace=workspace, kind="dsr")
    # then
    assert (report.since, report.until) == (NOW - timedelta(days=30), NOW)
