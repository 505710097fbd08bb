"""The demo's near-duplicates land in the review queue, once: a full run, then an incremental
one for the record that comes later."""

from __future__ import annotations

from typing import Any

from matching.demo import PAIRS, demo_seed
from matching.enums import RunKind
from matching.models import MatchCandidate, MatchRun


def test_the_demo_fills_the_review_queue_with_its_near_duplicates_once(workspace: Any) -> None:
    # when
    lines = demo_seed(workspace=workspace)
    again = demo_seed(workspace=workspace)

    # then: every near-duplicate pair is proposed, most probable first; below them the
    # household (same surname and address, another first name) for a steward to reject
    proposed = list(MatchCandidate.objects.filter(workspace=workspace).order_by("-probability"))
    assert len(proposed) == len(PAIRS) + 1
    assert all(c.probability > 0.99 for c in proposed[: len(PAIRS)])
    assert sorted(c.comparison["first_name"]["label"] for c in proposed[: len(PAIRS)]) == [
        "first and last name swapped", "nickname", "nickname", "nickname",
    ]  # fmt: skip
    household = proposed[-1].comparison
    assert (household["first_name"]["label"], household["address"]["label"]) == (
        "different", "exact",
    )  # fmt: skip
    runs = list(MatchRun.objects.order_by("started_at"))
    assert [r.kind for r in runs] == [RunKind.FULL, RunKind.INCREMENTAL]
    assert "4 candidate pairs" in lines[0]
    # the last loyalty record came later: the incremental run decrypted it and its partners
    later = runs[1]
    assert (later.profiles_changed, later.proposed) == (1, 1)
    assert later.profiles_decrypted < later.profiles_considered
    assert f"decrypted {later.profiles_decrypted} of {later.profiles_considered}" in lines[1]
    assert again == []


def test_the_near_duplicates_share_no_phone_with_the_demo_shoppers() -> None:
    import phonenumbers

    from matching.demo import SINGLES

    # given: the synthetic shoppers' numbers (+1 415-555-0000 to -9999), loaded before them
    # by seed_demo: a shared number would merge a near-duplicate into a shopper outright
    rows = [row for pair in PAIRS for row in pair] + SINGLES
    numbers = [
        phonenumbers.format_number(
            phonenumbers.parse(row["phone"], "US"), phonenumbers.PhoneNumberFormat.E164
        )
        for row in rows
        if "phone" in row
    ]
    # then
    assert numbers
    assert not [n for n in numbers if n.startswith("+1415555")]
