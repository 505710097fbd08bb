"""profiles.services.profile_unmerge: a merge undone from the ledger (ADR 0007)."""

from __future__ import annotations

from typing import Any

import pytest
from auditlog import get_logentry_model

from cdp.core import hooks
from consent import services as consent_services
from consent.enums import Decision, Method
from consent.models import ConsentState, NoticeVersion
from consent.services import Evidence, Subject
from profiles import services
from profiles.enums import ProfileStatus
from profiles.exceptions import MergeNotFound, UnmergeRefused
from profiles.models import (
    DataKey,
    Event,
    Identity,
    Merge,
    MergeConflict,
    Profile,
    Trait,
)
from tests.profiles.ingest_helpers import msg


@pytest.fixture
def source(workspace: Any) -> Any:
    consent_services.purposes_ensure_defaults(workspace=workspace)
    return services.source_create(workspace=workspace, name="Web")


def send(source: Any, *messages: Any) -> list[Any]:
    """The distinct profiles the messages resolved to, in order."""
    ids = services.ingest_messages(source=source, messages=list(messages)).profile_ids
    return list(dict.fromkeys(ids))


def snapshot(profile_id: Any) -> dict[str, Any]:
    """Everything that is the profile's: compared before a merge and after its unmerge."""
    profile = Profile.objects.get(pk=profile_id)
    return {
        "status": profile.status,
        "merged_into": profile.merged_into_id,
        "merge_count": profile.merge_count,
        "attributes": profile.attributes,
        "seen": (profile.first_seen_at, profile.last_seen_at),
        "identities": sorted(
            (i.identifier_type, i.value, str(i.data_key_id), str(i.origin_profile_id))
            for i in Identity.objects.filter(profile=profile)
        ),
        "traits": sorted(
            (t.key, repr(t.value_attribute), repr(t.value_pii), str(t.data_key_id))
            for t in Trait.objects.filter(profile=profile)
        ),
        "events": sorted(
            (e.message_id, repr(e.sealed), str(e.data_key_id))
            for e in Event.objects.filter(profile=profile)
        ),
        "keys": sorted(str(k) for k in DataKey.objects.filter(profile=profile).values_list("pk")),
        "consent": sorted(
            ConsentState.objects.filter(profile_id=profile_id).values_list(
                "purpose__key", "decision", "record_id", "needs_reconsent"
            )
        ),
    }


def two_people(source: Any) -> tuple[Any, Any]:
    [ann] = send(
        source,
        msg("identify", anonymous_id="ann-phone", traits={"email": "ann@example.com",
                                                           "plan": "gold"}),
        msg("track", anonymous_id="ann-phone", name="Viewed", properties={"email": "a@x.io"}),
    )  # fmt: skip
    [bob] = send(
        source,
        msg("identify", anonymous_id="bob-laptop", traits={"plan": "silver", "country": "FR",
                                                            "name": "Bob"}),
    )  # fmt: skip
    send(source, msg("page", anonymous_id="bob-laptop", name="Home"))
    return ann, bob


def merge_them(source: Any) -> Merge:
    """Bob's laptop is seen with Ann's email: the deterministic rules merge them."""
    send(source, msg("identify", anonymous_id="bob-laptop", traits={"email": "ann@example.com"}))
    return Merge.objects.latest("pk")


def unmerge(merge: Merge, actor: Any = None) -> Any:
    return services.profile_unmerge(
        workspace=merge.workspace, merge=merge, actor=actor, reason="wrong merge"
    )


def test_unmerge_gives_back_every_row_key_and_the_profile_as_it_was(
    source: Any, owner: Any
) -> None:
    # given
    ann, bob = two_people(source)
    before = {ann: snapshot(ann), bob: snapshot(bob)}
    merge = merge_them(source)
    assert (merge.survivor_id, merge.absorbed_id) == (ann, bob)
    assert Profile.objects.get(pk=bob).status == ProfileStatus.MERGED
    # when
    result = unmerge(merge, owner)
    # then: Bob is back with what was his; Ann keeps hers and the merging message, which her
    # email (the strongest identifier it carried) brought in
    after_ann, after_bob = snapshot(ann), snapshot(bob)
    assert after_bob == before[bob]
    merging_event = Event.objects.get(message_id=merge.message_id)
    assert merging_event.profile_id == ann
    assert {k: v for k, v in after_ann.items() if k not in ("events", "seen")} == {
        k: v for k, v in before[ann].items() if k not in ("events", "seen")
    }
    assert set(after_ann["events"]) - set(before[ann]["events"]) == {
        (merging_event.message_id, repr(merging_event.sealed), str(merging_event.data_key_id))
    }
    assert (result.survivor_id, result.restored_id, result.events) == (ann, bob, 2)
    assert (result.identities, result.data_keys) == (1, 1)
    merge.refresh_from_db()
    assert merge.unmerged_at is not None
    log = get_logentry_model()
    entry = log.objects.get_for_object(merge).get(action=log.Action.UPDATE)
    assert entry.actor == owner
    assert entry.additional_data["reason"] == "wrong merge"
    assert entry.additional_data["restored"] == str(bob)


def test_data_carried_by_the_absorbed_identifiers_after_the_merge_goes_back_with_them(
    source: Any,
) -> None:
    # given: merged, then Bob's laptop keeps sending, with a new trait and a new identifier
    ann, bob = two_people(source)
    merge = merge_them(source)
    send(
        source,
        msg("identify", anonymous_id="bob-laptop",
            traits={"plan": "bronze", "phone": "+33612345678"}),
        msg("track", anonymous_id="bob-laptop", name="Bought"),
        msg("track", anonymous_id="ann-phone", name="Searched"),
    )  # fmt: skip
    assert Profile.objects.get(pk=ann).attributes["plan"] in ("bronze", "gold")
    # when
    unmerge(merge)
    # then
    bob_events = set(Event.objects.filter(profile=bob).values_list("name", flat=True))
    ann_events = set(Event.objects.filter(profile=ann).values_list("name", flat=True))
    assert {"Bought", "Home"} <= bob_events and "Searched" not in bob_events
    assert {"Viewed", "Searched"} <= ann_events and "Bought" not in ann_events
    assert Profile.objects.get(pk=bob).attributes == {"country": "FR", "plan": "bronze"}
    assert Profile.objects.get(pk=ann).attributes == {"plan": "gold"}
    phone = Identity.objects.get(identifier_type="phone")
    assert (phone.profile_id, phone.origin_profile_id) == (bob, bob)
    bob_keys = set(DataKey.objects.filter(profile=bob).values_list("pk", flat=True))
    for model in (Identity, Trait, Event):
        assert set(model.objects.filter(profile=bob).values_list("data_key", flat=True)) <= bob_keys


def test_profiles_merged_several_times_unmerge_most_recent_first(source: Any) -> None:
    # given: Ann absorbs Bob, then Cleo
    ann, bob = two_people(source)
    [cleo] = send(source, msg("identify", anonymous_id="cleo-tab", traits={"country": "DE"}))
    before = {p: snapshot(p) for p in (bob, cleo)}
    first = merge_them(source)
    send(source, msg("identify", anonymous_id="cleo-tab", traits={"email": "ann@example.com"}))
    second = Merge.objects.latest("pk")
    assert (second.survivor_id, second.absorbed_id) == (ann, cleo)
    assert Profile.objects.get(pk=ann).merge_count == 2
    # when: the older merge first
    with pytest.raises(UnmergeRefused) as refused:
        unmerge(first)
    # then
    assert refused.value.code == "later_merge_depends"
    assert refused.value.extra == {"merge": second.pk}
    # when: most recent first
    unmerge(second)
    assert Profile.objects.get(pk=ann).merge_count == 1
    unmerge(first)
    # then
    assert snapshot(cleo) == before[cleo]
    assert snapshot(bob) == before[bob]
    assert Profile.objects.get(pk=ann).merge_count == 0


def test_a_profile_that_had_absorbed_another_comes_back_with_it(source: Any) -> None:
    # given: Bob absorbs his tablet profile, then Ann absorbs Bob
    ann, bob = two_people(source)
    [tablet] = send(source, msg("identify", anonymous_id="bob-tablet", traits={"country": "BE"}))
    send(source, msg("identify", anonymous_id="bob-laptop", traits={"nickname": "b"},
                     context={"device": {"id": "bob-tablet-device"}}))  # fmt: skip
    send(source, msg(anonymous_id="bob-tablet", context={"device": {"id": "bob-tablet-device"}}))
    inner = Merge.objects.latest("pk")
    assert (inner.survivor_id, inner.absorbed_id) == (bob, tablet)
    bob_before = snapshot(bob)
    outer = merge_them(source)
    assert Profile.objects.get(pk=tablet).merged_into_id == ann
    # when
    unmerge(outer)
    # then: Bob is back holding the tablet, as before
    assert snapshot(bob) == bob_before
    assert Profile.objects.get(pk=tablet).merged_into_id == bob
    assert Profile.objects.get(pk=bob).merge_count == 1
    # and the inner merge can be undone next
    unmerge(inner)
    assert Profile.objects.get(pk=tablet).status == ProfileStatus.ACTIVE


def test_unmerge_twice_and_cross_workspace_are_refused(source: Any, other_workspace: Any) -> None:
    two_people(source)
    merge = merge_them(source)
    with pytest.raises(MergeNotFound):
        services.profile_unmerge(workspace=other_workspace, merge=merge, actor=None)
    unmerge(merge)
    with pytest.raises(UnmergeRefused) as refused:
        unmerge(merge)
    assert refused.value.code == "already_unmerged"


def test_the_same_evidence_does_not_merge_them_again_but_a_steward_can(source: Any) -> None:
    # given
    ann, bob = two_people(source)
    unmerge(merge_them(source))
    merges = Merge.objects.count()
    # when: the evidence comes again
    send(source, msg("identify", anonymous_id="bob-laptop", traits={"email": "ann@example.com"}))
    # then: refused, recorded for stewards; the rebuild does not undo the unmerge either
    assert Merge.objects.count() == merges
    conflict = MergeConflict.objects.latest("pk")
    assert conflict.reason == "separated by an unmerge"
    assert {conflict.profile_id, conflict.other_profile_id} == {ann, bob}
    report = services.identities_rebuild(workspace=source.workspace, apply=False)
    assert report.merges == []
    # when: a steward merges them on purpose
    merge = services.profiles_merge(
        workspace=source.workspace, profile_ids=(ann, bob), rule="admin: same person",
        actor=None, evidence={},
    )  # fmt: skip
    # then
    assert merge.survivor_id == ann
    assert Profile.objects.get(pk=bob).status == ProfileStatus.MERGED
    assert services.identities_rebuild(workspace=source.workspace, apply=False).merges == []


def test_consent_of_each_side_is_recomputed_from_its_own_ledger(source: Any) -> None:
    # given: Ann granted analytics, Bob denied it and then sent GPC over an advertising grant
    ws = source.workspace
    ann, bob = two_people(source)

    def decide(subject: Subject, method: str = Method.BANNER, **decisions: str) -> None:
        consent_services.consent_record(
            workspace=ws, subject=subject, decisions=decisions,
            evidence=Evidence(method=method, jurisdiction="DE"),
        )  # fmt: skip

    decide(Subject("anonymous_id", "ann-phone", ann), analytics=Decision.GRANTED)
    bob_subject = Subject("anonymous_id", "bob-laptop", bob)
    decide(bob_subject, analytics=Decision.DENIED, advertising=Decision.GRANTED)
    consent_services.consent_apply_gpc(
        workspace=ws, subject=bob_subject, evidence=Evidence(method=Method.GPC, jurisdiction="DE")
    )
    before = {p: snapshot(p)["consent"] for p in (ann, bob)}
    merge = merge_them(source)
    merged = dict(
        ConsentState.objects.filter(profile_id=ann).values_list("purpose__key", "needs_reconsent")
    )
    assert merged["analytics"] is True  # a disagreement, asked again
    # when
    unmerge(merge)
    # then
    assert {p: snapshot(p)["consent"] for p in (ann, bob)} == before
    assert dict(
        ConsentState.objects.filter(profile_id=bob).values_list("purpose__key", "needs_reconsent")
    ) == {"analytics": False, "advertising": True}


def test_a_grant_flagged_by_a_new_notice_version_stays_flagged_after_an_unmerge(
    source: Any,
) -> None:
    # given: Ann granted analytics under banner v1, Bob personalization under v1; merged, then
    # v2 of the banner (covering analytics only) asks Ann's grant again
    ws = source.workspace
    ann, bob = two_people(source)
    v1 = NoticeVersion.objects.get(notice__workspace=ws, notice__key="banner", version=1)
    for subject, key in (
        (Subject("anonymous_id", "ann-phone", ann), "analytics"),
        (Subject("anonymous_id", "bob-laptop", bob), "personalization"),
    ):
        consent_services.consent_record(
            workspace=ws, subject=subject, decisions={key: Decision.GRANTED},
            evidence=Evidence(method=Method.BANNER, notice_version=v1),
        )  # fmt: skip
    merge = merge_them(source)
    consent_services.notice_version_publish(
        notice=v1.notice, text="A new partner for analytics.", purposes=["analytics"]
    )
    assert dict(
        ConsentState.objects.filter(profile_id=ann).values_list("purpose__key", "needs_reconsent")
    ) == {"analytics": True, "personalization": False}
    # when
    unmerge(merge)
    # then: each side's state replayed from its ledger keeps what the publication asked
    assert {
        (str(profile_id), key): (decision, reconsent)
        for profile_id, key, decision, reconsent in ConsentState.objects.values_list(
            "profile_id", "purpose__key", "decision", "needs_reconsent"
        )
    } == {
        (str(ann), "analytics"): ("granted", True),
        (str(bob), "personalization"): ("granted", False),
    }


def test_unmerge_hooks_run_with_both_profiles(source: Any) -> None:
    ann, bob = two_people(source)
    merge = merge_them(source)
    seen: list[Any] = []
    hooks.register_unmerge_hook("test-spy", lambda ws, pairs: seen.append((ws, list(pairs))))
    try:
        unmerge(merge)
    finally:
        hooks._unmerge_hooks.pop("test-spy")
    assert seen == [(source.workspace.pk, [(ann, bob)])]


def test_a_steward_merge_unmerges_to_exactly_what_was(source: Any) -> None:
    ann, bob = two_people(source)
    before = {p: snapshot(p) for p in (ann, bob)}
    merge = services.profiles_merge(
        workspace=source.workspace, profile_ids=(bob, ann), rule="probabilistic: 0.93",
        actor=None, evidence={"probability": 0.93},
    )  # fmt: skip
    unmerge(merge)
    assert {p: snapshot(p) for p in (ann, bob)} == before


def test_merge_and_unmerge_write_no_personal_data_in_the_clear(source: Any, owner: Any) -> None:
    # given: sentinel personal data on both sides
    sentinel = "zq-unmerge-sentinel"
    send(source, msg("identify", anonymous_id="s-1", traits={"email": f"{sentinel}@example.com",
                                                             "name": sentinel}))  # fmt: skip
    send(source, msg("identify", anonymous_id="s-2", traits={"phone": "+33612345678",
                                                             "first_name": sentinel}))  # fmt: skip
    send(source, msg("alias", anonymous_id="s-1", previous_id="s-2"))
    merge = Merge.objects.get()
    # when
    unmerge(merge, owner)
    merge2 = services.profiles_merge(
        workspace=source.workspace, profile_ids=(merge.survivor_id, merge.absorbed_id),
        rule="admin", actor=owner, evidence={"agreement": {"first_name": 2}},
    )  # fmt: skip
    unmerge(merge2, owner)
    # then: neither the ledger nor the audit trail holds the sentinel
    log = get_logentry_model()
    for entry in log.objects.all():
        text = f"{entry.changes} {entry.additional_data} {entry.object_repr}"
        assert sentinel not in text and "33612345678" not in text
    for row in Merge.objects.values():
        assert sentinel not in repr(row)
