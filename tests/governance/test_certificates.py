"""Erasure certificates where people read them: the admin (privacy team and auditors of the
workspace only, with the signature checked against the published key and the signed JSON to
download), the management API (`GET /api/v1/requests/{id}/certificate`) and
`manage.py verify_certificate`, which checks a downloaded certificate offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from consent import selectors as consent_selectors
from consent import services as consent_services
from governance import erasure, selectors
from governance.models import ErasureCertificate
from profiles import services as profile_services
from profiles.enums import WorkspaceRole
from profiles.models import Profile
from tests.governance.request_helpers import SUBJECT_EMAIL_NORMALIZED, in_progress, verified
from tests.profiles.factories import UserFactory
from tests.profiles.ingest_helpers import msg

URL = "/api/v1/requests/"
CHANGELIST = reverse("admin:governance_erasurecertificate_changelist")


@pytest.fixture
def certificate(workspace: Any) -> ErasureCertificate:
    """A carried-out erasure of a person known by their email."""
    source = profile_services.source_create(workspace=workspace, name="Web")
    profile_services.ingest_messages(
        source=source,
        messages=[
            msg("identify", user_id="u-c1", traits={"email": SUBJECT_EMAIL_NORMALIZED}),
        ],
    )
    assert Profile.objects.filter(status="active").count() == 1
    return erasure.erasure_run(request=in_progress(workspace, request_type="erasure"))


def _tamper(certificate: ErasureCertificate) -> None:
    """Change the stored body after signing, as someone with database access could."""
    body = {**certificate.body, "data_keys_destroyed": []}
    ErasureCertificate.objects.filter(pk=certificate.pk).update(body=body)


def _auditor(workspace: Any) -> Any:
    user = UserFactory(username="auditor", is_staff=True)
    profile_services.steward_grant_roles(
        workspace=workspace, user=user, roles=[WorkspaceRole.VIEW_AUDIT]
    )
    return user


def _write(tmp_path: Path, name: str, data: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")
    return str(path)


# --- admin -------------------------------------------------------------------------------------


def test_the_privacy_team_sees_each_certificate_with_its_signature_checked(
    client: Client, workspace: Any, owner: Any, certificate: ErasureCertificate
) -> None:
    # given
    client.force_login(owner)
    change = reverse("admin:governance_erasurecertificate_change", args=[certificate.pk])
    # when
    listed = client.get(CHANGELIST)
    page = client.get(change)
    # then
    assert [c.pk for c in listed.context["cl"].result_list] == [certificate.pk]
    assert listed.status_code == page.status_code == 200
    html = page.content.decode()
    assert f"valid ({certificate.kid})" in html
    assert "complete: " in html
    for store in certificate.body["stores"]:
        assert f"<td>{store['store']}</td>" in html
    assert reverse("admin:governance_erasurecertificate_download", args=[certificate.pk]) in html
    assert SUBJECT_EMAIL_NORMALIZED not in html.lower()


def test_the_request_page_links_its_certificate(
    client: Client, owner: Any, certificate: ErasureCertificate
) -> None:
    # given
    client.force_login(owner)
    # when
    page = client.get(
        reverse("admin:governance_datasubjectrequest_change", args=[certificate.request_id])
    )
    # then
    html = page.content.decode()
    assert reverse("admin:governance_erasurecertificate_change", args=[certificate.pk]) in html
    assert f"issued {certificate.issued_at:%Y-%m-%d %H:%M} UTC" in html


def test_a_certificate_changed_after_signing_shows_invalid(
    client: Client, owner: Any, certificate: ErasureCertificate
) -> None:
    # given
    _tamper(certificate)
    client.force_login(owner)
    # when
    listed = client.get(CHANGELIST).content.decode()
    # then
    assert "INVALID: bad signature" in listed
    assert "certificate-valid" not in listed


def test_an_auditor_of_the_workspace_reads_and_downloads_a_verifiable_certificate(
    client: Client, workspace: Any, certificate: ErasureCertificate, tmp_path: Path
) -> None:
    # given
    client.force_login(_auditor(workspace))
    # when
    response = client.get(
        reverse("admin:governance_erasurecertificate_download", args=[certificate.pk])
    )
    # then
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].startswith("attachment;")
    document = json.loads(response.content)
    assert document["body"] == certificate.body
    path = _write(tmp_path, "certificate.json", document)
    call_command("verify_certificate", path)  # raises if the download does not verify


def test_an_auditor_sees_the_request_id_but_no_link_to_the_queue_they_cannot_open(
    client: Client, workspace: Any, certificate: ErasureCertificate
) -> None:
    # given
    client.force_login(_auditor(workspace))
    request_page = reverse(
        "admin:governance_datasubjectrequest_change", args=[certificate.request_id]
    )
    # when
    listed = client.get(CHANGELIST).content.decode()
    page = client.get(
        reverse("admin:governance_erasurecertificate_change", args=[certificate.pk])
    ).content.decode()
    # then
    assert client.get(request_page).status_code == 403
    for html in (listed, page):
        assert str(certificate.request_id)[-12:] in html
        assert request_page not in html


def test_the_list_reads_the_signing_keys_once_for_the_page(
    client: Client, workspace: Any, owner: Any
) -> None:
    # given: three carried-out erasures
    for n in range(3):
        erasure.erasure_run(
            request=in_progress(workspace, request_type="erasure", contact=f"p{n}@example.com")
        )
    client.force_login(owner)
    # when
    with CaptureQueriesContext(connection) as queries:
        listed = client.get(CHANGELIST)
    # then
    assert listed.content.decode().count("certificate-valid") == 3
    key_reads = [q for q in queries.captured_queries if "consent_signingkey" in q["sql"]]
    assert len(key_reads) == 1


def test_outsiders_and_stewards_without_the_roles_see_no_certificate(
    client: Client, outsider: Any, member: Any, certificate: ErasureCertificate
) -> None:
    download = reverse("admin:governance_erasurecertificate_download", args=[certificate.pk])
    change = reverse("admin:governance_erasurecertificate_change", args=[certificate.pk])
    # an outsider (every role, in another workspace): an empty list, nothing to open
    client.force_login(outsider)
    assert list(client.get(CHANGELIST).context["cl"].result_list) == []
    assert client.get(change).status_code == 302  # the admin's "does not exist" redirect
    assert client.get(download).status_code == 404
    # a steward of the workspace who only views profiles: not even the list
    client.force_login(member)
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(download).status_code == 404


def test_the_admin_cannot_change_or_delete_a_certificate(
    client: Client, owner: Any, certificate: ErasureCertificate
) -> None:
    # given
    client.force_login(owner)
    delete = reverse("admin:governance_erasurecertificate_delete", args=[certificate.pk])
    # when
    response = client.post(delete, {"post": "yes"})
    # then
    assert response.status_code == 403
    assert ErasureCertificate.objects.filter(pk=certificate.pk).exists()


# --- API ---------------------------------------------------------------------------------------


def test_the_api_hands_out_the_signed_certificate(
    api_client: APIClient, certificate: ErasureCertificate, tmp_path: Path
) -> None:
    # when
    response = api_client.get(f"{URL}{certificate.request_id}/certificate")
    # then
    assert response.status_code == 200
    document = response.json()
    assert document["id"] == str(certificate.pk)
    assert document["alg"] == "EdDSA"
    assert document["kid"] == certificate.kid
    assert document["body"]["request"] == str(certificate.request_id)
    assert document["signature_valid"] is True
    keys = (
        Client()
        .get("/.well-known/cdp-receipt-keys.json", {"workspace": document["body"]["workspace"]})
        .json()
    )
    keys_path = _write(tmp_path, "keys.json", keys)
    call_command("verify_certificate", _write(tmp_path, "c.json", document), keys=keys_path)


def test_the_api_says_when_a_stored_certificate_no_longer_verifies(
    api_client: APIClient, certificate: ErasureCertificate
) -> None:
    # given
    _tamper(certificate)
    # when
    response = api_client.get(f"{URL}{certificate.request_id}/certificate")
    # then
    assert response.status_code == 200
    assert response.json()["signature_valid"] is False


def test_a_request_without_a_certificate_is_a_clear_404(
    workspace: Any, api_client: APIClient
) -> None:
    # given: an access request, and an erasure not carried out yet
    for dsr in (verified(workspace), in_progress(workspace, request_type="erasure")):
        # when
        response = api_client.get(f"{URL}{dsr.pk}/certificate")
        # then
        assert response.status_code == 404
        assert response.json()["code"] == "certificate_not_found"


@pytest.mark.parametrize("request_id", ["not-a-uuid", "01a00000-0000-7000-8000-000000000000"])
def test_an_unknown_request_is_404(workspace: Any, api_client: APIClient, request_id: str) -> None:
    response = api_client.get(f"{URL}{request_id}/certificate")
    assert response.status_code == 404
    assert response.json()["code"] == "request_not_found"


def test_the_certificate_api_needs_a_token_of_the_workspace_with_handle_requests(
    certificate: ErasureCertificate,
    api_client_readonly: APIClient,
    outsider_api_client: APIClient,
) -> None:
    url = f"{URL}{certificate.request_id}/certificate"
    anonymous = APIClient().get(url)
    readonly = api_client_readonly.get(url)
    outsider = outsider_api_client.get(url)
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "unauthenticated"
    assert readonly.status_code == 403
    assert readonly.json()["code"] == "forbidden"
    assert outsider.status_code == 404  # another workspace's request answers like none
    assert outsider.json()["code"] == "request_not_found"


# --- verify_certificate ------------------------------------------------------------------------


def test_verify_certificate_refuses_a_changed_body_a_changed_id_and_a_foreign_key(
    workspace: Any, other_workspace: Any, certificate: ErasureCertificate, tmp_path: Path
) -> None:
    # given
    document = selectors.certificate_document(certificate)
    changed = {**document, "body": {**document["body"], "suppressed_identifiers": {}}}
    renamed = {**document, "id": "01a00000-0000-7000-8000-000000000000"}
    # a key of another workspace, published under the certificate's kid
    consent_services.signing_key_current(workspace=other_workspace)
    keys = consent_selectors.receipt_public_keys()
    foreign = next(k for k in keys if k["workspace"] == other_workspace.slug)
    forged_keys = {"keys": [{**foreign, "kid": certificate.kid}]}
    # when / then
    with pytest.raises(CommandError, match="bad signature"):
        call_command("verify_certificate", _write(tmp_path, "a.json", changed))
    with pytest.raises(CommandError, match="certificate id does not match"):
        call_command("verify_certificate", _write(tmp_path, "b.json", renamed))
    own = {"keys": [{**k, "workspace": other_workspace.slug} for k in keys]}
    with pytest.raises(CommandError, match="belongs to another workspace"):
        call_command(
            "verify_certificate",
            _write(tmp_path, "c.json", document),
            keys=_write(tmp_path, "own.json", own),
        )
    with pytest.raises(CommandError, match="bad signature"):
        call_command(
            "verify_certificate",
            _write(tmp_path, "d.json", document),
            keys=_write(tmp_path, "forged.json", forged_keys),
        )


def test_a_certificate_signed_by_one_workspace_naming_another_does_not_verify(
    workspace: Any, other_workspace: Any, certificate: ErasureCertificate
) -> None:
    # given: a body naming globex, signed with acme's key
    body = {**certificate.body, "workspace": other_workspace.slug}
    signature, kid = consent_services.workspace_sign(workspace=workspace, body=body)
    document = {"id": body["certificate"], "alg": "EdDSA", "kid": kid, "signature": signature}
    document["body"] = body
    keys = consent_selectors.receipt_public_keys()
    stripped = [{k: v for k, v in key.items() if k != "workspace"} for key in keys]
    # when
    published = selectors.certificate_verify(document=document, keys=keys)
    anonymous = selectors.certificate_verify(document=document, keys=stripped)
    # then
    assert not published.valid and "another workspace" in published.reason
    assert not anonymous.valid and "names no workspace" in anonymous.reason


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "is not JSON"),
        ("[1, 2]", "does not hold a certificate object"),
        ('{"id": "x"}', "not a certificate"),
    ],
)
def test_verify_certificate_explains_a_bad_file(
    db: Any, tmp_path: Path, content: str, message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("verify_certificate", _write(tmp_path, "bad.json", content))


def test_verify_certificate_names_a_missing_file(db: Any, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="Cannot read the certificate file"):
        call_command("verify_certificate", str(tmp_path / "missing.json"))


def test_a_body_mangled_after_signing_is_shown_invalid_not_an_error(
    client: Client, owner: Any, certificate: ErasureCertificate
) -> None:
    # given: the stored body rewritten with the wrong shapes
    mangled = {**certificate.body, "stores": ["erased"], "destinations": "none", "regime": 7}
    mangled["suppressed_identifiers"] = ["email"]
    ErasureCertificate.objects.filter(pk=certificate.pk).update(body=mangled)
    client.force_login(owner)
    change = reverse("admin:governance_erasurecertificate_change", args=[certificate.pk])
    # when
    listed = client.get(CHANGELIST)
    page = client.get(change)
    # then
    assert listed.status_code == page.status_code == 200
    assert "INVALID: bad signature" in listed.content.decode()
    assert "complete: 0 stores" in page.content.decode()
