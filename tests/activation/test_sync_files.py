"""File destinations: Google Customer Match and Meta customer-list uploads (hashed as each
platform documents), plain CSV and JSON Lines, removal files, and the minimum audience size of
ad-platform exports."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from activation import services
from activation.enums import DeliveryAction, DeliveryStatus, RemovalStatus
from activation.models import Delivery, Removal, Sync
from consent import services as consent_services
from consent.services import Evidence, Subject
from profiles import selectors as profile_selectors
from profiles import services as profile_services
from profiles.models import Identity
from tests.activation.sync_helpers import (
    Person,
    audience,
    enter,
    grant,
    leave,
    person,
    source_for,
)
from tests.activation.sync_helpers import run_sync as run
from tests.profiles.ingest_helpers import msg

pytestmark = pytest.mark.django_db


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _sync(
    workspace: Any,
    kind: str,
    *,
    data: dict[str, Any],
    mode: str = "full",
    min_size: int = 2,
    config: dict[str, Any] | None = None,
    audience_key: str = "buyers",
) -> Sync:
    destination = services.destination_create(
        workspace=workspace,
        name=kind,
        kind=kind,
        purposes=["advertising"],
        data=data,
        config=config or {"prefix": kind.replace("_", "-")},
        min_audience_size=min_size,
    )
    return services.sync_create(
        audience=audience(workspace, audience_key),
        destination=destination,
        mode=mode,
        interval_minutes=0,
    )


def _people(workspace: Any, count: int, consented: int) -> list[Person]:
    people = [person(workspace, first_name=f"Zoë{n}") for n in range(count)]
    for who in people[:consented]:
        grant(workspace, who, "advertising")
    return people


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))


def _phone(who: Person) -> str:
    return "+" + "".join(c for c in who.phone if c.isdigit())


def test_a_google_customer_match_file_holds_hashes_only(
    workspace: Any, export_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    # given: three members, two consented
    people = _people(workspace, 3, 2)
    sync = _sync(
        workspace,
        "google_customer_match",
        data={"identifiers": ["email", "phone"], "traits": ["first_name", "country"]},
    )
    enter(sync.audience, *people)

    # when
    result = run(sync, django_capture_on_commit_callbacks)

    # then: one file in the workspace's directory, named in the run's artifact
    assert (result.status, result.sent, result.excluded) == (
        "succeeded",
        2,
        {"no_consent:advertising": 1},
    )
    (path,) = _files(export_dir)
    assert path.parent == export_dir / "acme"
    assert result.artifact == str(path.relative_to(export_dir))
    assert path.name.startswith("google-customer-match-buyers-") and "-add-" in path.name
    rows = _rows(path)
    assert rows[0] == ["Email", "Phone", "First Name", "Last Name", "Country", "Zip"]
    # E.164 with "+" for Google; no address without all four of its parts
    expected = sorted(
        [[sha(who.email.lower()), sha(_phone(who)), "", "", "", ""] for who in people[:2]]
    )
    assert sorted(rows[1:]) == expected
    text = path.read_text(encoding="utf-8")
    for who in people:
        assert who.email.lower() not in text.lower()
        assert _phone(who)[1:] not in text
        assert who.user_id not in text
    # each ledger row hashes its exact line of the file
    lines = path.read_bytes().split(b"\r\n")[1:-1]
    hashes = {hashlib.sha256(line + b"\r\n").hexdigest() for line in lines}
    rows_ = Delivery.objects.filter(sync_run=result)
    assert {d.payload_sha256 for d in rows_} == hashes
    assert {d.status for d in rows_} == {DeliveryStatus.DELIVERED}


def test_a_meta_customer_list_hashes_every_key_the_meta_way(
    workspace: Any, export_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    people = _people(workspace, 2, 2)
    sync = _sync(
        workspace,
        "meta_custom_audiences",
        data={"identifiers": ["email", "phone"], "traits": ["first_name", "country"]},
    )
    enter(sync.audience, *people)

    # when
    result = run(sync, django_capture_on_commit_callbacks)

    # then: digits only for the phone, the first name and country hashed too
    (path,) = _files(export_dir)
    rows = _rows(path)
    assert rows[0] == [
        "email",
        "phone",
        "fn",
        "ln",
        "ct",
        "st",
        "zip",
        "country",
        "dob",
        "doby",
        "gen",
    ]
    expected = sorted(
        [
            sha(who.email.lower()),
            sha(_phone(who)[1:]),
            sha("zoë"),
            "",
            "",
            "",
            "",
            sha("gb"),
            "",
            "",
            "",
        ]
        for who in people
    )
    assert sorted(rows[1:]) == expected
    assert result.sent == 2


def test_an_ad_platform_refuses_an_audience_below_its_minimum(
    workspace: Any, export_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    # given: three members but only two may be sent; the minimum is three
    people = _people(workspace, 3, 2)
    sync = _sync(
        workspace,
        "meta_custom_audiences",
        data={"identifiers": ["email"]},
        min_size=3,
    )
    enter(sync.audience, *people)

    # when
    result = run(sync, django_capture_on_commit_callbacks)

    # then: refused, nothing written, nothing in the ledger, the cursor not moved
    assert (result.status, result.sent, result.excluded) == ("refused", 0, {"below_min_size": 2})
    assert "at least 3" in result.error
    assert _files(export_dir) == []
    assert not Delivery.objects.exists()
    sync.refresh_from_db()
    assert sync.cursor == 0


def test_the_minimum_counts_rows_a_platform_can_match(
    workspace: Any, export_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    # given: both consented, but the destination matches on phone only and one of them has
    # no phone number
    people = _people(workspace, 2, 2)
    sync = _sync(workspace, "google_customer_match", data={"identifiers": ["phone"]}, min_size=2)
    enter(sync.audience, *people)
    Identity.objects.filter(identifier_type="phone", profile_id=people[0].profile_id).delete()

    # when
    result = run(sync, django_capture_on_commit_callbacks)

    # then: one matchable row is below the minimum of two: refused, and the partial file and
    # its ledger rows are gone
    assert (result.status, result.excluded) == ("refused", {"below_min_size": 1})
    assert _files(export_dir) == []
    assert not Delivery.objects.exists()


def test_plain_csv_and_jsonl_carry_the_declared_fields(
    workspace: Any, export_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    (ada,) = _people(workspace, 1, 1)
    data = {"identifiers": ["user_id", "email"], "traits": ["country", "first_name"]}
    as_csv = _sync(workspace, "csv", data=data)
    as_jsonl = _sync(workspace, "jsonl", data=data, audience_key="readers")
    enter(as_csv.audience, ada)
    enter(as_jsonl.audience, ada)

    # when
    run(as_csv, django_capture_on_commit_callbacks)
    run(as_jsonl, django_capture_on_commit_callbacks)

    # then
    csv_path, jsonl_path = sorted(_files(export_dir), key=lambda p: p.suffix)
    assert _rows(csv_path) == [
        ["profile_id", "user_id", "email", "country", "first_name"],
        [str(ada.profile_id), ada.user_id, ada.email.lower(), "GB", "Zoë0"],
    ]
    assert [json.loads(line) for line in jsonl_path.read_text().splitlines()] == [
        {
            "profile_id": str(ada.profile_id),
            "user_id": ada.user_id,
            "email": ada.email.lower(),
            "country": "GB",
            "first_name": "Zoë0",
        }
    ]


def test_an_incremental_file_sync_writes_a_removal_file_for_those_who_left(
    workspace: Any, export_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    # given: two sent
    ada, bob = _people(workspace, 2, 2)
    sync = _sync(
        workspace,
        "google_customer_match",
        data={"identifiers": ["email"]},
        mode="incremental",
        min_size=1,
    )
    enter(sync.audience, ada, bob)
    run(sync, django_capture_on_commit_callbacks)

    # when: bob leaves
    leave(sync.audience, bob)
    second = run(sync, django_capture_on_commit_callbacks)

    # then: a removal file with his hashed row, and nothing added
    assert (second.status, second.sent, second.removed) == ("succeeded", 0, 1)
    (removal_file,) = [p for p in _files(export_dir) if "-remove-" in p.name]
    assert second.artifact == str(removal_file.relative_to(export_dir))
    assert _rows(removal_file) == [
        ["Email", "Phone", "First Name", "Last Name", "Country", "Zip"],
        [sha(bob.email.lower()), "", "", "", "", ""],
    ]
    removal = Removal.objects.get(profile_id=bob.profile_id)
    assert removal.status == RemovalStatus.SENT
    assert Delivery.objects.filter(
        profile_id=bob.profile_id, action=DeliveryAction.REMOVE, sync_run=second
    ).exists()


def test_a_profile_merged_into_a_member_stays_on_an_ad_platform(
    workspace: Any, export_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    # given: two profiles of one person (a customer, and a visitor known by a device id),
    # both sent to Google on their emails
    first = person(workspace, email="merge.one@example.com")
    visitor = profile_services.ingest_messages(
        source=source_for(workspace),
        messages=[
            msg("identify", anonymous_id="device-1", traits={"email": "merge.two@example.com"})
        ],
    ).profile_ids[0]
    second = Person(visitor, "", "merge.two@example.com", "")
    sync = _sync(
        workspace,
        "google_customer_match",
        data={"identifiers": ["email"]},
        mode="incremental",
        min_size=1,
    )
    grant(workspace, first, "advertising")
    consent_services.consent_record(
        workspace=workspace,
        subject=Subject("anonymous_id", "device-1", visitor),
        decisions={"advertising": "granted"},
        evidence=Evidence(method="banner"),
    )
    enter(sync.audience, first, second)
    assert run(sync, django_capture_on_commit_callbacks).sent == 2

    # when: the customer logs in on that device (one profile absorbs the other, whose
    # membership ends), and the next run
    profile_services.ingest_messages(
        source=source_for(workspace),
        messages=[msg(user_id=first.user_id, anonymous_id="device-1")],
    )
    survivors = {
        profile_selectors.profile_get(workspace=workspace, profile_id=who.profile_id).pk
        for who in (first, second)
    }
    second_run = run(sync, django_capture_on_commit_callbacks)

    # then: the person is still a member (through the survivor), so nothing is taken back
    assert len(survivors) == 1
    assert (second_run.status, second_run.removed) == ("succeeded", 0)
    assert not Removal.objects.exists()
    assert [p for p in _files(export_dir) if "-remove-" in p.name] == []
