"""File runs (ad-platform uploads) whose sync or destination is disabled while they run: the
file is not published, its ledger rows stay unconfirmed, and the next run sends them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from activation import outbound, services
from activation.enums import DeliveryAction, DeliveryStatus, SyncRunStatus
from activation.models import Delivery, Destination, Sync
from tests.activation.sync_helpers import (
    Person,
    audience,
    enter,
    file_destination,
    grant,
    person,
    run_sync,
)

pytestmark = pytest.mark.django_db


def _people(workspace: Any, count: int) -> list[Person]:
    people = [person(workspace) for _ in range(count)]
    for who in people:
        grant(workspace, who, "advertising")
    return people


def _sync(workspace: Any) -> Sync:
    destination = file_destination(
        workspace, "google_customer_match", data={"identifiers": ["email"]}
    )
    return services.sync_create(
        audience=audience(workspace),
        destination=destination,
        mode="incremental",
        interval_minutes=0,
    )


def _files(root: Path) -> list[Path]:
    """Every file under `root`, the hidden `.partial` ones included."""
    return sorted(p for p in root.rglob("*") if p.is_file())


def _switch_off_after_writes(
    monkeypatch: pytest.MonkeyPatch, writes: int, switch_off: Callable[[], None]
) -> None:
    """Run `switch_off` once the run has written `writes` batches to its file."""
    real_write = outbound.FileSink.write
    done = [0]

    def write(sink: outbound.FileSink, records: Iterable[outbound.Outgoing]) -> None:
        real_write(sink, records)
        done[0] += 1
        if done[0] == writes:
            switch_off()

    monkeypatch.setattr(outbound.FileSink, "write", write)


def _disable_sync(sync: Sync) -> Callable[[], None]:
    def switch_off() -> None:
        Sync.objects.filter(pk=sync.pk).update(enabled=False)

    return switch_off


def _disable_destination(sync: Sync) -> Callable[[], None]:
    def switch_off() -> None:
        services.destination_update(
            destination=Destination.objects.get(pk=sync.destination_id), enabled=False
        )

    return switch_off


def _statuses() -> list[str]:
    return sorted(
        Delivery.objects.filter(action=DeliveryAction.ADD).values_list("status", flat=True)
    )


def test_a_file_run_whose_sync_is_disabled_between_batches_publishes_nothing(
    workspace: Any,
    export_dir: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # given: three consented members, in batches of one; the sync is switched off once the
    # first batch is in the file
    settings.CDP_SYNC_BATCH_SIZE = 1
    sync = _sync(workspace)
    enter(sync.audience, *_people(workspace, 3))
    _switch_off_after_writes(monkeypatch, 1, _disable_sync(sync))

    # when
    run = run_sync(sync, django_capture_on_commit_callbacks)

    # then: no file (nor its partial), the one row written ahead left unconfirmed, the
    # cursor kept, and the run says why
    assert _files(export_dir) == []
    assert _statuses() == [DeliveryStatus.FAILED]
    assert (run.status, run.sent, run.processed, run.artifact) == (
        SyncRunStatus.FAILED,
        0,
        1,
        "",
    )
    assert run.error == (
        "The sync was disabled during the run: its file was not published and no one was "
        "added; the next run sends them."
    )
    assert Sync.objects.get(pk=sync.pk).cursor == 0


def test_a_file_run_whose_destination_is_disabled_between_batches_publishes_nothing(
    workspace: Any,
    export_dir: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # given: the destination is switched off once two of three batches are in the file
    settings.CDP_SYNC_BATCH_SIZE = 1
    sync = _sync(workspace)
    enter(sync.audience, *_people(workspace, 3))
    _switch_off_after_writes(monkeypatch, 2, _disable_destination(sync))

    # when
    run = run_sync(sync, django_capture_on_commit_callbacks)

    # then
    assert _files(export_dir) == []
    assert _statuses() == [DeliveryStatus.FAILED, DeliveryStatus.FAILED]
    assert (run.status, run.sent, run.processed, run.artifact) == (
        SyncRunStatus.FAILED,
        0,
        2,
        "",
    )
    assert run.error == (
        "The destination was disabled during the run: its file was not published and no one "
        "was added; the next run sends them."
    )
    assert Sync.objects.get(pk=sync.pk).cursor == 0


def test_a_file_run_whose_sync_is_disabled_after_its_last_batch_publishes_nothing(
    workspace: Any,
    export_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # given: all three members in one batch; the sync is switched off once it is written,
    # before the file is moved into place (no batch follows to notice it)
    sync = _sync(workspace)
    enter(sync.audience, *_people(workspace, 3))
    _switch_off_after_writes(monkeypatch, 1, _disable_sync(sync))

    # when
    run = run_sync(sync, django_capture_on_commit_callbacks)

    # then
    assert _files(export_dir) == []
    assert _statuses() == [DeliveryStatus.FAILED] * 3
    assert (run.status, run.sent, run.processed, run.artifact) == (
        SyncRunStatus.FAILED,
        0,
        3,
        "",
    )
    assert run.error.startswith("The sync was disabled during the run: its file was not")
    assert Sync.objects.get(pk=sync.pk).cursor == 0


def test_a_file_run_whose_destination_is_disabled_after_its_last_batch_publishes_nothing(
    workspace: Any,
    export_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # given
    sync = _sync(workspace)
    enter(sync.audience, *_people(workspace, 2))
    _switch_off_after_writes(monkeypatch, 1, _disable_destination(sync))

    # when
    run = run_sync(sync, django_capture_on_commit_callbacks)

    # then
    assert _files(export_dir) == []
    assert _statuses() == [DeliveryStatus.FAILED] * 2
    assert (run.status, run.sent) == (SyncRunStatus.FAILED, 0)
    assert run.error.startswith("The destination was disabled during the run: its file was")


def test_the_next_run_sends_what_an_abandoned_file_run_held(
    workspace: Any,
    export_dir: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # given: a run abandoned after two of three batches, then the sync switched on again
    settings.CDP_SYNC_BATCH_SIZE = 1
    sync = _sync(workspace)
    people = _people(workspace, 3)
    enter(sync.audience, *people)
    _switch_off_after_writes(monkeypatch, 2, _disable_sync(sync))
    run_sync(sync, django_capture_on_commit_callbacks)
    monkeypatch.undo()
    Sync.objects.filter(pk=sync.pk).update(enabled=True)

    # when
    run = run_sync(sync, django_capture_on_commit_callbacks)

    # then: one file with all three, each confirmed by this run
    (path,) = _files(export_dir)
    assert run.artifact == str(path.relative_to(export_dir))
    assert len(path.read_text(encoding="utf-8").splitlines()) == 1 + 3
    assert (run.status, run.sent) == (SyncRunStatus.SUCCEEDED, 3)
    confirmed = Delivery.objects.filter(sync_run=run, status=DeliveryStatus.DELIVERED)
    assert sorted(confirmed.values_list("profile_id", flat=True)) == sorted(
        who.profile_id for who in people
    )
