"""consent_record_many (the ingestion drain records a batch's consent signals with it) leaves the
same ledger, chains, current states, receipts and audit entries as consent_record called once
per change, in order."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from auditlog import get_logentry_model
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone

from cdp.core.crypto import blind_index
from consent import selectors, services
from consent.enums import Decision, Method
from consent.exceptions import PurposeUnknown
from consent.models import ConsentRecord, ConsentState, Receipt
from consent.services import ConsentChange, Evidence, Subject
from profiles import services as profile_services
from profiles.services import workspace_create
from tests.profiles.ingest_helpers import msg

LogEntry = get_logentry_model()


def _world(slug: str) -> tuple[Any, list[Any]]:
    workspace = workspace_create(slug=slug, name=slug)
    services.purposes_ensure_defaults(workspace=workspace)
    source = profile_services.source_create(workspace=workspace, name="Web")
    outcome = profile_services.ingest_messages(
        source=source,
        messages=[msg(anonymous_id="a-1"), msg(anonymous_id="a-2"), msg(user_id="u-3")],
    )
    return workspace, outcome.profile_ids


def _changes(profiles: list[Any]) -> list[ConsentChange]:
    """Two changes for the first subject (a GPC-style opt-out after a banner), one for each of
    the others, one without a profile."""
    banner = Evidence(method=Method.API, ip="198.51.100.7", signals={"categoryPreferences": {}})
    gpc = Evidence(method=Method.GPC, signals={"gpc": True})
    return [
        ConsentChange(
            Subject("anonymous_id", "a-1", profiles[0]),
            {"analytics": Decision.GRANTED, "advertising": Decision.GRANTED},
            banner,
        ),
        ConsentChange(
            Subject("anonymous_id", "a-1", profiles[0]),
            {"advertising": Decision.DENIED},
            gpc,
            needs_reconsent=frozenset({"advertising"}),
        ),
        ConsentChange(
            Subject("anonymous_id", "a-2", profiles[1]),
            {"marketing_email": Decision.DENIED, "analytics": Decision.GRANTED},
            banner,
        ),
        ConsentChange(Subject("user_id", "u-3", profiles[2]), {"profiling": Decision.DENIED}, gpc),
        ConsentChange(Subject("anonymous_id", "nobody", None), {"analytics": Decision.DENIED}, gpc),
    ]


def _ledger(workspace: Any) -> list[tuple[Any, ...]]:
    return [
        (
            r.subject_type,
            r.purpose.key,
            r.decision,
            r.method,
            r.profile_id is not None,
            sorted(r.proof),
        )
        for r in ConsentRecord.objects.filter(workspace=workspace)
        .select_related("purpose")
        .order_by("server_time", "purpose__key")
    ]


def _states(workspace: Any, profiles: list[Any]) -> list[dict[str, Any]]:
    found = selectors.consent_states_for_profiles(workspace=workspace, profile_ids=profiles)
    return [
        {k: (v["decision"], v["needs_reconsent"]) for k, v in found[p].items()} for p in profiles
    ]


def _audit(workspace: Any, profiles: list[Any]) -> list[tuple[Any, ...]]:
    """The audit entries of the workspace's consent states: action, whose state (the profile's
    position, the purpose), and the fields and decisions the diff names."""
    kind = ContentType.objects.get_for_model(ConsentState)
    states = {
        s.pk: (profiles.index(s.profile_id), s.purpose.key)
        for s in ConsentState.objects.filter(workspace=workspace).select_related("purpose")
    }
    return sorted(
        (
            entry.action,
            states[int(entry.object_pk)],
            tuple(sorted(entry.changes)),
            tuple(entry.changes.get("decision", ())),
        )
        for entry in LogEntry.objects.filter(content_type=kind)
        if int(entry.object_pk) in states
    )


def test_a_batch_leaves_what_one_call_per_change_leaves(db: Any) -> None:
    # given: two identical workspaces
    one, one_profiles = _world("one-by-one")
    many, many_profiles = _world("all-at-once")
    # when: the same changes, one call each and in one batch
    for change in _changes(one_profiles):
        services.consent_record(
            workspace=one,
            subject=change.subject,
            decisions=change.decisions,
            evidence=change.evidence,
            needs_reconsent=change.needs_reconsent,
        )
    recorded = services.consent_record_many(workspace=many, changes=_changes(many_profiles))
    # then: the same ledger, states, audit entries and receipts
    assert _ledger(many) == _ledger(one)
    assert _states(many, many_profiles) == _states(one, one_profiles)
    assert _audit(many, many_profiles) == _audit(one, one_profiles)
    assert (
        len(_audit(many, many_profiles)) == 6
    )  # five states made, one changed (advertising, twice set)
    assert Receipt.objects.filter(workspace=many).count() == 5
    assert [len(r.records) for r in recorded] == [2, 1, 2, 1, 1]
    # and: every subject's chain holds, and every receipt verifies with the published key
    for value, kind in (("a-1", "anonymous_id"), ("a-2", "anonymous_id"), ("u-3", "user_id")):
        index = blind_index(many.pk, kind, value)
        check = selectors.consent_chain_verify(workspace=many, subject_index=index)
        assert check.broken_record is None
        assert check.checked >= 1
    key = services.signing_key_current(workspace=many)
    public = Ed25519PublicKey.from_public_bytes(bytes(key.public_key))
    for receipt in Receipt.objects.filter(workspace=many):
        signature = base64.urlsafe_b64decode(receipt.signature + "==")
        public.verify(signature, services.canonical_json(receipt.body))


def test_changes_of_one_subject_keep_their_order(db: Any) -> None:
    # given
    workspace, profiles = _world("order")
    now = timezone.now()
    # when
    services.consent_record_many(workspace=workspace, changes=_changes(profiles)[:2], now=now)
    # then: the second change is the latest, one microsecond later, chained to the first
    records = list(
        ConsentRecord.objects.filter(workspace=workspace).order_by("server_time", "purpose__key")
    )
    assert [r.server_time for r in records] == [now, now, services.change_time(now, 1)]
    assert records[2].prev_hash == records[1].record_hash
    state = ConsentState.objects.get(profile_id=profiles[0], purpose__key="advertising")
    assert (state.decision, state.needs_reconsent) == (Decision.DENIED, True)


def test_an_unknown_purpose_refuses_the_whole_batch(db: Any) -> None:
    # given
    workspace, profiles = _world("unknown")
    changes = [
        *_changes(profiles)[:1],
        ConsentChange(
            Subject("anonymous_id", "a-2", profiles[1]), {"nope": "granted"}, Evidence("api")
        ),
    ]
    # when / then
    with pytest.raises(PurposeUnknown):
        services.consent_record_many(workspace=workspace, changes=changes)
    assert ConsentRecord.objects.filter(workspace=workspace).count() == 0


def test_nothing_to_record_writes_nothing(db: Any) -> None:
    workspace, _profiles = _world("empty")
    assert services.consent_record_many(workspace=workspace, changes=[]) == []
    assert ConsentRecord.objects.filter(workspace=workspace).count() == 0
