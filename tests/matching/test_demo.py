"""The demo's near-duplicates land in the review queue, once."""

from __future__ import annotations

from typing import Any

from matching.demo import PAIRS, demo_seed
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
    assert MatchRun.objects.count() == 1
    assert "5 candidate pairs" in lines[0]
    assert again == []
