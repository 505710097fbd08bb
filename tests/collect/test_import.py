"""Bulk import (collect.imports, manage.py import_profiles / import_events): CSV and JSON Lines,
gzip, per-row errors in a masked, sealed error file while good rows are stored, idempotent
re-import (also after the dedup window), mapping errors, identity resolution of imported events
into existing profiles, and no plaintext personal data anywhere it goes."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from auditlog import get_logentry_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from cdp.core.crypto import envelope
from collect import tasks
from collect.enums import ImportStatus
from collect.imports import services as import_services
from collect.imports.mapping import ImportMappingError, mapping_parse
from collect.models import ImportChunk, ImportJob
from profiles import selectors, services
from profiles.enums import DataKeyPurpose, SourceKind
from profiles.models import DataKey, Event, Identity, Merge, Profile, SeenMessage, Trait
from tests.collect.import_helpers import destroyed, run_import, write_csv, write_jsonl
from tests.profiles.factories import WorkspaceFactory
from tests.test_no_plaintext_pii import SENTINELS, scan_all_tables

LogEntry = get_logentry_model()

CRM_HEADER = "customer_no,email,phone,first_name,age,tier,signup"
CRM_ROWS = [
    "C-001,ada.abbott@example.com,+44 20 7946 0001,Ada,34,gold,2024-01-05",
    "C-002,ben.berg@example.com,+44 20 7946 0002,Ben,41,silver,2024-02-11",
    "C-003,chloe.costa@example.com,,Chloe,,bronze,",
    "C-004,not-an-email,+44 20 7946 0004,Dev,29,gold,2024-03-01",
    "C-005,elena.evans@example.com,12,Elena,52,silver,2024-03-02",
    "C-006,femi.fischer@example.com,+44 20 7946 0006,Femi,thirty,gold,2024-03-03",
    ",grace.garcia@example.com,+44 20 7946 0007,Grace,27,gold,2024-03-04",
]
CRM_MAP: dict[str, Any] = {
    "maps": [
        "email=identifier:email",
        "phone=identifier:phone",
        "first_name=trait:first_name",
        "age=trait:age:integer",
        "tier=trait:loyalty_tier",
        "signup=trait:signup_date:date",
    ],
    "id_column": "customer_no",
    "id_type": "crm_id",
}


@pytest.fixture
def source(workspace: Any) -> Any:
    return services.source_create(workspace=workspace, name="CRM", kind=SourceKind.IMPORT)


@pytest.fixture
def crm_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "crm.csv", [CRM_HEADER, *CRM_ROWS])


def error_rows(job: ImportJob) -> list[dict[str, str]]:
    data = import_services.import_errors_read(job=job, actor=None)
    return list(csv.DictReader(io.StringIO(data.decode())))


def traits_of(workspace: Any, crm_id: str) -> dict[str, Any]:
    profile = selectors.profile_find_by_identifier(
        workspace=workspace, identifier_type="crm_id", value=crm_id
    )
    assert profile is not None
    views = selectors.profile_traits(workspace=workspace, profile=profile, reveal=True)
    return {view.key: view.value for view in views}


def snapshot(workspace: Any) -> dict[str, Any]:
    """Everything an import may change in the stores of `workspace`."""
    return {
        "profiles": sorted(
            Profile.objects.filter(workspace=workspace).values_list(
                "id", "status", "attributes", "last_seen_at", "updated_at"
            )
        ),
        "identities": sorted(
            Identity.objects.filter(workspace=workspace).values_list(
                "id", "profile_id", "last_seen_at"
            )
        ),
        "traits": sorted(
            Trait.objects.filter(workspace=workspace).values_list(
                "id", "profile_id", "observed_at", "message_id", "value_attribute"
            )
        ),
        "events": sorted(Event.objects.filter(workspace=workspace).values_list("id", "message_id")),
        "merges": Merge.objects.filter(workspace=workspace).count(),
        "profile_keys": DataKey.objects.filter(
            workspace=workspace, purpose=DataKeyPurpose.PROFILE
        ).count(),
    }


# --- CSV and JSON Lines, good and bad rows ---------------------------------------------------


def test_a_csv_import_stores_the_good_rows_and_lists_the_bad_ones(
    workspace: Any, source: Any, crm_csv: Path
) -> None:
    # when: batches of two, so that several batches and a last partial one are stored
    job = run_import(workspace=workspace, source=source, path=crm_csv, batch_size=2, **CRM_MAP)

    # then: the new profiles' data keys were not kept in memory (only the error file's is)
    assert job.error_key_id is not None
    assert {k for k in envelope._cache if isinstance(k, int)} == {job.error_key_id.int}
    # the counts
    assert job.status == ImportStatus.DONE
    assert (job.rows_total, job.rows_ok, job.rows_failed) == (7, 3, 4)
    assert (job.rows_stored, job.rows_unchanged, job.profiles_created) == (3, 0, 3)
    assert job.error_counts == {
        "invalid_email": 1,
        "invalid_phone": 1,
        "invalid_type": 1,
        "missing_id": 1,
    }
    assert job.progress == 1.0
    assert job.bytes_read == crm_csv.stat().st_size
    # the good rows, resolved and stored as the collection API would
    assert Profile.objects.filter(workspace=workspace).count() == 3
    assert traits_of(workspace, "C-001") == {
        "age": 34,
        "email": "ada.abbott@example.com",
        "first_name": "Ada",
        "loyalty_tier": "gold",
        "phone": "+442079460001",
        "signup_date": "2024-01-05",
    }
    assert traits_of(workspace, "C-003") == {
        "email": "chloe.costa@example.com",
        "first_name": "Chloe",
        "loyalty_tier": "bronze",
    }
    counts = dict(
        Identity.objects.filter(workspace=workspace)
        .values_list("identifier_type")
        .annotate(n=Count("id"))
    )
    assert counts == {"crm_id": 3, "email": 3, "phone": 2}
    ada = selectors.profile_find_by_identifier(
        workspace=workspace, identifier_type="email", value="Ada.Abbott@example.com"
    )
    assert ada == selectors.profile_find_by_identifier(
        workspace=workspace, identifier_type="crm_id", value="C-001"
    )
    assert ada is not None and ada.attributes == {"loyalty_tier": "gold"}
    # the error file: one line per error, the row masked but for plain attributes
    rows = error_rows(job)
    assert [(r["row"], r["line"], r["column"], r["code"]) for r in rows] == [
        ("4", "5", "email", "invalid_email"),
        ("5", "6", "phone", "invalid_phone"),
        ("6", "7", "age", "invalid_type"),
        ("7", "8", "customer_no", "missing_id"),
    ]
    assert rows[0]["message"] == "Column 'email' is not an email address."
    assert rows[2]["message"] == "Column 'age' must be an integer."
    assert rows[0] | {"row": "", "line": "", "column": "", "code": "", "message": ""} == {
        "row": "",
        "line": "",
        "column": "",
        "code": "",
        "message": "",
        "customer_no": "[masked]",
        "email": "[masked]",
        "phone": "[masked]",
        "first_name": "[masked]",
        "age": "[masked]",
        "tier": "gold",
        "signup": "[masked]",
    }
    assert rows[3]["customer_no"] == ""


def test_a_jsonl_import_keeps_json_types_reads_nested_keys_and_reports_bad_lines(
    workspace: Any, source: Any, tmp_path: Path
) -> None:
    # given
    path = write_jsonl(
        tmp_path / "members.ndjson",
        [
            {"id": "J-1", "contact": {"email": "j1@example.com"}, "score": 7, "vip": True},
            {"id": "J-2", "contact": {"email": "j2@example.com"}, "score": "7.5", "vip": "yes"},
            "not json",
            "[1, 2]",
            "",
            {"id": "J-3", "contact": {}, "score": 3, "vip": "maybe"},
            {"id": 4, "score": 4.0},
        ],
    )
    # when
    job = run_import(
        workspace=workspace,
        source=source,
        path=path,
        maps=[
            "contact.email=identifier:email",
            "score=trait:score:integer",
            "vip=trait:vip:boolean",
        ],
        id_column="id",
        id_type="crm_id",
    )
    # then
    assert job.file_format == "jsonl"
    assert (job.rows_total, job.rows_ok, job.rows_failed) == (6, 2, 4)
    assert job.error_counts == {"invalid_json": 1, "invalid_row": 1, "invalid_type": 2}
    assert traits_of(workspace, "J-1") == {"email": "j1@example.com", "score": 7, "vip": True}
    assert traits_of(workspace, "4") == {"score": 4}
    rows = error_rows(job)
    assert [(r["row"], r["line"], r["column"], r["code"]) for r in rows] == [
        ("2", "2", "score", "invalid_type"),
        ("3", "3", "", "invalid_json"),
        ("4", "4", "", "invalid_row"),
        ("5", "6", "vip", "invalid_type"),
    ]
    assert orjson.loads(rows[0]["row_masked"]) == {
        "id": "[masked]",
        "contact": "[masked]",
        "score": "[masked]",
        "vip": "[masked]",
    }


def test_a_gzipped_file_is_read_and_recorded_as_compressed(
    workspace: Any, source: Any, tmp_path: Path
) -> None:
    # given
    path = write_csv(tmp_path / "crm.csv.gz", [CRM_HEADER, *CRM_ROWS], compress=True)
    # when
    job = run_import(workspace=workspace, source=source, path=path, **CRM_MAP)
    # then
    assert job.compressed is True
    assert job.file_format == "csv"
    assert (job.rows_ok, job.rows_failed, job.rows_stored) == (3, 4, 3)
    assert traits_of(workspace, "C-002")["first_name"] == "Ben"


def test_a_damaged_gzip_file_fails_with_a_clear_reason(
    workspace: Any, source: Any, tmp_path: Path
) -> None:
    # given: the compressed stream cut short
    whole = gzip.compress(("\n".join([CRM_HEADER, *CRM_ROWS]) + "\n").encode())
    path = tmp_path / "crm.csv.gz"
    path.write_bytes(whole[: len(whole) // 2])
    # when
    job = run_import(workspace=workspace, source=source, path=path, **CRM_MAP)
    # then
    assert job.status == ImportStatus.FAILED
    assert job.failure_code == "invalid_gzip"
    assert "damaged or truncated" in job.failure_message


def test_a_file_that_is_not_utf8_fails_but_keeps_the_rows_read_before(
    workspace: Any, source: Any, tmp_path: Path
) -> None:
    # given: 400 good rows (more than one decoding buffer), then a Latin-1 byte
    filler = "x" * 50  # an unmapped column, so that 400 rows fill several buffers
    lines = [b"customer_no,tier,note"] + [f"K-{n:04d},gold,{filler}".encode() for n in range(400)]
    lines.append(b"K-9999,gr\xfcn,")
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    # when
    job = run_import(
        workspace=workspace,
        source=source,
        path=path,
        maps=["tier=trait:loyalty_tier"],
        id_column="customer_no",
        id_type="crm_id",
        batch_size=50,
    )
    # then
    assert job.status == ImportStatus.FAILED
    assert job.failure_code == "invalid_encoding"
    assert 0 < job.rows_stored < 400
    assert Event.objects.filter(workspace=workspace).count() == job.rows_stored


# --- idempotent re-import ----------------------------------------------------------------------


def test_importing_the_same_file_again_changes_nothing_even_after_the_dedup_window(
    workspace: Any, source: Any, crm_csv: Path
) -> None:
    # given
    first = run_import(workspace=workspace, source=source, path=crm_csv, **CRM_MAP)
    before = snapshot(workspace)
    seen = SeenMessage.objects.filter(workspace=workspace).count()
    # when: the same file again
    second = run_import(workspace=workspace, source=source, path=crm_csv, **CRM_MAP)
    # then
    assert (first.rows_stored, first.profiles_created) == (3, 3)
    assert (second.rows_ok, second.rows_stored, second.rows_unchanged) == (3, 0, 3)
    assert (second.profiles_created, second.merges, second.rows_failed) == (0, 0, 4)
    assert snapshot(workspace) == before
    assert SeenMessage.objects.filter(workspace=workspace).count() == seen == 3

    # when: the dedup window has passed (its rows are gone) and the file comes once more
    SeenMessage.objects.filter(workspace=workspace).delete()
    third = run_import(workspace=workspace, source=source, path=crm_csv, **CRM_MAP)
    # then: still nothing new
    assert (third.rows_stored, third.rows_unchanged, third.profiles_created) == (0, 3, 0)
    assert snapshot(workspace) == before
    assert SeenMessage.objects.filter(workspace=workspace).count() == 0


def test_a_changed_row_is_imported_again_and_only_it(
    workspace: Any, source: Any, tmp_path: Path, crm_csv: Path
) -> None:
    # given
    run_import(workspace=workspace, source=source, path=crm_csv, **CRM_MAP)
    events = Event.objects.filter(workspace=workspace).count()
    changed = [CRM_ROWS[0].replace(",gold,", ",platinum,"), *CRM_ROWS[1:]]
    path = write_csv(tmp_path / "crm-2.csv", [CRM_HEADER, *changed])
    # when
    job = run_import(workspace=workspace, source=source, path=path, **CRM_MAP)
    # then
    assert (job.rows_stored, job.rows_unchanged, job.profiles_created) == (1, 2, 0)
    assert Event.objects.filter(workspace=workspace).count() == events + 1
    assert traits_of(workspace, "C-001")["loyalty_tier"] == "platinum"


def test_identical_rows_in_one_file_are_stored_once(
    workspace: Any, source: Any, tmp_path: Path
) -> None:
    # given
    path = write_csv(tmp_path / "dup.csv", ["customer_no,tier", "D-1,gold", "D-1,gold"])
    # when
    job = run_import(
        workspace=workspace,
        source=source,
        path=path,
        maps=["tier=trait:loyalty_tier"],
        id_column="customer_no",
        id_type="crm_id",
    )
    # then
    assert (job.rows_ok, job.rows_stored, job.rows_unchanged) == (2, 1, 1)
    assert Event.objects.filter(workspace=workspace).count() == 1


def test_message_ids_are_keyed_hashes_that_differ_between_workspaces(
    workspace: Any, source: Any, tmp_path: Path
) -> None:
    # given
    other: Any = WorkspaceFactory(slug="initech")
    other_source = services.source_create(workspace=other, name="CRM", kind=SourceKind.IMPORT)
    path = write_csv(tmp_path / "one.csv", ["customer_no,email", "M-1,m1@example.com"])
    options: dict[str, Any] = {
        "maps": ["email=identifier:email"],
        "id_column": "customer_no",
        "id_type": "crm_id",
    }
    # when
    run_import(workspace=workspace, source=source, path=path, **options)
    run_import(workspace=other, source=other_source, path=path, **options)
    # then
    ours = Event.objects.get(workspace=workspace).message_id
    theirs = Event.objects.get(workspace=other).message_id
    assert ours.startswith("imp-") and len(ours) == 44
    assert ours != theirs
    for text in ("M-1", "m1@example.com"):
        assert hashlib.sha256(text.encode()).hexdigest()[:40] not in ours


# --- events ----------------------------------------------------------------------------------


def test_imported_events_resolve_into_existing_profiles_and_merge_them(
    workspace: Any, source: Any, tmp_path: Path
) -> None:
    # given: two CRM profiles
    people = write_csv(
        tmp_path / "people.csv",
        ["customer_no,email", "C-1,ada@example.com", "C-2,ben@example.com"],
    )
    run_import(
        workspace=workspace,
        source=source,
        path=people,
        maps=["email=identifier:email"],
        id_column="customer_no",
        id_type="crm_id",
    )
    ada = selectors.profile_find_by_identifier(
        workspace=workspace, identifier_type="crm_id", value="C-1"
    )
    ben = selectors.profile_find_by_identifier(
        workspace=workspace, identifier_type="crm_id", value="C-2"
    )
    assert ada is not None and ben is not None and ada != ben
    pos = services.source_create(workspace=workspace, name="POS", kind=SourceKind.IMPORT)
    orders = write_csv(
        tmp_path / "orders.csv",
        [
            "order_id,customer,email,sku,amount,at",
            "O-1,C-1,,sku-101,38.00,2024-05-01T10:00:00Z",
            "O-2,,ADA@example.com,sku-102,24,2024-05-02T10:00:00Z",
            "O-3,C-2,ada@example.com,sku-201,59.5,2024-05-03T10:00:00+02:00",
            "O-4,C-1,,sku-301,12,",
        ],
    )
    # when
    job = run_import(
        workspace=workspace,
        source=pos,
        path=orders,
        kind="events",
        maps=[
            "customer=identifier:crm_id",
            "email=identifier:email",
            "sku=property:sku",
            "amount=property:amount:number",
        ],
        event_name="Order Completed",
        timestamp_column="at",
        message_id_column="order_id",
    )
    # then: O-3 carries Ben's id and Ada's email, so Ben's profile merges into Ada's
    assert (job.rows_ok, job.rows_failed, job.rows_stored) == (3, 1, 3)
    assert (job.profiles_created, job.merges) == (0, 1)
    assert job.error_counts == {"missing_timestamp": 1}
    ben.refresh_from_db()
    assert (ben.status, ben.merged_into_id) == ("merged", ada.pk)
    events = Event.objects.filter(workspace=workspace, name="Order Completed").order_by("timestamp")
    assert [(e.profile_id, e.type, e.properties) for e in events] == [
        (ada.pk, "track", {"sku": "sku-101", "amount": 38.0}),
        (ada.pk, "track", {"sku": "sku-102", "amount": 24}),
        (ada.pk, "track", {"sku": "sku-201", "amount": 59.5}),
    ]
    assert [e.timestamp for e in events] == [
        datetime(2024, 5, 1, 10, tzinfo=UTC),
        datetime(2024, 5, 2, 10, tzinfo=UTC),
        datetime(2024, 5, 3, 8, tzinfo=UTC),
    ]
    assert all("externalIds" not in e.context for e in events)
    assert events[0].context["import"] == {"job": str(job.pk)}
    # when: the same orders again (message ids from the order column)
    again = run_import(
        workspace=workspace,
        source=pos,
        path=orders,
        kind="events",
        maps=[
            "customer=identifier:crm_id",
            "email=identifier:email",
            "sku=property:sku",
            "amount=property:amount:number",
        ],
        event_name="Order Completed",
        timestamp_column="at",
        message_id_column="order_id",
    )
    # then
    assert (again.rows_stored, again.rows_unchanged, again.merges) == (0, 3, 0)
    assert Event.objects.filter(workspace=workspace, name="Order Completed").count() == 3


def test_events_need_a_name_and_a_valid_timestamp_per_row(
    workspace: Any, source: Any, tmp_path: Path
) -> None:
    # given
    path = write_csv(
        tmp_path / "visits.csv",
        [
            "visitor,what,at",
            "V-1,Store Visit,2024-06-01",
            "V-2,,2024-06-01",
            "V-3,Store Visit,yesterday",
        ],
    )
    # when
    job = run_import(
        workspace=workspace,
        source=source,
        path=path,
        kind="events",
        maps=["visitor=identifier:loyalty_id"],
        event_column="what",
        timestamp_column="at",
    )
    # then
    assert (job.rows_ok, job.rows_failed) == (1, 2)
    assert job.error_counts == {"invalid_timestamp": 1, "missing_event": 1}
    event = Event.objects.get(workspace=workspace)
    assert (event.name, event.timestamp) == ("Store Visit", datetime(2024, 6, 1, tzinfo=UTC))
    assert [r["what"] for r in error_rows(job)] == ["", "Store Visit"]


# --- rules, suppression -----------------------------------------------------------------------


def test_placeholder_ids_blocked_by_the_identity_rules_are_errors(
    workspace: Any, source: Any, tmp_path: Path
) -> None:
    # given
    path = write_csv(tmp_path / "ph.csv", ["customer_no,tier", "n/a,gold", "0000,gold", "P-1,gold"])
    # when
    job = run_import(
        workspace=workspace,
        source=source,
        path=path,
        maps=["tier=trait:loyalty_tier"],
        id_column="customer_no",
        id_type="crm_id",
    )
    # then
    assert (job.rows_ok, job.rows_failed) == (1, 2)
    assert job.error_counts == {"invalid_identifier": 2}


def test_rows_of_an_erased_person_are_dropped(workspace: Any, source: Any, crm_csv: Path) -> None:
    # given
    services.suppression_add(
        workspace=workspace, identifiers=[("email", "ben.berg@example.com")], reason="erasure"
    )
    # when
    job = run_import(workspace=workspace, source=source, path=crm_csv, **CRM_MAP)
    # then
    assert (job.rows_ok, job.rows_stored, job.rows_dropped) == (3, 2, 1)
    assert (
        selectors.profile_find_by_identifier(
            workspace=workspace, identifier_type="crm_id", value="C-002"
        )
        is None
    )


def test_phone_numbers_without_country_code_use_the_phone_region(
    workspace: Any, source: Any, tmp_path: Path
) -> None:
    # given
    path = write_csv(tmp_path / "uk.csv", ["customer_no,phone", "U-1,020 7946 0123"])
    # when
    job = run_import(
        workspace=workspace,
        source=source,
        path=path,
        maps=["phone=identifier:phone"],
        id_column="customer_no",
        id_type="crm_id",
        phone_region="GB",
    )
    # then
    assert job.rows_stored == 1
    assert traits_of(workspace, "U-1") == {"phone": "+442079460123"}


# --- mapping errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "options", "code", "fragment"),
    [
        ("profiles", {"maps": ["email"]}, "invalid_mapping", "write COLUMN=trait:NAME"),
        ("profiles", {"maps": ["email=mail:x"]}, "invalid_mapping", "unknown target 'mail'"),
        ("profiles", {"maps": ["age=trait:age:int"]}, "invalid_type_name", "unknown type 'int'"),
        ("profiles", {"maps": ["sku=property:sku"]}, "invalid_mapping", "maps traits"),
        ("events", {"maps": ["x=trait:x"], "event_name": "E", "timestamp_column": "t"},
         "invalid_mapping", "maps event properties"),
        ("profiles", {"maps": ["tier=trait:loyalty_tier"]}, "missing_identifier",
         "Map at least one identifier"),
        ("profiles", {"maps": [], "id_column": "no"}, "invalid_id_column", "go together"),
        ("profiles", {"maps": ["e=identifier:email", "e=trait:x"]}, "duplicate_mapping",
         "mapped more than once"),
        ("profiles", {"maps": ["a=identifier:email", "b=trait:email"]}, "duplicate_target",
         "both map to the trait 'email'"),
        ("events", {"maps": ["e=identifier:email"], "timestamp_column": "t"}, "missing_event",
         "--event-column"),
        ("events", {"maps": ["e=identifier:email"], "event_name": "E"}, "missing_timestamp",
         "--timestamp-column"),
        ("profiles", {"maps": ["e=identifier:email"], "phone_region": "ZZ"},
         "invalid_phone_region", "two-letter"),
        ("profiles", {"maps": ["e=identifier:!!"]}, "invalid_identifier_type", "identifier type"),
    ],
)  # fmt: skip
def test_mapping_errors_say_what_to_change(
    kind: str, options: dict[str, Any], code: str, fragment: str
) -> None:
    # when
    with pytest.raises(ImportMappingError) as caught:
        mapping_parse(kind=kind, **options)
    # then
    assert caught.value.code == code
    assert fragment in caught.value.message


def test_a_mapped_column_missing_from_the_header_fails_the_job_before_any_row(
    workspace: Any, source: Any, crm_csv: Path
) -> None:
    # when
    job = run_import(
        workspace=workspace,
        source=source,
        path=crm_csv,
        maps=["emial=identifier:email"],
        id_column="customer_no",
        id_type="crm_id",
    )
    # then
    assert job.status == ImportStatus.FAILED
    assert job.failure_code == "unknown_column"
    assert job.failure_message == (
        "Column(s) 'emial' are not in the file's header (7 columns). Check their spelling and "
        "case against the file's first row."
    )
    assert (job.rows_total, Event.objects.count()) == (0, 0)


def test_a_header_of_one_column_suggests_checking_the_delimiter(
    workspace: Any, source: Any, tmp_path: Path
) -> None:
    # given: a file separated by semicolons, mapped as if by commas
    path = write_csv(tmp_path / "crm.csv", [CRM_HEADER.replace(",", ";"), CRM_ROWS[0]])
    # when
    job = run_import(
        workspace=workspace, source=source, path=path, maps=["email=identifier:email"],
        id_column="customer_no", id_type="crm_id",
    )  # fmt: skip
    # then
    assert job.failure_code == "unknown_column"
    assert job.failure_message == (
        "Column(s) 'customer_no', 'email' are not in the file's header (1 column). None of the "
        "mapped columns is there: does the file start with a header row naming its columns? A "
        "CSV import needs one. Is the delimiter right (--delimiter, now ',')?"
    )


def test_a_file_without_a_header_row_leaves_its_first_row_nowhere(
    workspace: Any, source: Any, tmp_path: Path
) -> None:
    """Read as a header, a headerless file's first row is a person's data: the job's failure
    message, which the audit trail keeps for good, must not quote it."""
    # given: a CRM export saved without its header row
    first_row = (
        f"{SENTINELS['user_id']},{SENTINELS['email']},{SENTINELS['phone']},"
        f"{SENTINELS['first_name']}"
    )
    path = write_csv(tmp_path / "people.csv", [first_row, "C-002,ben.berg@example.com,,Ben"])
    # when
    job = run_import(
        workspace=workspace, source=source, path=path,
        maps=["email=identifier:email", "phone=identifier:phone", "first_name=trait:first_name"],
        id_column="customer_no", id_type="crm_id",
    )  # fmt: skip
    # then: the job failed before any row...
    assert (job.status, job.failure_code, job.rows_total) == (
        ImportStatus.FAILED,
        "unknown_column",
        0,
    )
    # ...and no table holds the first row's values, the audit trail's entries of the job
    # (which record its outcome) included...
    assert scan_all_tables() == []
    entries = LogEntry.objects.filter(content_type__model="importjob", object_pk=str(job.pk))
    outcome = entries.order_by("pk").last()
    assert outcome is not None
    assert outcome.changes["failure_message"][1] == job.failure_message
    for entry in entries:
        recorded = f"{entry.changes!r} {entry.changes_text} {entry.object_repr}".lower()
        assert all(value.lower() not in recorded for value in SENTINELS.values())
    # ...while the message still says what is likely wrong
    assert job.failure_message == (
        "Column(s) 'customer_no', 'email', 'phone', 'first_name' are not in the file's header "
        "(4 columns). None of the mapped columns is there: does the file start with a header "
        "row naming its columns? A CSV import needs one."
    )


# --- the commands -----------------------------------------------------------------------------


def test_import_profiles_command_creates_its_source_and_writes_the_error_file(
    workspace: Any, crm_csv: Path, tmp_path: Path
) -> None:
    # given
    out, err = io.StringIO(), io.StringIO()
    errors = tmp_path / "errors.csv"
    # when
    call_command(
        "import_profiles",
        str(crm_csv),
        "--workspace=acme",
        "--source=Legacy CRM",
        "--id-column=customer_no",
        "--id-type=crm_id",
        *(f"--map={spec}" for spec in CRM_MAP["maps"]),
        f"--errors={errors}",
        stdout=out,
        stderr=err,
    )
    # then
    created = selectors.source_list(workspace=workspace).get(name="Legacy CRM")
    assert created.kind == SourceKind.IMPORT
    job = ImportJob.objects.get()
    assert (job.source, job.created_by, job.rows_stored) == (created, None, 3)
    text = out.getvalue()
    assert "Created source 'Legacy CRM' (kind import)." in text
    assert "rows: 7 read, 3 valid (3 stored, 0 already there, 0 of erased people), 4 failed" in text
    assert "errors by code: invalid_email 1, invalid_phone 1, invalid_type 1, missing_id 1" in text
    assert "import profiles" in err.getvalue()  # the progress bar
    assert errors.read_bytes() == import_services.import_errors_read(job=job, actor=None)


def test_import_events_command_reports_mapping_errors_without_importing(
    workspace: Any, tmp_path: Path
) -> None:
    # given
    path = write_csv(tmp_path / "orders.csv", ["order_id,at", "O-1,2024-01-01"])
    # when
    with pytest.raises(CommandError) as caught:
        call_command(
            "import_events",
            str(path),
            "--workspace=acme",
            "--source=POS",
            "--map=order_id=identifier:pos_order",
            "--no-progress",
        )
    # then
    assert "needs the event name" in str(caught.value)
    assert "[missing_event]" in str(caught.value)
    assert ImportJob.objects.count() == 0
    assert not selectors.source_list(workspace=workspace).filter(name="POS").exists()


def test_the_command_needs_a_format_it_can_tell(workspace: Any, tmp_path: Path) -> None:
    # given
    path = write_csv(tmp_path / "export.dat", ["id", "1"])
    # when
    with pytest.raises(CommandError) as caught:
        call_command(
            "import_profiles", str(path), "--workspace=acme", "--source=CRM",
            "--id-column=id", "--id-type=crm_id", "--no-progress",
        )  # fmt: skip
    # then
    assert "Cannot tell the format from the file name" in str(caught.value)
    # when: told
    out = io.StringIO()
    call_command(
        "import_profiles", str(path), "--workspace=acme", "--source=CRM", "--format=csv",
        "--id-column=id", "--id-type=crm_id", "--no-progress", stdout=out,
    )  # fmt: skip
    # then
    assert "Import done." in out.getvalue()
    assert ImportJob.objects.get().file_format == "csv"


def test_the_command_refuses_an_unknown_workspace(crm_csv: Path, db: Any) -> None:
    with pytest.raises(CommandError, match="workspace"):
        call_command(
            "import_profiles", str(crm_csv), "--workspace=nope", "--source=CRM",
            "--id-column=customer_no", "--id-type=crm_id",
        )  # fmt: skip


# --- keys and files ----------------------------------------------------------------------------


def test_keys_of_pending_uploads_and_live_error_files_survive_the_hourly_shred(
    workspace: Any, source: Any, crm_csv: Path, django_capture_on_commit_callbacks: Any
) -> None:
    # given: a queued upload and a finished job with an error file, both keys two hours old
    mapping = mapping_parse(kind="profiles", **CRM_MAP)
    with django_capture_on_commit_callbacks(execute=False):
        queued = import_services.import_job_create(
            workspace=workspace,
            source=source,
            mapping=mapping,
            file_name="crm.csv",
            upload=[crm_csv.read_bytes()],
        )
    finished = run_import(workspace=workspace, source=source, path=crm_csv, **CRM_MAP)
    DataKey.objects.filter(pk__in=[queued.upload_key_id, finished.error_key_id]).update(
        created_at=timezone.now() - timedelta(hours=2)
    )
    # when
    tasks.intake_keys_shred()
    # then
    assert (
        DataKey.objects.filter(
            pk__in=[queued.upload_key_id, finished.error_key_id], destroyed_at__isnull=True
        ).count()
        == 2
    )
    assert ImportChunk.objects.filter(job=queued).count() == 1

    # when: the error file has expired
    ImportJob.objects.filter(pk=finished.pk).update(errors_expire_at=timezone.now())
    tasks.intake_keys_shred()
    # then
    finished.refresh_from_db()
    assert finished.error_file is None
    assert destroyed(finished.error_key)
    with pytest.raises(import_services.ImportNotReady):
        import_services.import_errors_read(job=finished, actor=None)


def test_a_worker_runs_an_uploaded_file_then_shreds_it(
    workspace: Any, source: Any, crm_csv: Path, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    mapping = mapping_parse(kind="profiles", **CRM_MAP)
    data = crm_csv.read_bytes()
    # when: uploaded in pieces smaller than a chunk, the task queued on commit
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        job = import_services.import_job_create(
            workspace=workspace,
            source=source,
            mapping=mapping,
            file_name="crm.csv",
            upload=[data[:50], data[50:]],
        )
    # then
    assert len([c for c in callbacks if "import_job_create" in repr(c)]) == 1
    job.refresh_from_db()
    assert (job.status, job.size_bytes, job.rows_stored, job.rows_failed) == (
        "done",
        len(data),
        3,
        4,
    )
    assert ImportChunk.objects.filter(job=job).count() == 0
    assert destroyed(job.upload_key)
    # a redelivered task changes nothing
    assert import_services.import_job_run(job_id=job.pk).rows_stored == 3


# --- no plaintext personal data -----------------------------------------------------------------


def test_no_plaintext_personal_data_in_tables_error_file_logs_or_output(
    workspace: Any,
    source: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # given: a good row and bad rows full of sentinel values, uploaded like the admin does
    caplog.set_level(logging.DEBUG)
    rows = [
        "customer_no,email,phone,first_name,note,tier",
        f"{SENTINELS['user_id']},{SENTINELS['email']},{SENTINELS['phone']},"
        f"{SENTINELS['first_name']},{SENTINELS['property']},gold",
        f"{SENTINELS['user_id']}-2,{SENTINELS['email']},not a phone,"
        f"{SENTINELS['first_name']},{SENTINELS['property']},{SENTINELS['email']}",
        f",{SENTINELS['email']},,{SENTINELS['first_name']},,gold",
    ]
    path = write_csv(tmp_path / "people.csv", rows)
    mapping = mapping_parse(
        kind="profiles",
        maps=[
            "email=identifier:email",
            "phone=identifier:phone",
            "first_name=trait:first_name",
            "tier=trait:loyalty_tier",
        ],
        id_column="customer_no",
        id_type="crm_id",
    )
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = import_services.import_job_create(
            workspace=workspace,
            source=source,
            mapping=mapping,
            file_name=path.name,
            upload=[path.read_bytes()],
        )
    # then: while the upload waits, nothing is readable
    assert scan_all_tables() == []
    # when
    for callback in callbacks:
        callback()
    out = io.StringIO()
    call_command(
        "import_profiles", str(path), "--workspace=acme", "--source=CRM",
        "--id-column=customer_no", "--id-type=crm_id", "--map=email=identifier:email",
        "--map=phone=identifier:phone", "--map=first_name=trait:first_name",
        "--map=tier=trait:loyalty_tier", f"--errors={tmp_path / 'errors.csv'}",
        "--no-progress", stdout=out, stderr=out,
    )  # fmt: skip
    # then: stored and readable through the keys...
    job.refresh_from_db()
    assert (job.rows_stored, job.rows_failed) == (1, 2)
    assert Identity.objects.get(identifier_type="email").value == SENTINELS["email_normalized"]
    # ...nowhere in plaintext: tables (jobs, chunks, audit trail included)...
    assert scan_all_tables() == []
    with connection.cursor() as cursor:
        cursor.execute("SELECT mapping, file_name, failure_message FROM collect_importjob")
        assert all(SENTINELS["email"] not in repr(row) for row in cursor.fetchall())
    # ...the error files (stored and written), the logs and the command's output
    texts = {
        "error file": import_services.import_errors_read(job=job, actor=None).decode(),
        "written error file": (tmp_path / "errors.csv").read_text(),
        "logs": caplog.text,
        "output": out.getvalue(),
    }
    assert "[masked]" in texts["error file"]
    for name, text in texts.items():
        for sentinel, value in SENTINELS.items():
            assert value.lower() not in text.lower(), (name, sentinel)
    # the attribute column that held an email shows it redacted, not in the clear
    assert "[email redacted]" in texts["error file"]


# --- the demo ---------------------------------------------------------------------------------


def test_the_demo_crm_export_resolves_into_shoppers_and_lists_two_errors(
    workspace: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given: a shopper the demo traffic would have identified
    from collect import services as collect_services
    from collect.imports.demo import demo_crm_import

    web = services.source_create(workspace=workspace, name="Web")
    collect_services.collect_messages(
        source=web,
        payloads=[{"type": "identify", "userId": "cust-0000001", "traits": {"plan": "member"}}],
        request_meta=collect_services.RequestMeta(received_at=timezone.now()),
        enforce_rate_limit=False,
    )
    shopper = selectors.profile_find_by_identifier(
        workspace=workspace, identifier_type="user_id", value="cust-0000001"
    )
    # when
    with django_capture_on_commit_callbacks(execute=True):
        job = demo_crm_import(workspace=workspace)
    # then
    assert job is not None
    job.refresh_from_db()
    assert (job.status, job.rows_ok, job.rows_failed) == ("done", 12, 2)
    assert (job.profiles_created, job.merges) == (11, 0)
    assert job.error_counts == {"invalid_email": 1, "invalid_type": 1}
    assert (
        selectors.profile_find_by_identifier(
            workspace=workspace, identifier_type="crm_id", value="CRM-1001"
        )
        == shopper
    )
    assert [r["code"] for r in error_rows(job)] == ["invalid_email", "invalid_type"]
    # and a second seed changes nothing
    assert demo_crm_import(workspace=workspace) is None


def test_a_redelivered_task_leaves_a_running_job_alone_and_takes_over_a_lost_one(
    workspace: Any, source: Any, crm_csv: Path, django_capture_on_commit_callbacks: Any
) -> None:
    # given: an uploaded job that a worker has claimed and reported progress on a minute ago
    mapping = mapping_parse(kind="profiles", **CRM_MAP)
    with django_capture_on_commit_callbacks(execute=False):
        job = import_services.import_job_create(
            workspace=workspace,
            source=source,
            mapping=mapping,
            file_name="crm.csv",
            upload=[crm_csv.read_bytes()],
        )
    minute_ago = timezone.now() - timedelta(minutes=1)
    ImportJob.objects.filter(pk=job.pk).update(status="running", progress_at=minute_ago)
    # when
    again = import_services.import_job_run(job_id=job.pk)
    # then: not run twice; the upload is still there for the first worker
    assert (again.status, again.rows_total) == ("running", 0)
    assert ImportChunk.objects.filter(job=job).count() == 1
    # when: its worker was lost (no progress for longer than STALE_AFTER)
    lost = timezone.now() - import_services.STALE_AFTER - timedelta(minutes=1)
    ImportJob.objects.filter(pk=job.pk).update(progress_at=lost)
    taken = import_services.import_job_run(job_id=job.pk)
    # then
    assert (taken.status, taken.rows_stored, taken.rows_failed) == ("done", 3, 4)
    assert ImportChunk.objects.filter(job=job).count() == 0
