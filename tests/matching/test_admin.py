"""The stewards' review queue: list, side-by-side comparison (masked), audited reveal, accept
(merge), reject, bulk actions, and workspace-scoped permissions."""

from __future__ import annotations

from typing import Any

import pytest
from auditlog import get_logentry_model
from django.test import Client
from django.urls import reverse

from matching import services
from matching.enums import CandidateStatus
from matching.models import MatchCandidate, MatchRun, MatchSettings
from profiles import selectors as profile_selectors
from profiles import services as profile_services
from profiles.enums import ProfileStatus, WorkspaceRole
from profiles.models import Merge, Profile
from tests.matching.helpers import add_people, add_person, crm_source
from tests.profiles.factories import UserFactory

LogEntry = get_logentry_model()
SENTINELS = ("Quillonova", "Zephyrine", "1 Sentinel Way", "Xanthorpe")


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _duplicates(workspace: Any) -> None:
    source = crm_source(workspace)
    add_people(source)
    for first, last in (("Zephyrine", "Quillonova"), ("Zephyrina", "Quillonova"),
                        ("Robert", "Fairbanks")):  # fmt: skip
        add_person(
            source, first_name=first, last_name=last,
            birthday="1980-01-02" if last == "Quillonova" else "1982-11-02",
            postcode="99999" if last == "Quillonova" else "10001",
            city="Xanthorpe" if last == "Quillonova" else "New York",
            address="1 Sentinel Way" if last == "Quillonova" else "400 Pine Avenue",
        )  # fmt: skip


@pytest.fixture
def candidates(workspace: Any) -> list[MatchCandidate]:
    """Two proposed candidates in acme: the sentinel person twice, Robert twice."""
    _duplicates(workspace)
    services.match_run(workspace=workspace)
    found = list(MatchCandidate.objects.filter(workspace=workspace).order_by("-probability"))
    assert len(found) == 2
    return found


@pytest.fixture
def other_candidate(other_workspace: Any) -> MatchCandidate:
    _duplicates(other_workspace)
    services.match_run(workspace=other_workspace)
    return MatchCandidate.objects.filter(workspace=other_workspace).first()  # type: ignore[return-value]


@pytest.fixture
def reviewer(workspace: Any) -> Any:
    """A steward who views profiles and decides merges (merge_profiles), nothing else."""
    user = UserFactory(username="reviewer", is_staff=True)
    profile_services.steward_grant_roles(
        workspace=workspace,
        user=user,
        roles=[WorkspaceRole.VIEW_PROFILES, WorkspaceRole.MERGE_PROFILES],
    )
    return user


def url(name: str, *args: Any) -> str:
    return reverse(f"admin:matching_matchcandidate_{name}", args=args)


def test_the_queue_lists_proposed_candidates_most_probable_first_without_values(
    member: Any, candidates: list[MatchCandidate], other_candidate: MatchCandidate
) -> None:
    # when
    response = client_for(member).get(url("changelist"))

    # then
    assert response.status_code == 200
    shown = list(response.context["cl"].result_list)
    assert shown == sorted(candidates, key=lambda c: -c.probability)
    assert other_candidate not in shown
    for sentinel in SENTINELS:
        assert sentinel.encode() not in response.content


def test_the_queue_hides_reviewed_candidates_unless_asked(
    member: Any, candidates: list[MatchCandidate]
) -> None:
    # given
    services.candidate_reject(candidate=candidates[0], actor=member)

    # when
    queue = client_for(member).get(url("changelist"))
    everything = client_for(member).get(url("changelist") + "?status=all")

    # then
    assert list(queue.context["cl"].result_list) == [candidates[1]]
    assert len(everything.context["cl"].result_list) == 2


def test_the_comparison_page_shows_levels_and_weights_with_personal_data_masked(
    member: Any, candidates: list[MatchCandidate]
) -> None:
    # when
    response = client_for(member).get(url("change", candidates[0].pk))

    # then
    assert response.status_code == 200
    rows = {row.field: row for row in response.context["rows"]}
    assert rows["first_name"].left == rows["first_name"].right == profile_selectors.MASK
    assert rows["last_name"].level == "exact"
    assert rows["email"].level == "missing"
    assert rows["postcode"].group == "location"
    for sentinel in SENTINELS:
        assert sentinel.encode() not in response.content
    # member holds view_profiles only: no reveal, and no accept or reject
    assert not response.context["can_reveal"]
    assert not response.context["can_review"]
    assert b"Accept: same person (merge)" not in response.content


def test_reveal_needs_reveal_pii_and_a_reason_and_is_audited_per_profile(
    owner: Any, member: Any, candidates: list[MatchCandidate]
) -> None:
    # given: the sentinel person's pair (first names differ by a letter)
    candidate = next(c for c in candidates if c.comparison["first_name"]["level"] != 0)
    before = LogEntry.objects.filter(action=LogEntry.Action.ACCESS).count()

    # when
    denied = client_for(member).post(url("reveal", candidate.pk), {"reason": "checking"})
    no_reason = client_for(owner).post(url("reveal", candidate.pk), {"reason": ""})
    revealed = client_for(owner).post(url("reveal", candidate.pk), {"reason": "ticket 42"})

    # then
    assert denied.status_code == 403
    assert no_reason.status_code == 200 and no_reason.context["revealed"] is None
    assert revealed.status_code == 200
    assert b"Zephyrine" in revealed.content and b"Zephyrina" in revealed.content
    entries = LogEntry.objects.filter(action=LogEntry.Action.ACCESS).order_by("pk")[before:]
    assert sorted(e.object_pk for e in entries) == sorted(
        [str(candidate.profile_a_id), str(candidate.profile_b_id)]
    )
    assert {e.additional_data["reason"] for e in entries} == {"ticket 42"}
    assert all(e.actor == owner for e in entries)


def test_accept_merges_the_two_profiles(reviewer: Any, candidates: list[MatchCandidate]) -> None:
    # given
    candidate = candidates[0]

    # when
    response = client_for(reviewer).post(url("accept", candidate.pk))

    # then
    assert response.status_code == 302
    candidate.refresh_from_db()
    assert candidate.status == CandidateStatus.ACCEPTED
    assert candidate.reviewer == reviewer
    assert candidate.merge_id is not None
    merge = Merge.objects.get(pk=candidate.merge_id)
    assert {merge.survivor_id, merge.absorbed_id} == {candidate.profile_a_id,
                                                      candidate.profile_b_id}  # fmt: skip
    assert merge.rule == services.ACCEPT_RULE
    assert merge.evidence["comparison"] == candidate.comparison
    assert Profile.objects.get(pk=merge.absorbed_id).status == ProfileStatus.MERGED


def test_accept_is_post_only(reviewer: Any, candidates: list[MatchCandidate]) -> None:
    # when
    response = client_for(reviewer).get(url("accept", candidates[0].pk))

    # then
    assert response.status_code == 405
    assert not Merge.objects.exists()


def test_reject_marks_the_pair_rejected_without_merging(
    reviewer: Any, candidates: list[MatchCandidate]
) -> None:
    # when
    response = client_for(reviewer).post(url("reject", candidates[0].pk))

    # then
    assert response.status_code == 302
    candidates[0].refresh_from_db()
    assert (candidates[0].status, candidates[0].reviewer) == (CandidateStatus.REJECTED, reviewer)
    assert not Merge.objects.exists()


def test_a_reviewed_candidate_cannot_be_reviewed_again(
    reviewer: Any, candidates: list[MatchCandidate]
) -> None:
    # given
    client = client_for(reviewer)
    client.post(url("reject", candidates[0].pk))

    # when
    response = client.post(url("accept", candidates[0].pk), follow=True)

    # then
    assert b"reviewed already" in response.content
    assert not Merge.objects.exists()


def test_accepting_a_candidate_whose_profile_was_merged_since_is_refused(
    reviewer: Any, workspace: Any, candidates: list[MatchCandidate]
) -> None:
    # given: one side of the candidate was merged into an older profile meanwhile
    candidate = candidates[0]
    oldest = Profile.objects.filter(workspace=workspace).order_by("created_at", "pk").first()
    assert oldest is not None
    profile_services.profiles_merge(
        workspace=workspace, profile_ids=(oldest.pk, candidate.profile_b_id), rule="test",
        actor=reviewer, evidence={},
    )  # fmt: skip

    # when
    response = client_for(reviewer).post(url("accept", candidate.pk), follow=True)

    # then
    assert b"merged or erased since" in response.content
    candidate.refresh_from_db()
    assert candidate.status == CandidateStatus.PROPOSED
    assert Merge.objects.count() == 1


def test_bulk_accept_and_reject(reviewer: Any, candidates: list[MatchCandidate]) -> None:
    # given
    client = client_for(reviewer)

    # when
    client.post(url("changelist"), {"action": "reject_selected",
                                     "_selected_action": [candidates[1].pk]})  # fmt: skip
    client.post(url("changelist"), {"action": "accept_selected",
                                     "_selected_action": [candidates[0].pk]})  # fmt: skip

    # then
    statuses = dict(MatchCandidate.objects.values_list("pk", "status"))
    assert statuses == {
        candidates[0].pk: CandidateStatus.ACCEPTED,
        candidates[1].pk: CandidateStatus.REJECTED,
    }
    assert Merge.objects.count() == 1


def test_the_review_buttons_show_for_a_reviewer(
    reviewer: Any, candidates: list[MatchCandidate]
) -> None:
    # when
    response = client_for(reviewer).get(url("change", candidates[0].pk))
    # then
    assert response.context["can_review"]
    assert b"Accept: same person (merge)" in response.content


def test_a_member_who_only_views_profiles_cannot_accept_or_reject(
    member: Any, candidates: list[MatchCandidate]
) -> None:
    # given
    client = client_for(member)
    # when
    accept = client.post(url("accept", candidates[0].pk))
    reject = client.post(url("reject", candidates[1].pk))
    bulk = client.post(
        url("changelist"),
        {"action": "accept_selected", "_selected_action": [str(c.pk) for c in candidates]},
    )
    # then: refused, and both pairs are still proposed and unmerged
    assert (accept.status_code, reject.status_code) == (403, 403)
    assert bulk.status_code in (200, 302)
    for candidate in candidates:
        candidate.refresh_from_db()
        assert candidate.status == CandidateStatus.PROPOSED
    assert not Merge.objects.exists()


def test_an_outsider_sees_nothing_and_changes_nothing(
    outsider: Any, candidates: list[MatchCandidate]
) -> None:
    # given
    client = client_for(outsider)
    target = candidates[0]

    # when
    page = client.get(url("change", target.pk))
    accept = client.post(url("accept", target.pk))
    reject = client.post(url("reject", target.pk))
    reveal = client.post(url("reveal", target.pk), {"reason": "curious"})
    client.post(url("changelist"), {"action": "accept_selected",
                                    "_selected_action": [c.pk for c in candidates]})  # fmt: skip
    listing = client.get(url("changelist"))

    # then
    assert (page.status_code, accept.status_code, reject.status_code, reveal.status_code) == (
        404, 404, 404, 404,
    )  # fmt: skip
    assert list(listing.context["cl"].result_list) == []
    assert set(MatchCandidate.objects.values_list("status", flat=True)) == {
        CandidateStatus.PROPOSED
    }
    assert not Merge.objects.exists()
    assert not LogEntry.objects.filter(action=LogEntry.Action.ACCESS, actor=outsider).exists()


def test_a_user_without_a_role_cannot_open_the_queue(
    db: Any, candidates: list[MatchCandidate]
) -> None:
    # given
    nobody = UserFactory(username="nobody", is_staff=True)

    # when
    response = client_for(nobody).get(url("changelist"))

    # then
    assert response.status_code == 403


def test_settings_are_validated_on_save(owner: Any, workspace: Any) -> None:
    # given
    settings = services.match_settings_ensure(workspace=workspace)
    client = client_for(owner)
    page = reverse("admin:matching_matchsettings_change", args=[settings.pk])
    form = {
        "review_threshold": "0.6",
        "auto_merge_threshold": "0.4",
        "fields": '[{"name": "x", "source": "trait", "key": "x", "comparator": "exact"}]',
        "blocking": '[{"keys": ["x"]}]',
        "name_swap": "[]",
        "max_block_size": "1000",
        "u_sample_pairs": "300000",
        "parameters_mode": "estimated",
        "parameters": "{}",
    }

    # when
    refused = client.post(page, form)
    accepted = client.post(page, {**form, "auto_merge_threshold": "0.99"})

    # then
    assert refused.status_code == 200
    assert b"auto_merge_threshold" in refused.content
    assert accepted.status_code == 302
    settings.refresh_from_db()
    assert (settings.review_threshold, settings.auto_merge_threshold) == (0.6, 0.99)
    assert settings.fields[0]["name"] == "x"


@pytest.mark.parametrize(("who", "may"), [("member", False), ("owner", True)])
def test_only_a_data_manager_changes_settings_or_starts_a_run(
    who: str,
    may: bool,
    request: pytest.FixtureRequest,
    workspace: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # given: the member views profiles only; the owner also holds manage_data
    user = request.getfixturevalue(who)
    _duplicates(workspace)
    settings = services.match_settings_ensure(workspace=workspace)
    client = client_for(user)
    page = reverse("admin:matching_matchsettings_change", args=[settings.pk])
    # when
    edit = client.get(page)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("admin:matching_matchsettings_changelist"),
            {"action": "run_full", "_selected_action": [str(settings.pk)]},
        )
    # then: the member sees the settings read-only and starts nothing
    assert edit.status_code == 200
    assert ('name="review_threshold"' in edit.content.decode()) is may
    assert MatchRun.objects.filter(workspace=workspace).exists() is may


def test_an_outsider_cannot_change_another_workspaces_settings(
    outsider: Any, workspace: Any
) -> None:
    # given
    settings = services.match_settings_ensure(workspace=workspace)
    page = reverse("admin:matching_matchsettings_change", args=[settings.pk])

    # when
    response = client_for(outsider).post(page, {"review_threshold": "0.9"})

    # then
    assert response.status_code in (302, 403, 404)
    assert MatchSettings.objects.get(pk=settings.pk).review_threshold == 0.5


def test_a_member_with_only_reveal_pii_elsewhere_cannot_reveal_here(
    workspace: Any, other_workspace: Any, candidates: list[MatchCandidate]
) -> None:
    # given: view_profiles on acme, reveal_pii on globex only
    user = UserFactory(username="mixed", is_staff=True)
    profile_services.steward_grant_roles(
        workspace=workspace, user=user, roles=[WorkspaceRole.VIEW_PROFILES]
    )
    profile_services.steward_grant_roles(
        workspace=other_workspace, user=user, roles=[WorkspaceRole.REVEAL_PII]
    )

    # when
    response = client_for(user).post(url("reveal", candidates[0].pk), {"reason": "x"})

    # then
    assert response.status_code == 403


def test_the_runs_list_says_how_many_profiles_each_run_decrypted(
    workspace: Any, owner: Any, candidates: list[MatchCandidate]
) -> None:
    # given: the fixture's full run, then an incremental one with one new profile
    add_person(crm_source(workspace), first_name="Tobias", last_name="Lindquist",
               birthday="1965-01-30", postcode="98101")  # fmt: skip
    incremental = services.match_run(workspace=workspace).run
    # when
    page = client_for(owner).get(reverse("admin:matching_matchrun_changelist"))
    # then
    content = page.content.decode()
    assert page.status_code == 200
    assert "column-profiles_decrypted" in content
    assert incremental.profiles_decrypted < incremental.profiles_considered
    assert f'<td class="field-profiles_decrypted">{incremental.profiles_decrypted}</td>' in content
