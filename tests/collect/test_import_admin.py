"""The import upload page in the admin: stewards holding manage_data on a workspace upload a
file with its mapping, a worker runs it, the job's page shows progress and offers the masked
error file (each download audited). Other workspaces' stewards see nothing and can import
nothing into it."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from auditlog import get_logentry_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, RequestFactory
from django.urls import reverse

from collect.imports.upload import SealedUpload, SealingUploadHandler
from collect.models import ImportChunk, ImportJob
from profiles import services
from profiles.enums import DataKeyPurpose, SourceKind, WorkspaceRole
from profiles.models import DataKey, Profile
from tests.collect.import_helpers import destroyed
from tests.profiles.factories import UserFactory

ADD = reverse("admin:collect_importjob_add")
CHANGELIST = reverse("admin:collect_importjob_changelist")
LogEntry = get_logentry_model()
CSV = (
    b"customer_no,email,tier\n"
    b"C-1,ada@example.com,gold\n"
    b"C-2,not-an-email,silver\n"
    b"C-3,chloe@example.com,bronze\n"
)


@pytest.fixture
def source(workspace: Any) -> Any:
    return services.source_create(workspace=workspace, name="CRM", kind=SourceKind.IMPORT)


@pytest.fixture
def other_source(other_workspace: Any) -> Any:
    return services.source_create(workspace=other_workspace, name="CRM", kind=SourceKind.IMPORT)


def form_data(workspace: Any, source: Any, **overrides: Any) -> dict[str, Any]:
    return {
        "workspace": str(workspace.pk),
        "source": str(source.pk),
        "kind": "profiles",
        "file": SimpleUploadedFile("crm.csv", CSV, content_type="text/csv"),
        "file_format": "",
        "mapping": "email=identifier:email\ntier=trait:loyalty_tier",
        "id_column": "customer_no",
        "id_type": "crm_id",
        "delimiter": ",",
        **overrides,
    }


def change_url(job: ImportJob) -> str:
    return reverse("admin:collect_importjob_change", args=[job.pk])


def test_a_steward_uploads_a_file_and_the_job_page_shows_the_result(
    client: Client, workspace: Any, source: Any, other_source: Any, owner: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    # given
    client.force_login(owner)
    page = client.get(ADD)
    assert page.status_code == 200
    assert list(page.context["form"].fields["workspace"].queryset) == [workspace]
    assert list(page.context["form"].fields["source"].queryset) == [source]
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(ADD, form_data(workspace, source))
    # then
    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == change_url(job)
    assert (job.status, job.created_by, job.workspace, job.source) == (
        "done",
        owner,
        workspace,
        source,
    )
    assert (job.rows_total, job.rows_ok, job.rows_failed, job.rows_stored) == (3, 2, 1, 2)
    assert Profile.objects.filter(workspace=workspace).count() == 2
    assert ImportChunk.objects.count() == 0
    assert destroyed(job.upload_key)
    detail = client.get(change_url(job))
    assert detail.status_code == 200
    assert b"Download the error file (CSV)" in detail.content
    assert b'data-status="done"' in detail.content
    assert b"--map email=identifier:email" in detail.content
    progress = client.get(reverse("admin:collect_importjob_progress", args=[job.pk])).json()
    assert progress == {
        "status": "done",
        "progress": 1.0,
        "rows_total": 3,
        "rows_ok": 2,
        "rows_failed": 1,
        "rows_stored": 2,
        "rows_unchanged": 0,
        "failure_code": "",
    }
    listed = client.get(CHANGELIST)
    assert [obj.pk for obj in listed.context["cl"].result_list] == [job.pk]


def test_while_queued_the_page_polls_the_progress(
    client: Client, workspace: Any, source: Any, owner: Any,
    django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # given: no worker has taken the job yet; the upload arrived through the sealing handler
    read: list[bytes] = []
    original = SealedUpload.plain_chunks

    def spy(self: SealedUpload) -> Any:
        for part in original(self):
            read.append(part)
            yield part

    monkeypatch.setattr(SealedUpload, "plain_chunks", spy)
    client.force_login(owner)
    with django_capture_on_commit_callbacks(execute=False):
        client.post(ADD, form_data(workspace, source))
    job = ImportJob.objects.get()
    assert b"".join(read) == CSV
    # when
    detail = client.get(change_url(job))
    progress = client.get(reverse("admin:collect_importjob_progress", args=[job.pk])).json()
    # then
    assert b'data-status="queued"' in detail.content
    assert b"window.setTimeout(poll" in detail.content
    assert (progress["status"], progress["progress"], progress["rows_total"]) == ("queued", 0.0, 0)
    assert ImportChunk.objects.filter(job=job).count() == 1
    assert job.size_bytes == len(CSV)


def test_the_error_file_download_is_masked_and_audited(
    client: Client, workspace: Any, source: Any, owner: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    # given
    client.force_login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(ADD, form_data(workspace, source))
    job = ImportJob.objects.get()
    # when
    response = client.get(reverse("admin:collect_importjob_errors", args=[job.pk]))
    # then
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "no-store" in response["Cache-Control"]
    assert "private" in response["Cache-Control"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert rows == [
        {
            "row": "2",
            "line": "3",
            "column": "email",
            "code": "invalid_email",
            "message": "Column 'email' is not an email address.",
            "customer_no": "[masked]",
            "email": "[masked]",
            "tier": "silver",
        }
    ]
    access = LogEntry.objects.filter(action=LogEntry.Action.ACCESS, object_pk=str(job.pk))
    assert [(e.actor, e.additional_data["fields"]) for e in access] == [(owner, ["error_file"])]


def test_an_outsider_can_neither_see_a_job_nor_import_into_its_workspace(
    client: Client, workspace: Any, source: Any, owner: Any, outsider: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    # given: a job of acme
    client.force_login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(ADD, form_data(workspace, source))
    job = ImportJob.objects.get()
    keys = DataKey.objects.count()
    profiles = Profile.objects.count()
    client.force_login(outsider)
    # when
    listed = client.get(CHANGELIST)
    detail = client.get(change_url(job))
    progress = client.get(reverse("admin:collect_importjob_progress", args=[job.pk]))
    errors = client.get(reverse("admin:collect_importjob_errors", args=[job.pk]))
    with django_capture_on_commit_callbacks(execute=True):
        upload = client.post(ADD, form_data(workspace, source))
    # then
    assert [obj.pk for obj in listed.context["cl"].result_list] == []
    assert (detail.status_code, progress.status_code, errors.status_code) == (404, 404, 404)
    assert upload.status_code == 200
    assert "workspace" in upload.context["form"].errors
    assert "source" in upload.context["form"].errors
    assert ImportJob.objects.count() == 1
    assert (DataKey.objects.count(), Profile.objects.count()) == (keys, profiles)
    assert not LogEntry.objects.filter(action=LogEntry.Action.ACCESS, actor=outsider).exists()


@pytest.mark.parametrize("role", [WorkspaceRole.HANDLE_REQUESTS, WorkspaceRole.VIEW_PROFILES])
def test_a_staff_user_without_the_role_cannot_import(
    client: Client, workspace: Any, source: Any, role: str
) -> None:
    # given: a steward who handles requests, or only views profiles
    user = UserFactory(username="handler", is_staff=True)
    services.steward_grant_roles(workspace=workspace, user=user, roles=[role])
    client.force_login(user)
    # when
    page = client.get(ADD)
    upload = client.post(ADD, form_data(workspace, source))
    # then
    assert (page.status_code, upload.status_code) == (403, 403)
    assert ImportJob.objects.count() == 0


def test_a_bad_mapping_is_shown_on_the_form_and_nothing_is_stored(
    client: Client, workspace: Any, source: Any, owner: Any
) -> None:
    # given
    client.force_login(owner)
    intake_keys = DataKey.objects.filter(purpose=DataKeyPurpose.INTAKE).count()
    # when
    response = client.post(ADD, form_data(workspace, source, mapping="email", id_column=""))
    # then
    assert response.status_code == 200
    messages = response.context["form"].errors["mapping"]
    assert messages == [
        "--map 'email': write COLUMN=trait:NAME, COLUMN=identifier:TYPE or COLUMN=property:NAME "
        "(with an optional :TYPE)."
    ]
    assert ImportJob.objects.count() == 0
    assert DataKey.objects.filter(purpose=DataKeyPurpose.INTAKE).count() == intake_keys


def test_a_source_of_another_workspace_is_refused(
    client: Client, workspace: Any, other_source: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given: a superuser sees every workspace's sources
    admin_user = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(admin_user)
    # when
    response = client.post(ADD, form_data(workspace, other_source))
    # then
    assert response.context["form"].errors["source"] == ["Choose a source of the chosen workspace."]
    assert ImportJob.objects.count() == 0


def test_the_upload_handler_never_writes_the_file_in_plaintext() -> None:
    # given
    request = RequestFactory().post("/")
    handler = SealingUploadHandler(request)
    handler.new_file("file", "people.csv", "text/csv", 60)
    plain = [b"email\nsecret.person@example.com\n", b"other.person@example.com\n"]
    # when
    for index, part in enumerate(plain):
        handler.receive_data_chunk(part, index)
    upload = handler.file_complete(sum(len(p) for p in plain))
    # then
    on_disk = upload._sealed.read()
    assert b"@example.com" not in on_disk
    assert list(upload.plain_chunks()) == plain
    assert (upload.name, upload.size) == ("people.csv", 57)


def test_an_upload_past_the_size_limit_is_refused_and_nothing_kept(
    client: Client, workspace: Any, source: Any, owner: Any, settings: Any
) -> None:
    # given: a limit below the file's size
    settings.COLLECT_IMPORT_MAX_UPLOAD_BYTES = len(CSV) - 1
    client.force_login(owner)
    # when
    response = client.post(ADD, form_data(workspace, source))
    # then: the page says why, and neither a job nor any chunk of the file is stored
    assert response.status_code == 200
    errors = response.context["form"].errors["file"]
    assert errors == [
        f"The file is larger than {len(CSV) - 1}\xa0bytes, the most an upload takes here; "
        "import it with manage.py import_profiles or import_events."
    ]
    assert (ImportJob.objects.count(), ImportChunk.objects.count()) == (0, 0)
    # and a file within the limit still goes through
    settings.COLLECT_IMPORT_MAX_UPLOAD_BYTES = len(CSV)
    assert client.post(ADD, form_data(workspace, source)).status_code == 302


@pytest.mark.parametrize("typed", ["\t", "\\t", "tab"])
def test_a_tab_typed_as_the_delimiter_is_kept(
    client: Client, workspace: Any, source: Any, owner: Any,
    django_capture_on_commit_callbacks: Any, typed: str,
) -> None:  # fmt: skip
    # given: a tab-separated file
    tsv = CSV.replace(b",", b"\t")
    client.force_login(owner)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            ADD,
            form_data(workspace, source, delimiter=typed,
                      file=SimpleUploadedFile("crm.tsv", tsv, content_type="text/csv"),
                      file_format="csv"),
        )  # fmt: skip
    # then
    assert response.status_code == 302
    job = ImportJob.objects.get()
    assert (job.mapping["delimiter"], job.rows_ok, job.rows_failed) == ("\t", 2, 1)
