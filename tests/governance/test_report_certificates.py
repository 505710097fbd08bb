"""The data-subject request report lists every erasure carried out with its certificate and the
check of the certificate's signature: the evidence an auditor asks for, with the erasures closed
without one and the certificates changed after signing counted in the summary."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext

from governance import reports, services
from governance.models import DataSubjectRequest, ErasureCertificate
from tests.governance.request_helpers import in_progress


def _section(report: reports.Report) -> reports.Section:
    return next(s for s in report.sections if s.title.startswith("Erasures carried out"))


def _erased(workspace: Any, contact: str) -> ErasureCertificate:
    dsr = in_progress(workspace, request_type="erasure", contact=contact)
    services.request_fulfil(request=dsr, actor=None)
    return ErasureCertificate.objects.get(request=dsr)


def test_each_erasure_is_listed_with_its_certificate_and_signature_check(
    workspace: Any,
) -> None:
    # given: two erasures carried out, one certificate changed after signing, and an erasure
    # closed without one (as an older release or a hand edit could leave it)
    kept = _erased(workspace, "a@example.com")
    changed = _erased(workspace, "b@example.com")
    ErasureCertificate.objects.filter(pk=changed.pk).update(
        body={**changed.body, "suppressed_identifiers": {}}
    )
    bare = in_progress(workspace, request_type="erasure", contact="c@example.com")
    DataSubjectRequest.objects.filter(pk=bare.pk).update(state="fulfilled")
    open_erasure = in_progress(workspace, request_type="erasure", contact="d@example.com")
    # when
    report = reports.report_build(workspace=workspace, kind="dsr", since=None, until=None)
    # then
    rows = {row[0]: row for row in _section(report).rows}
    assert set(rows) == {str(kept.request_id), str(changed.request_id), str(bare.pk)}
    assert str(open_erasure.pk) not in rows
    assert rows[str(kept.request_id)][3] == str(kept.pk)
    assert rows[str(kept.request_id)][-1] == "valid"
    assert rows[str(kept.request_id)][6] == 0  # no store failed
    assert rows[str(changed.request_id)][-1].startswith("INVALID: bad signature")
    assert rows[str(bare.pk)][3] == "missing"
    summary = dict(report.summary)
    assert summary["erasures carried out without a certificate"] == 1
    assert summary["erasure certificates that no longer verify"] == 1
    # both formats carry it
    html, _, _ = reports.report_render(report, fmt="html")
    csv_text, _, _ = reports.report_render(report, fmt="csv")
    for content in (html, csv_text):
        text = content.decode() if isinstance(content, bytes) else content
        assert str(changed.pk) in text and "INVALID" in text


def test_no_erasure_says_none(workspace: Any) -> None:
    # given
    in_progress(workspace, request_type="access")
    # when
    report = reports.report_build(workspace=workspace, kind="dsr", since=None, until=None)
    # then
    assert _section(report).rows == []
    assert _section(report).note == "None."


def test_the_report_reads_the_signing_keys_once(workspace: Any) -> None:
    # given
    for n in range(3):
        _erased(workspace, f"p{n}@example.com")
    # when
    with CaptureQueriesContext(connection) as queries:
        report = reports.report_build(workspace=workspace, kind="dsr", since=None, until=None)
    # then
    assert [row[-1] for row in _section(report).rows] == ["valid"] * 3
    assert sum("consent_signingkey" in q["sql"] for q in queries.captured_queries) == 1
