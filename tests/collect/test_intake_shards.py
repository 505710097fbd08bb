"""The sharded intake: a request's messages are split by a hash of their userId (else
anonymousId); a drain takes the oldest batches of one shard up to its message budget; messages
whose identifiers another drain holds are handed back once (PostgreSQL), then waited for."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from collect import intake
from collect.models import IntakeBatch
from profiles import services
from profiles.ingest import _Indexer, _lock_key, load_rules, message_identifiers
from profiles.models import Event, Identity
from tests.profiles.ingest_helpers import msg
from tests.sessions import other_session


@pytest.fixture
def source(workspace: Any) -> Any:
    return services.source_create(workspace=workspace, name="Web")


def store(source: Any, messages: list[Any], django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        intake.intake_store(source=source, messages=messages)


@override_settings(COLLECT_INTAKE_SHARDS=4)
def test_a_request_is_split_by_person_and_each_shard_keeps_its_order(
    source: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given: three people, one of them identified on two devices
    messages = [
        msg(user_id="u-1", anonymous_id="a-1", message_id="m-1"),
        msg(anonymous_id="a-9", message_id="m-2"),
        msg(user_id="u-1", anonymous_id="a-2", message_id="m-3"),
        msg(user_id="u-7", message_id="m-4"),
        msg(user_id="u-1", message_id="m-5"),
    ]
    # when
    store(source, messages, django_capture_on_commit_callbacks)
    # then: a userId's messages share a shard, in their order
    batches = list(IntakeBatch.objects.order_by("shard"))
    assert sum(b.message_count for b in batches) == 5
    assert len({b.shard for b in batches}) == len(batches)
    shard_of = {m["message_id"]: b.shard for b in batches for m in b.payload}
    assert shard_of["m-1"] == shard_of["m-3"] == shard_of["m-5"]
    assert shard_of["m-1"] == intake._shard_of(messages[0], 4)
    [with_u1] = [b for b in batches if b.shard == shard_of["m-1"]]
    assert [m["message_id"] for m in with_u1.payload][:3] == ["m-1", "m-3", "m-5"]
    assert all(0 <= b.shard < 4 for b in batches)


@override_settings(COLLECT_INTAKE_SHARDS=1)
def test_a_drain_takes_the_oldest_batches_up_to_its_budget(
    source: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given: three requests of 2, 2 and 1 messages in one shard
    for n, size in enumerate((2, 2, 1)):
        store(
            source,
            [msg(anonymous_id=f"a-{n}-{i}", message_id=f"m-{n}-{i}") for i in range(size)],
            django_capture_on_commit_callbacks,
        )
    # when: a budget of three messages
    claimed = intake._claim(3)
    # then: the first request only (the second would exceed it); at least one batch always
    assert [b.message_count for b in claimed] == [2]
    assert [b.message_count for b in intake._claim(1)] == [2]
    # and draining everything stores every message
    assert intake.intake_drain(max_messages=3) == 5
    assert Event.objects.count() == 5
    assert IntakeBatch.objects.count() == 0


@pytest.mark.skipif(
    "postgresql" not in settings.DATABASES["default"]["ENGINE"], reason="advisory locks"
)
@pytest.mark.django_db(transaction=True)
@override_settings(COLLECT_INTAKE_SHARDS=1)
def test_messages_another_drain_holds_are_handed_back_once(
    workspace: Any, monkeypatch: Any
) -> None:
    # given: two people in the buffer (no drain queued: this test runs them); another session
    # holds one identifier of the first
    from collect import tasks

    monkeypatch.setattr(tasks.intake_drain, "delay", lambda: None)
    source = services.source_create(workspace=workspace, name="Web")
    first = [
        msg(user_id="u-1", anonymous_id="a-1", message_id="m-1"),
        msg(anonymous_id="a-1", message_id="m-2"),  # connected to u-1 through a-1
    ]
    second = [msg(anonymous_id="a-5", message_id="m-3")]
    intake.intake_store(source=source, messages=[*first, *second])
    rules = load_rules(workspace)
    [held] = [
        _lock_key(i)
        for i in message_identifiers(first[0], rules, _Indexer(workspace.pk))
        if i.type == "user_id"
    ]
    other = other_session()
    try:
        other.execute("SELECT pg_advisory_xact_lock(%s)", [held])
        # when: a drain runs while it is held
        stored = intake.intake_drain(max_rounds=1)
        # then: the second person is stored; the first person's two messages wait, marked
        assert stored == 1
        assert list(Event.objects.values_list("message_id", flat=True)) == ["m-3"]
        [back] = IntakeBatch.objects.all()
        assert back.contended and [m["message_id"] for m in back.payload] == ["m-1", "m-2"]
    finally:
        other.rollback()
        other.close()
    # when: the next drain runs (the identifier is free again; it would wait, not postpone)
    assert intake.intake_drain() == 2
    # then
    assert sorted(Event.objects.values_list("message_id", flat=True)) == ["m-1", "m-2", "m-3"]
    assert Identity.objects.filter(identifier_type="user_id").count() == 1
    assert IntakeBatch.objects.count() == 0


@pytest.mark.skipif("postgresql" not in settings.DATABASES["default"]["ENGINE"], reason="row locks")
@pytest.mark.django_db(transaction=True)
@override_settings(COLLECT_INTAKE_SHARDS=1)
def test_messages_reaching_a_profile_another_drain_holds_are_handed_back(
    workspace: Any, monkeypatch: Any
) -> None:
    # given: a stored person, whose profile row another transaction holds (it reached the
    # person through another of their identifiers); a new message of that person by a device
    # identifier nobody locks, and one of somebody else
    from collect import tasks

    monkeypatch.setattr(tasks.intake_drain, "delay", lambda: None)
    source = services.source_create(workspace=workspace, name="Web")
    [profile_id] = services.ingest_messages(
        source=source, messages=[msg(user_id="u-1", anonymous_id="a-1", message_id="m-0")]
    ).profile_ids
    intake.intake_store(
        source=source,
        messages=[
            msg(anonymous_id="a-1", message_id="m-1"),
            msg(anonymous_id="a-5", message_id="m-2"),
        ],
    )
    other = other_session()
    try:
        other.execute("SELECT id FROM profiles_profile WHERE id = %s FOR UPDATE", [profile_id])
        # when
        stored = intake.intake_drain(max_rounds=1)
        # then: the other person is stored, this one's message waits
        assert stored == 1
        assert sorted(Event.objects.values_list("message_id", flat=True)) == ["m-0", "m-2"]
        [back] = IntakeBatch.objects.all()
        assert back.contended and [m["message_id"] for m in back.payload] == ["m-1"]
    finally:
        other.rollback()
        other.close()
    # when: the row is free again
    assert intake.intake_drain() == 1
    # then: the message joined the person's profile
    assert Event.objects.get(message_id="m-1").profile_id == profile_id


@override_settings(COLLECT_INTAKE_SHARDS=2)
def test_a_failed_statistics_refresh_does_not_stop_the_drain(
    source: Any, django_capture_on_commit_callbacks: Any, monkeypatch: Any
) -> None:
    # given: two shards of pending messages; ANALYZE fails (e.g. its statement times out)
    from django.db import OperationalError

    from cdp.core import dbstats

    store(
        source,
        [msg(user_id=f"u-{i}", message_id=f"m-{i}") for i in range(6)],
        django_capture_on_commit_callbacks,
    )
    assert IntakeBatch.objects.values("shard").distinct().count() == 2

    def fail(**_: Any) -> list[str]:
        raise OperationalError("canceling statement due to statement timeout")

    monkeypatch.setattr(dbstats, "analyze_grown_tables", fail)
    # when
    stored = intake.intake_drain()
    # then: every shard is drained all the same
    assert stored == 6
    assert IntakeBatch.objects.count() == 0
