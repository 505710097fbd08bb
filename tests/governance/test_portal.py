"""The privacy portal: submit, verify with the emailed code, follow the request; the status
token stays in the session, so another browser gets 404; forms are CSRF-protected."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest
from auditlog import get_logentry_model
from django.core import mail
from django.core.cache import cache
from django.test import Client

from consent import services as consent_services
from governance import services
from governance.models import DataSubjectRequest, ExportArchive
from tests.governance.request_helpers import code_from_outbox

LogEntry = get_logentry_model()


@pytest.fixture(autouse=True)
def _fresh_limits() -> Any:
    cache.clear()
    yield
    cache.clear()


FORM = {
    "type": "access",
    "regime": "gdpr",
    "contact_type": "email",
    "email": "ada@example.com",
    "phone": "",
    "details": "",
}


def _submit(client: Client, **overrides: Any) -> Any:
    return client.post("/privacy/acme/", {**FORM, **overrides})


def test_the_form_is_accessible_and_csrf_protected(workspace: Any) -> None:
    # given
    consent_services.purposes_ensure_defaults(workspace=workspace)
    strict = Client(enforce_csrf_checks=True)
    # when
    page = strict.get("/privacy/acme/")
    forged = strict.post("/privacy/acme/", FORM)
    # then
    html = page.content.decode()
    assert page.status_code == 200
    assert '<html lang="en">' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert '<label for="id_email">Email address</label>' in html
    assert "<legend>Which uses of your data do you object to?</legend>" in html
    assert forged.status_code == 403
    assert DataSubjectRequest.objects.count() == 0


def test_submit_verify_and_follow(
    client: Client, workspace: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # when
    with django_capture_on_commit_callbacks(execute=True):
        submitted = _submit(client)
    dsr = DataSubjectRequest.objects.get()
    verify_url = f"/privacy/requests/{dsr.pk}/verify/"
    verify_page = client.get(verify_url)
    verified = client.post(verify_url, {"code": code_from_outbox()})
    status = client.get(f"/privacy/requests/{dsr.pk}/")
    # then
    assert submitted.status_code == 302
    assert submitted["Location"] == verify_url
    assert mail.outbox[0].to == ["ada@example.com"]
    assert verify_page.status_code == 200
    assert verified.status_code == 302
    assert verified["Location"] == f"/privacy/requests/{dsr.pk}/"
    html = status.content.decode()
    assert status.status_code == 200
    assert "Verified" in html
    assert "Thank you: your request is confirmed." in html
    assert "ada@example.com" not in html
    assert "Download your data" not in html


def test_a_wrong_code_is_shown_as_an_error(client: Client, workspace: Any) -> None:
    # given
    _submit(client)
    dsr = DataSubjectRequest.objects.get()
    # when
    response = client.post(f"/privacy/requests/{dsr.pk}/verify/", {"code": "999999"})
    # then
    assert response.status_code == 400
    assert "The verification code is not correct." in response.content.decode()
    assert DataSubjectRequest.objects.get().verification_attempts == 1


def test_another_browser_cannot_see_or_verify_the_request(client: Client, workspace: Any) -> None:
    # given
    _submit(client)
    dsr = DataSubjectRequest.objects.get()
    stranger = Client()
    # when
    status = stranger.get(f"/privacy/requests/{dsr.pk}/")
    verify = stranger.post(f"/privacy/requests/{dsr.pk}/verify/", {"code": "123456"})
    # then
    assert status.status_code == verify.status_code == 404
    assert DataSubjectRequest.objects.get().verification_attempts == 0


def test_invalid_input_is_shown_and_nothing_is_stored(client: Client, workspace: Any) -> None:
    # when
    response = _submit(client, email="")
    # then
    assert response.status_code == 400
    assert "Please fill this in." in response.content.decode()
    assert DataSubjectRequest.objects.count() == 0


def test_an_objection_needs_a_purpose_and_keeps_the_ones_chosen(
    client: Client, workspace: Any
) -> None:
    # given
    consent_services.purposes_ensure_defaults(workspace=workspace)
    # when
    refused = _submit(client, type="objection")
    accepted = _submit(client, type="objection", purposes=["profiling"])
    # then
    assert refused.status_code == 400
    assert accepted.status_code == 302
    assert DataSubjectRequest.objects.get().details == {"purposes": ["profiling"]}


def test_a_phone_request_waits_for_a_steward(client: Client, workspace: Any) -> None:
    # when
    response = _submit(client, contact_type="phone", email="", phone="+44 20 7946 0001")
    status = client.get(response["Location"])
    # then
    dsr = DataSubjectRequest.objects.get()
    assert response["Location"] == f"/privacy/requests/{dsr.pk}/"
    assert "Our privacy team will contact you" in status.content.decode()
    assert mail.outbox == []


def test_the_status_page_links_the_export_and_the_download_is_audited(
    client: Client, workspace: Any, owner: Any
) -> None:
    # given: an access request the steward verified, approved and fulfilled (export built)
    _submit(client)
    dsr = DataSubjectRequest.objects.get()
    services.request_verify_manually(request=dsr, actor=owner, note="Checked.")
    services.request_approve(request=dsr, actor=owner)
    services.request_fulfil(request=dsr, actor=owner)
    download_url = f"/privacy/requests/{dsr.pk}/download/"
    accesses = LogEntry.objects.filter(action=LogEntry.Action.ACCESS).count()
    # when
    status = client.get(f"/privacy/requests/{dsr.pk}/")
    download = client.get(download_url)
    stranger = Client().get(download_url)
    # then
    assert f'href="{download_url}"' in status.content.decode()
    assert download.status_code == 200
    assert download["Content-Type"] == "application/zip"
    assert zipfile.is_zipfile(io.BytesIO(download.getvalue()))
    assert stranger.status_code == 404
    assert LogEntry.objects.filter(action=LogEntry.Action.ACCESS).count() == accesses + 1
    assert ExportArchive.objects.get(request=dsr).downloads == 1


def test_submissions_are_limited_per_client_address(client: Client, workspace: Any) -> None:
    # given
    for _ in range(10):
        assert _submit(client).status_code == 302
    # when
    refused = _submit(client)
    # then
    assert refused.status_code == 429
    assert "Too many requests from this address" in refused.content.decode()
    assert DataSubjectRequest.objects.count() == 10


def test_an_unknown_organisation_is_404_and_the_index_redirects(
    client: Client, workspace: Any
) -> None:
    # when
    unknown = client.get("/privacy/nope/")
    index = client.get("/privacy/")
    redirect = client.get("/privacy/", {"workspace": "acme"})
    # then
    assert unknown.status_code == 404
    assert index.status_code == 200
    assert redirect["Location"] == "/privacy/acme/"
