"""profiles.selectors.profiles_match_fields and profile_survivor_ids: what matching reads."""

from __future__ import annotations

from typing import Any

import pytest

from cdp.core.crypto import envelope
from profiles import selectors, services
from profiles.models import DataKey
from tests.matching.helpers import add_person, crm_source
from tests.profiles.ingest_helpers import msg


def test_surviving_traits_and_every_identifier_are_decrypted_in_bulk(
    workspace: Any, django_assert_max_num_queries: Any
) -> None:
    # given: two profiles; the first is told a new last name later, and has a plain attribute
    source = crm_source(workspace)
    first = add_person(source, crm_id="crm-1", first_name="Ada", last_name="Byron", plan="gold")
    services.ingest_messages(
        source=source,
        messages=[msg("identify", traits={"last_name": "King"},
                      context={"externalIds": [{"id": "crm-1", "type": "crm_id"}]})],
    )  # fmt: skip
    second = add_person(source, crm_id="crm-2", first_name="Grace")
    envelope.clear_data_key_cache()

    # when: a bounded number of queries, whatever the number of profiles and keys
    with django_assert_max_num_queries(6):
        found = selectors.profiles_match_fields(
            workspace=workspace,
            profile_ids=[first.pk, second.pk],
            trait_keys=["first_name", "last_name", "plan"],
            identifier_types=["crm_id"],
        )

    # then
    assert found[first.pk] == (
        {"first_name": "Ada", "last_name": "King", "plan": "gold"},
        {"crm_id": ["crm-1"]},
    )
    assert found[second.pk] == ({"first_name": "Grace"}, {"crm_id": ["crm-2"]})


def test_values_under_a_destroyed_key_are_left_out(workspace: Any) -> None:
    # given
    source = crm_source(workspace)
    gone = add_person(source, crm_id="crm-9", first_name="Erased")
    services.data_keys_destroy(
        key_ids=DataKey.objects.filter(profile=gone).values_list("pk", flat=True)
    )

    # when
    found = selectors.profiles_match_fields(
        workspace=workspace, profile_ids=[gone.pk], trait_keys=["first_name"],
        identifier_types=["crm_id"],
    )  # fmt: skip

    # then
    assert found == {gone.pk: ({}, {})}


def test_other_workspaces_profiles_are_not_read(workspace: Any, other_workspace: Any) -> None:
    # given
    theirs = add_person(crm_source(other_workspace), first_name="Outsider")

    # when
    found = selectors.profiles_match_fields(
        workspace=workspace, profile_ids=[theirs.pk], trait_keys=["first_name"],
        identifier_types=[],
    )  # fmt: skip

    # then
    assert found == {theirs.pk: ({}, {})}


def test_a_batch_is_bounded(workspace: Any) -> None:
    with pytest.raises(ValueError, match="at most"):
        selectors.profiles_match_fields(
            workspace=workspace,
            profile_ids=range(selectors.MATCH_BATCH_MAX + 1),
            trait_keys=["first_name"],
            identifier_types=[],
        )


def test_survivors_follow_merge_chains(workspace: Any, owner: Any) -> None:
    # given: c merged into b, b merged into a
    source = crm_source(workspace)
    a, b, c = (add_person(source, first_name=n) for n in ("A", "B", "C"))
    services.profiles_merge(workspace=workspace, profile_ids=(b.pk, c.pk), rule="t", actor=owner,
                            evidence={})  # fmt: skip
    services.profiles_merge(workspace=workspace, profile_ids=(a.pk, b.pk), rule="t", actor=owner,
                            evidence={})  # fmt: skip

    # when
    survivors = selectors.profile_survivor_ids(workspace=workspace, profile_ids=[a.pk, b.pk, c.pk])

    # then
    assert survivors == {a.pk: a.pk, b.pk: a.pk, c.pk: a.pk}
