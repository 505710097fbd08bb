"""manage.py rebuild_identities: clusters recomputed from stored links under changed rules."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from profiles import services
from profiles.models import IdentityRule, Merge, MergeConflict, Profile
from tests.profiles.ingest_helpers import msg


@pytest.fixture
def source(workspace: Any) -> Any:
    return services.source_create(workspace=workspace, name="Web")


def run(*args: str) -> str:
    out = StringIO()
    call_command("rebuild_identities", *args, stdout=out)
    return out.getvalue()


def test_unchanged_rules_rebuild_to_the_same_profiles(source: Any) -> None:
    # given
    services.ingest_messages(
        source=source,
        messages=[
            msg(user_id="u-1", anonymous_id="a-1"),
            msg(user_id="u-1", anonymous_id="a-2"),
            msg(user_id="u-2", anonymous_id="a-3"),
        ],
    )
    # when
    out = run("--workspace", "acme")
    # then
    assert "5 identities, 3 links (0 refused by the rules, 0 identities blocked)" in out
    assert "2 clusters over 2 profiles" in out
    assert "merged: 0 profiles into 0" in out
    assert "would split: 0 profiles" in out


def test_a_newly_blocked_value_would_split_the_profile_it_joined(source: Any) -> None:
    # given: a kiosk's anonymous id joined two customers before anyone noticed
    IdentityRule.objects.filter(workspace=source.workspace, identifier_type="user_id").update(
        max_per_profile=2
    )
    services.ingest_messages(
        source=source,
        messages=[
            msg(user_id="u-1", anonymous_id="kiosk"),
            msg(user_id="u-2", anonymous_id="kiosk"),
        ],
    )
    assert Profile.objects.filter(status="active").count() == 1
    rule = IdentityRule.objects.get(workspace=source.workspace, identifier_type="anonymous_id")
    rule.blocked_values = [*rule.blocked_values, "kiosk"]
    rule.save()
    # when
    out = run("--workspace", "acme")
    # then
    assert "1 identities blocked" in out
    assert "3 clusters over 1 profiles" in out
    assert "would split: 1 profiles (recorded as merge conflicts)" in out
    conflict = MergeConflict.objects.get(identifier_type="rebuild")
    assert conflict.reason == "rebuild: under the current rules these identities form 3 profiles"


def test_a_relaxed_limit_merges_profiles_that_were_kept_apart(source: Any) -> None:
    # given: the default user_id limit refused to join u-2 to u-1's shared device
    services.ingest_messages(
        source=source,
        messages=[
            msg(user_id="u-1", anonymous_id="shared"),
            msg(user_id="u-2", anonymous_id="shared"),
        ],
    )
    assert Profile.objects.filter(status="active").count() == 2
    IdentityRule.objects.filter(workspace=source.workspace, identifier_type="user_id").update(
        max_per_profile=2
    )
    # when: a dry run first
    dry = run("--workspace", "acme", "--dry-run")
    # then: reported, nothing changed
    assert "would merge: 1 profiles into 1" in dry
    assert Merge.objects.count() == 0
    # when: applied
    applied = run("--workspace", "acme")
    # then
    assert "merged: 1 profiles into 1" in applied
    [survivor] = Profile.objects.filter(status="active")
    assert sorted(survivor.identities.values_list("identifier_type", flat=True)) == [
        "anonymous_id",
        "user_id",
        "user_id",
    ]
    merge = Merge.objects.get()
    assert merge.rule == "rebuild: linked under the current rules"
    assert run("--workspace", "acme", "--dry-run").count("would merge: 0 profiles") == 1


def test_unknown_workspace_is_a_clear_error(db: Any) -> None:
    # when / then
    with pytest.raises(CommandError, match="No such workspace"):
        run("--workspace", "nope")
