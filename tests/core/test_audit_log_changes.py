"""cdp.core.audit.log_changes: the audit entries of rows written set-wise are the entries the
per-row saves would have written (auditlog's own diff, actor from its context), appended to the
hash chain in order; `deferred_entries` appends them at the end of its block, or not at all."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from auditlog import get_logentry_model
from auditlog.context import set_actor
from auditlog.diff import model_instance_diff
from django.contrib.contenttypes.models import ContentType
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp.core import audit
from consent.models import ConsentState, Purpose
from governance import chain
from profiles.models import Workspace
from tests.profiles.factories import UserFactory

LogEntry = get_logentry_model()
_ids = itertools.count(1)


def _state(**fields: Any) -> ConsentState:
    base = {
        "pk": next(_ids),
        "workspace_id": 1,
        "profile_id": uuid.uuid4(),
        "purpose_id": 3,
        "decision": "granted",
        "record_id": uuid.uuid4(),
        "updated_at": datetime(2026, 11, 1, tzinfo=UTC),
        "needs_reconsent": False,
    }
    base.update(fields)
    return ConsentState(**base)


@settings(max_examples=60, deadline=None)
@given(
    decision=st.sampled_from(["granted", "denied", "withdrawn"]),
    reconsent=st.booleans(),
    later=st.integers(min_value=0, max_value=10**9),
    same_record=st.booleans(),
    shape=st.sampled_from(["create", "update", "delete"]),
)
def test_the_fast_diff_is_auditlogs_diff(
    decision: str, reconsent: bool, later: int, same_record: bool, shape: str
) -> None:
    # given: a state and a changed copy of it
    old = _state()
    new = _state(
        pk=old.pk,
        profile_id=old.profile_id,
        decision=decision,
        needs_reconsent=reconsent,
        updated_at=old.updated_at + timedelta(microseconds=later),
        record_id=old.record_id if same_record else uuid.uuid4(),
    )
    pair = {"create": (None, new), "update": (old, new), "delete": (old, None)}[shape]
    # then
    assert audit._diff(*pair, False) == model_instance_diff(*pair, use_json_for_changes=False)


def test_models_with_reverse_relations_use_auditlogs_diff() -> None:
    # a purpose has reverse relations (auditlog diffs those too): not on the fast path
    assert audit._fast_plan(Purpose) is None
    assert audit._fast_plan(Workspace) is None
    assert audit._fast_plan(ConsentState) is not None


def _consent_state_row(workspace: Any) -> ConsentState:
    from consent import services as consent_services
    from consent.enums import Decision, Method
    from consent.services import Evidence, Subject
    from profiles import services as profile_services
    from tests.profiles.ingest_helpers import msg

    consent_services.purposes_ensure_defaults(workspace=workspace)
    source = profile_services.source_create(workspace=workspace, name="Web")
    profile_id = profile_services.ingest_messages(
        source=source, messages=[msg(anonymous_id="a-1")]
    ).profile_ids[0]
    consent_services.consent_record(
        workspace=workspace,
        subject=Subject("anonymous_id", "a-1", profile_id),
        decisions={"analytics": Decision.GRANTED},
        evidence=Evidence(method=Method.API),
    )
    return ConsentState.objects.get(profile_id=profile_id)


def test_entries_match_the_signals_and_keep_the_chain(workspace: Any) -> None:
    # given: a state saved by the ORM (auditlog's signal wrote its CREATE entry)
    state = _consent_state_row(workspace)
    entries = LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(ConsentState), object_pk=str(state.pk)
    )
    by_signal = entries.get()
    user = UserFactory()
    changed = ConsentState.objects.get(pk=state.pk)
    changed.decision = "withdrawn"
    # when: the same creation and an update, logged set-wise under an actor
    with set_actor(user):
        written = audit.log_changes([(None, state), (state, changed)])
    # then
    assert written == 2
    create, update = entries.order_by("pk")[1:]
    assert (create.action, create.changes, create.object_repr, create.object_id) == (
        by_signal.action,
        by_signal.changes,
        by_signal.object_repr,
        by_signal.object_id,
    )
    assert (update.action, update.changes) == (
        LogEntry.Action.UPDATE,
        {"decision": ["granted", "withdrawn"]},
    )
    assert update.actor_id == user.pk
    assert chain.verify(LogEntry).ok


def test_no_change_and_unregistered_models_write_nothing(workspace: Any) -> None:
    state = _consent_state_row(workspace)
    before = LogEntry.objects.count()
    assert audit.log_changes([(state, state)]) == 0
    assert LogEntry.objects.count() == before


def test_deferred_entries_go_in_at_the_end_of_the_block(workspace: Any) -> None:
    # given
    state = _consent_state_row(workspace)
    before = LogEntry.objects.count()
    deleted = ConsentState.objects.get(pk=state.pk)
    # when
    with audit.deferred_entries():
        assert audit.log_changes([(deleted, None)]) == 1
        assert LogEntry.objects.count() == before  # not yet
    # then
    entry = LogEntry.objects.order_by("-pk").first()
    assert LogEntry.objects.count() == before + 1
    assert entry is not None and entry.action == LogEntry.Action.DELETE
    assert chain.verify(LogEntry).ok


def test_deferred_entries_are_dropped_with_an_error(workspace: Any) -> None:
    state = _consent_state_row(workspace)
    before = LogEntry.objects.count()
    with pytest.raises(RuntimeError), audit.deferred_entries():
        audit.log_changes([(state, None)])
        raise RuntimeError("boom")
    assert LogEntry.objects.count() == before


def test_nested_blocks_append_once_at_the_outer_end(workspace: Any) -> None:
    state = _consent_state_row(workspace)
    before = LogEntry.objects.count()
    with audit.deferred_entries():
        with audit.deferred_entries():
            audit.log_changes([(state, None)])
        assert LogEntry.objects.count() == before
    assert LogEntry.objects.count() == before + 1
