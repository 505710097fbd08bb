"""Access and portability exports: data.json (valid against its published schema), schema.json
and index.html, zipped and sealed under a data key of their own; the subject's download through
an expiring token, each download counted and audited."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import zipfile
from datetime import timedelta
from typing import Any

import jsonschema
import pytest
from auditlog import get_logentry_model
from django.core import mail
from django.db import connection
from django.test import Client
from django.utils import timezone

from cdp.core import registry
from governance import export, fulfilment, tasks
from governance.fulfilment import FulfilmentNotApplicable
from governance.models import DataSubjectRequest, ExportArchive, RequestEvent
from profiles import services as profile_services
from profiles.models import DataKey
from tests.governance.request_helpers import SUBJECT_EMAIL_NORMALIZED, in_progress
from tests.profiles.ingest_helpers import msg

STREET = "Sentinelweg 12"


@pytest.fixture
def person(workspace: Any) -> Any:
    """A subject with an email identity, a PII trait, an attribute and an event property."""
    source = profile_services.source_create(workspace=workspace, name="Web")
    profile_services.ingest_messages(
        source=source,
        messages=[
            msg(
                "identify",
                user_id="subject-1",
                traits={
                    "email": SUBJECT_EMAIL_NORMALIZED,
                    "plan": "pro",
                    "nickname": "<script>alert('x')</script>",
                },
            ),
            msg(user_id="subject-1", name="Order Completed", properties={"address": STREET}),
        ],
    )


@pytest.fixture
def access(workspace: Any, person: Any) -> DataSubjectRequest:
    dsr: DataSubjectRequest = in_progress(workspace, request_type="access")
    assert dsr.profile is not None
    return dsr


def _zip(payload: bytes) -> dict[str, str]:
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        return {name: archive.read(name).decode() for name in archive.namelist()}


def _fulfilled(dsr: DataSubjectRequest, capture: Any) -> tuple[DataSubjectRequest, str]:
    """Fulfil through the service; the download path comes from the subject's email."""
    with capture(execute=True):
        done = fulfilment.fulfil(request=dsr)
    match = re.search(r"(/api/v1/requests/\S+/download\?token=\S+)", str(mail.outbox[-1].body))
    assert match is not None
    return done, match.group(1)


def test_export_build_zips_data_schema_and_html_sealed_under_a_key_of_its_own(
    access: DataSubjectRequest,
) -> None:
    # when
    archive = export.export_build(request=access)

    # then: the archive is sealed under a new request key owned by no profile
    key = DataKey.objects.get(pk=archive.data_key_id)
    assert (key.purpose, key.profile_id) == ("request", None)
    assert archive.data_key_id != access.data_key_id
    token = archive.download_token  # type: ignore[attr-defined]
    assert archive.download_token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert timedelta(days=6, hours=23) < archive.expires_at - timezone.now() <= timedelta(days=7)
    with connection.cursor() as cursor:
        cursor.execute("SELECT archive FROM governance_exportarchive")
        raw = bytes(cursor.fetchone()[0])
    assert raw[1:17] == archive.data_key_id.bytes  # the ciphertext names its key
    assert b"UEsDB" not in raw and b"PK\x03\x04" not in raw  # no zip (nor its base64) in clear
    # ...and it opens to the three files
    payload = export.export_open(archive=ExportArchive.objects.get(pk=archive.pk))
    assert (len(payload), hashlib.sha256(payload).hexdigest()) == (
        archive.size_bytes,
        archive.sha256,
    )
    files = _zip(payload)
    assert sorted(files) == ["data.json", "index.html", "schema.json"]
    data = json.loads(files["data.json"])
    schema = json.loads(files["schema.json"])
    jsonschema.validate(data, schema)
    # absolute, from CDP_PUBLIC_URL, so the file can be validated outside the CDP
    expected = "http://127.0.0.1:8000/api/v1/requests/export-schema.json"
    assert data["$schema"] == expected == schema["$id"]
    assert (data["data_found"], data["subject"]) == (True, {"profile": str(access.profile_id)})
    assert sorted(data["stores"]) == sorted(h.name for h in registry.handlers())
    assert data["request"]["type"] == "access"
    for needle in (SUBJECT_EMAIL_NORMALIZED, STREET, "subject-1"):
        assert needle in files["data.json"]
        assert needle in files["index.html"]


def test_the_html_rendering_escapes_every_value(access: DataSubjectRequest) -> None:
    # when
    archive = export.export_build(request=access)

    # then
    html = _zip(export.export_open(archive=archive))["index.html"]
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html


def test_an_export_without_a_profile_says_no_data_found(workspace: Any) -> None:
    # given: nobody with this contact was ever collected
    dsr = in_progress(workspace, request_type="portability")
    assert dsr.profile is None

    # when
    archive = export.export_build(request=dsr)

    # then
    files = _zip(export.export_open(archive=archive))
    data = json.loads(files["data.json"])
    jsonschema.validate(data, json.loads(files["schema.json"]))
    assert (data["data_found"], data["subject"], data["stores"]) == (False, {"profile": None}, {})
    assert "No data found" in files["index.html"]


def test_rebuilding_an_export_shreds_the_earlier_one(access: DataSubjectRequest) -> None:
    # given
    first = export.export_build(request=access)

    # when
    second = export.export_build(request=access)

    # then
    assert list(ExportArchive.objects.values_list("pk", flat=True)) == [second.pk]
    assert DataKey.objects.get(pk=first.data_key_id).wrapped is None


def test_fulfilling_an_access_request_builds_the_export_closes_it_and_mails_the_link(
    access: DataSubjectRequest, django_capture_on_commit_callbacks: Any
) -> None:
    # when
    done, path = _fulfilled(access, django_capture_on_commit_callbacks)

    # then
    assert done.state == "fulfilled"
    assert DataSubjectRequest.objects.get(pk=access.pk).closed_at is not None
    event = RequestEvent.objects.filter(request=access).last()
    assert event is not None
    assert (event.action, event.from_state, event.to_state) == (
        "fulfilled",
        "in_progress",
        "fulfilled",
    )
    assert event.note.startswith(f"Export {ExportArchive.objects.get().pk} built")
    assert mail.outbox[-1].to == [SUBJECT_EMAIL_NORMALIZED]
    assert path.startswith(f"/api/v1/requests/{access.pk}/download?token=")


def test_download_streams_the_zip_counts_and_audits_each_download(
    access: DataSubjectRequest, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    _done, path = _fulfilled(access, django_capture_on_commit_callbacks)
    entries = get_logentry_model().objects

    # when
    first = Client().get(path)
    second = Client().get(path)

    # then
    assert (first.status_code, second.status_code) == (200, 200)
    assert first["Content-Type"] == "application/zip"
    assert first["Content-Disposition"] == (f'attachment; filename="personal-data-{access.pk}.zip"')
    assert first["Cache-Control"] == "private, no-store"
    files = _zip(first.getvalue())
    assert SUBJECT_EMAIL_NORMALIZED in files["data.json"]
    archive = ExportArchive.objects.get()
    assert archive.downloads == 2
    accesses = entries.filter(action=entries.model.Action.ACCESS, object_pk=str(archive.pk))
    assert accesses.count() == 2
    assert accesses.first().additional_data == {
        "reason": "subject download",
        "fields": ["archive"],
        "via": "download",
    }


def test_download_refuses_a_wrong_token_another_request_and_an_unfulfilled_one(
    workspace: Any, access: DataSubjectRequest, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    _done, path = _fulfilled(access, django_capture_on_commit_callbacks)
    token = path.rsplit("=", 1)[1]
    other = in_progress(workspace, request_type="access", contact="other@example.com")
    pending = export.export_build(request=other)  # built, but the request is not fulfilled

    # when
    wrong = Client().get(f"/api/v1/requests/{access.pk}/download?token=not-the-token")
    missing = Client().get(f"/api/v1/requests/{access.pk}/download")
    elsewhere = Client().get(f"/api/v1/requests/{other.pk}/download?token={token}")
    unfulfilled = Client().get(
        f"/api/v1/requests/{other.pk}/download?token={pending.download_token}"  # type: ignore[attr-defined]
    )

    # then
    for response in (wrong, missing, elsewhere, unfulfilled):
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
    assert set(ExportArchive.objects.values_list("downloads", flat=True)) == {0}


@pytest.mark.parametrize("request_id", ["not-a-uuid", "0190a0a0-0000-7000-8000-00000000000g"])
def test_a_malformed_request_id_answers_the_json_404(
    access: DataSubjectRequest, django_capture_on_commit_callbacks: Any, request_id: str
) -> None:
    # given
    _fulfilled(access, django_capture_on_commit_callbacks)
    # when
    response = Client().get(f"/api/v1/requests/{request_id}/download?token=x")
    # then
    assert response.status_code == 404
    assert response.json() == {
        "code": "not_found",
        "message": "No such export, or the link is not valid.",
    }
    assert ExportArchive.objects.get().downloads == 0


@pytest.mark.parametrize("method", ["post", "put", "delete", "head"])
def test_the_download_and_the_schema_answer_another_method_with_a_json_405(
    access: DataSubjectRequest, django_capture_on_commit_callbacks: Any, method: str
) -> None:
    # given: a client without a CSRF token, as any API client
    _done, path = _fulfilled(access, django_capture_on_commit_callbacks)
    client = Client(enforce_csrf_checks=True)
    # when
    download = getattr(client, method)(path)
    schema = getattr(client, method)("/api/v1/requests/export-schema.json")
    # then
    for response in (download, schema):
        assert response.status_code == 405
        assert response["Allow"] == "GET"
        assert response["Content-Type"] == "application/json"
        if method != "head":
            assert response.json() == {
                "code": "method_not_allowed",
                "message": f'Method "{method.upper()}" not allowed.',
            }
    assert ExportArchive.objects.get().downloads == 0


def test_an_expired_link_answers_410(
    access: DataSubjectRequest, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    _done, path = _fulfilled(access, django_capture_on_commit_callbacks)
    ExportArchive.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    # when
    response = Client().get(path)

    # then
    assert response.status_code == 410
    assert response.json()["code"] == "export_expired"
    assert ExportArchive.objects.get().downloads == 0


def test_the_export_schema_is_published(access: DataSubjectRequest) -> None:
    # given
    archive = export.export_build(request=access)
    shipped = json.loads(_zip(export.export_open(archive=archive))["schema.json"])

    # when
    response = Client().get("/api/v1/requests/export-schema.json")

    # then
    assert response.status_code == 200
    assert response["Content-Type"] == "application/schema+json"
    published = response.json()
    assert published["$id"] == "http://testserver/api/v1/requests/export-schema.json"
    assert {k: v for k, v in published.items() if k != "$id"} == {
        k: v for k, v in shipped.items() if k != "$id"
    }


def test_the_export_task_rebuilds_on_commit(
    access: DataSubjectRequest, django_capture_on_commit_callbacks: Any
) -> None:
    # when
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        export.export_enqueue(request=access)
        assert ExportArchive.objects.count() == 0  # nothing before the commit

    # then
    assert len(callbacks) >= 1
    assert ExportArchive.objects.filter(request=access).count() == 1
    result = tasks.dsr_export(str(access.pk))
    assert result["export"] == str(ExportArchive.objects.get().pk)


def test_fulfilment_leaves_other_types_to_the_request_services(workspace: Any) -> None:
    # given
    dsr = in_progress(workspace, request_type="rectification", details={"traits": {"plan": "free"}})

    # when
    with pytest.raises(FulfilmentNotApplicable) as refused:
        fulfilment.fulfil(request=dsr)

    # then
    assert refused.value.code == "not_applicable"
    assert DataSubjectRequest.objects.get(pk=dsr.pk).state == "in_progress"
    assert ExportArchive.objects.count() == 0


def test_archive_column_holds_base64_of_the_zip_only_once_opened(
    access: DataSubjectRequest,
) -> None:
    # given
    archive = export.export_build(request=access)

    # when
    opened = ExportArchive.objects.get(pk=archive.pk).archive

    # then
    assert base64.b64decode(opened)[:4] == b"PK\x03\x04"
