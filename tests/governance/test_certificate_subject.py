"""The person's own copy of their erasure certificate: on the privacy portal's status page (a
signed JSON download, for the browser that submitted the request only) and in the subject's
status API, once the erasure is done; a partial erasure says so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from cdp.core import registry
from cdp.core.registry import PersonalDataHandler
from consent import selectors as consent_selectors
from governance import selectors, services
from governance.models import DataSubjectRequest, ErasureCertificate


@pytest.fixture(autouse=True)
def _fresh_limits() -> Any:
    cache.clear()
    yield
    cache.clear()


ERASURE = {
    "type": "erasure",
    "regime": "gdpr",
    "contact_type": "email",
    "email": "ada@example.com",
    "phone": "",
    "details": "",
}


def _erased(owner: Any) -> DataSubjectRequest:
    dsr = DataSubjectRequest.objects.get()
    services.request_verify_manually(request=dsr, actor=owner, note="Checked.")
    services.request_approve(request=dsr, actor=owner)
    services.request_fulfil(request=dsr, actor=owner)
    assert ErasureCertificate.objects.filter(request=dsr).exists()
    return dsr


def test_the_portal_hands_the_person_their_signed_certificate(
    client: Client, workspace: Any, owner: Any, tmp_path: Path
) -> None:
    # given: an erasure submitted on the portal, not carried out yet
    client.post("/privacy/acme/", ERASURE)
    dsr = DataSubjectRequest.objects.get()
    status_url = f"/privacy/requests/{dsr.pk}/"
    certificate_url = f"/privacy/requests/{dsr.pk}/certificate/"
    assert "Proof of erasure" not in client.get(status_url).content.decode()
    assert client.get(certificate_url).status_code == 404
    # when: the privacy team carries it out
    _erased(owner)
    page = client.get(status_url).content.decode()
    download = client.get(certificate_url)
    stranger = Client().get(certificate_url)
    # then
    assert "Proof of erasure" in page
    assert "We erased your data on" in page
    assert f'href="{certificate_url}"' in page
    assert download.status_code == 200
    assert download["Content-Type"] == "application/json"
    assert "no-store" in download["Cache-Control"]
    document = json.loads(download.content)
    assert document["body"]["request"] == str(dsr.pk)
    path = tmp_path / "certificate.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    call_command("verify_certificate", str(path))  # raises if it does not verify
    assert stranger.status_code == 404


def test_a_partial_erasure_says_it_is_not_complete(
    client: Client, workspace: Any, owner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a store that fails to erase
    monkeypatch.setattr(registry, "_handlers", dict(registry._handlers))

    def broken(profile: Any) -> Any:
        raise RuntimeError("store unreachable")

    registry.register(
        PersonalDataHandler(
            name="tests.broken",
            models=(),
            export=lambda p: {},
            erase=broken,
            erase_unmatched=lambda workspace: broken(None),
            erase_order=150,
        )
    )
    client.post("/privacy/acme/", ERASURE)
    # when
    dsr = _erased(owner)
    page = client.get(f"/privacy/requests/{dsr.pk}/").content.decode()
    # then
    assert "not from all of them yet" in page
    assert "We erased your data on" not in page


def test_the_status_api_carries_the_certificate_once_issued(workspace: Any, owner: Any) -> None:
    # given
    api = APIClient()
    submitted = api.post(
        "/api/v1/requests/",
        {"workspace": "acme", "type": "erasure", "regime": "gdpr", "email": "ada@example.com"},
        format="json",
    ).json()
    headers: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {submitted['token']}"}
    url = f"/api/v1/requests/{submitted['id']}"
    before = api.get(url, **headers).json()
    # when
    _erased(owner)
    after = api.get(url, **headers).json()
    # then
    assert before["certificate"] is None
    document = after["certificate"]
    assert document["body"]["request"] == submitted["id"]
    keys = consent_selectors.receipt_public_keys()
    assert selectors.certificate_verify(document=document, keys=keys).valid
