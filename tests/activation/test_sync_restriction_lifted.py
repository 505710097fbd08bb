"""A restriction of processing lifted (GDPR Art. 18): in its transaction the person becomes a
member of their audiences again (every audience, realtime or not) and is marked for the syncs
of those audiences (activation.regrants), so the next incremental run sends them again, also
when the restriction had kept them from being sent without ending their membership."""

from __future__ import annotations

import json
from typing import Any

import pytest

from activation import services
from activation.models import AudienceMembership, SyncRecheck
from governance import services as governance
from profiles import selectors as profile_selectors
from profiles import services as profile_services
from profiles.models import Profile
from tests.activation.sync_helpers import Receiver, grant, person, run_sync, webhook
from tests.governance.request_helpers import in_progress

pytestmark = pytest.mark.django_db


def _bodies(receiver: Receiver, start: int = 0) -> list[tuple[str, list[str]]]:
    found = []
    for hit in receiver.hits[start:]:
        body = json.loads(hit.body)
        found.append((body["type"], [r["userId"] for r in body["records"]]))
    return found


def _audience(workspace: Any, key: str = "buyers", country: str | None = None) -> Any:
    """An audience (not realtime) of everyone with a country, or with this one."""
    if country is None:
        rules: dict[str, Any] = {"trait": {"key": "country", "op": "exists"}}
    else:
        rules = {"trait": {"key": "country", "op": "=", "value": country}}
    return services.audience_create(workspace=workspace, key=key, name=key.title(), rules=rules)


def _members(aud: Any) -> set[Any]:
    return set(AudienceMembership.objects.filter(audience=aud).values_list("profile_id", flat=True))


def test_a_lifted_restriction_makes_the_person_a_member_and_the_next_run_sends_them(
    workspace: Any, owner: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: ada and bob in an audience (not realtime, refreshed fully), both sent
    capture = django_capture_on_commit_callbacks
    ada, bob = person(workspace), person(workspace)
    grant(workspace, ada, "advertising")
    grant(workspace, bob, "advertising")
    buyers = _audience(workspace)
    assert buyers.realtime is False
    services.audience_refresh(audience=buyers)
    sync = services.sync_create(
        audience=buyers,
        destination=webhook(workspace, receiver.url),
        mode="incremental",
        interval_minutes=0,
    )
    assert run_sync(sync, capture).sent == 2
    # ...then ada asked to restrict processing: she left the audience and was taken back
    dsr = in_progress(workspace, owner, request_type="restriction", contact=ada.email)
    with capture(execute=True):
        governance.request_fulfil(request=dsr, actor=owner)
    assert _members(buyers) == {bob.profile_id}
    assert _bodies(receiver)[-1] == ("remove", [ada.user_id])
    after = run_sync(sync, capture)
    assert (after.sent, after.removed) == (0, 0)
    hits = len(receiver.hits)

    # when: a steward lifts the restriction
    with capture(execute=True):
        governance.request_restriction_lift(
            request=dsr, actor=owner, reason="Accuracy verified (ticket 4711)."
        )

    # then: she is a member again at once, marked for the sync
    assert _members(buyers) == {ada.profile_id, bob.profile_id}
    assert list(SyncRecheck.objects.values_list("sync_id", "profile_id")) == [
        (sync.pk, ada.profile_id)
    ]
    # ...and the next incremental run sends her, her alone
    run = run_sync(sync, capture)
    assert (run.status, run.sent, run.removed, run.excluded) == ("succeeded", 1, 0, {})
    assert _bodies(receiver, hits) == [("add", [ada.user_id])]
    assert not SyncRecheck.objects.exists()


def test_a_member_the_restriction_kept_from_being_sent_is_sent_once_it_is_lifted(
    workspace: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    # given: ada, a member, restricted behind the services' back (her membership stayed), so
    # the first run excluded her and its cursor passed her entry
    capture = django_capture_on_commit_callbacks
    ada = person(workspace)
    grant(workspace, ada, "advertising")
    buyers = _audience(workspace)
    services.audience_refresh(audience=buyers)
    Profile.objects.filter(pk=ada.profile_id).update(restricted=True)
    sync = services.sync_create(
        audience=buyers,
        destination=webhook(workspace, receiver.url),
        mode="incremental",
        interval_minutes=0,
    )
    first = run_sync(sync, capture)
    assert (first.sent, first.excluded) == (0, {"restricted": 1})
    assert run_sync(sync, capture).total == 0

    # when: the restriction is lifted (no membership change: she is a member already)
    profile = profile_selectors.profile_get(workspace=workspace, profile_id=ada.profile_id)
    with capture(execute=True):
        profile_services.profile_restrict(profile=profile, restricted=False)

    # then: the mark alone gets her sent by the next incremental run
    assert _members(buyers) == {ada.profile_id}
    run = run_sync(sync, capture)
    assert (run.status, run.sent) == ("succeeded", 1)
    assert _bodies(receiver) == [("add", [ada.user_id])]


def test_lifting_marks_only_the_syncs_of_audiences_the_person_is_in(
    workspace: Any, receiver: Receiver
) -> None:
    # given: ada and bob restricted; a sync of an audience bob alone may be in
    ada, bob = person(workspace, country="GB"), person(workspace, country="FR")
    everyone = _audience(workspace, key="everyone")
    french = _audience(workspace, key="french", country="FR")
    hook = webhook(workspace, receiver.url)
    to_everyone = services.sync_create(audience=everyone, destination=hook, mode="incremental")
    services.sync_create(audience=french, destination=hook, mode="incremental")
    for who in (ada, bob):
        profile_services.profile_restrict(
            profile=profile_selectors.profile_get(workspace=workspace, profile_id=who.profile_id),
            restricted=True,
        )

    # when: ada's restriction is lifted
    profile_services.profile_restrict(
        profile=profile_selectors.profile_get(workspace=workspace, profile_id=ada.profile_id),
        restricted=False,
    )

    # then: she is in the audience that matches her, marked for its sync only; bob stays out
    assert _members(everyone) == {ada.profile_id}
    assert _members(french) == set()
    assert list(SyncRecheck.objects.values_list("sync_id", "profile_id")) == [
        (to_everyone.pk, ada.profile_id)
    ]
