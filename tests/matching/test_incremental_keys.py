"""An incremental run decrypts only the changed profiles and the profiles sharing a block with
them, found by the stored keyed hashes of every profile's blocking keys (`MatchKeys`), with
term frequencies and block sizes counted over those hashes. It must propose exactly what an
incremental run that decrypts everyone proposes, with the same probabilities; without keys
for the current settings it decrypts everyone, as before, and stores them."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import transaction

from bench.matching_population import ID_TYPES, population
from matching import services
from matching.enums import CandidateStatus, RunKind
from matching.models import MatchCandidate, MatchKeys, MatchRun, MatchSettings
from profiles import services as profile_services
from profiles.contracts import InboundMessage
from profiles.enums import SourceKind, Survivorship
from profiles.models import Profile, TraitSchema
from tests.matching.helpers import add_person, crm_source

SENTINEL_NAME = "Zephyrine"


def _identify(record: Any, index: int, **traits: Any) -> InboundMessage:
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=index)
    return InboundMessage(
        type="identify",
        message_id=f"keys-{index}-{len(traits)}",
        received_at=at,
        timestamp=at,
        traits={**record.traits, **traits},
        context={
            "externalIds": [
                {"id": record.external_id, "type": ID_TYPES[record.source], "collection": "users"}
            ]
        },
    )


def _import(workspace: Any, sources: dict[str, Any], records: list[Any], start: int = 0) -> None:
    for name, source in sources.items():
        messages = [_identify(r, start + i) for i, r in enumerate(records) if r.source == name]
        if messages:
            profile_services.ingest_messages(source=source, messages=messages)


@pytest.fixture
def world(workspace: Any) -> tuple[dict[str, Any], list[Any]]:
    """About 300 records of 200 people, matched once in full (keys stored)."""
    sources = {
        name: profile_services.source_create(workspace=workspace, name=name, kind=SourceKind.IMPORT)
        for name in ID_TYPES
    }
    records = population(200, seed=11)
    _import(workspace, sources, records[:-40])
    services.match_run(workspace=workspace, full=True)
    return sources, records


def _proposed(run: MatchRun) -> dict[tuple[Any, Any], float]:
    return {
        (a, b): p
        for a, b, p in MatchCandidate.objects.filter(
            workspace=run.workspace, status=CandidateStatus.PROPOSED
        ).values_list("profile_a_id", "profile_b_id", "probability")
    }


def _both_ways(workspace: Any) -> tuple[MatchRun, dict[Any, float], MatchRun, dict[Any, float]]:
    """The incremental run from the stored keys, then (from the same state) one that finds no
    keys and decrypts everyone."""
    point = transaction.savepoint()
    keyed = services.match_run(workspace=workspace).run
    keyed_found = _proposed(keyed)
    transaction.savepoint_rollback(point)
    MatchKeys.objects.filter(workspace=workspace).delete()
    everyone = services.match_run(workspace=workspace).run
    return keyed, keyed_found, everyone, _proposed(everyone)


def _change_some(workspace: Any, sources: dict[str, Any], records: list[Any]) -> None:
    """New records (the last 40) and changed names and postcodes on some old ones."""
    _import(workspace, sources, records[-40:], start=10_000)
    rng = random.Random(5)
    for k, record in enumerate(rng.sample(records[:-40], 25)):
        changes = {"last_name": SENTINEL_NAME} if k % 2 else {"postcode": "94107"}
        profile_services.ingest_messages(
            source=sources[record.source], messages=[_identify(record, 20_000 + k, **changes)]
        )


def test_the_keyed_run_decrypts_fewer_and_proposes_the_same(
    workspace: Any, world: tuple[dict[str, Any], list[Any]]
) -> None:
    # given
    sources, records = world
    active = Profile.objects.filter(workspace=workspace, merged_into__isnull=True).count()
    assert MatchKeys.objects.filter(workspace=workspace).count() == active
    _change_some(workspace, sources, records)
    # when
    keyed, keyed_found, everyone, everyone_found = _both_ways(workspace)
    # then: the same proposals, the same probabilities
    assert keyed.kind == everyone.kind == RunKind.INCREMENTAL
    assert keyed.stats["decrypted"] == "changed and partners"
    assert everyone.stats["decrypted"] == "all"
    assert keyed.profiles_changed == everyone.profiles_changed > 40
    assert keyed.candidate_pairs == everyone.candidate_pairs > 0
    assert keyed_found.keys() == everyone_found.keys()
    assert keyed_found == pytest.approx(everyone_found, rel=1e-9)
    # and it decrypted only the changed profiles and their block partners
    assert everyone.profiles_decrypted == everyone.profiles_considered
    assert keyed.profiles_changed <= keyed.profiles_decrypted < everyone.profiles_decrypted


def test_blocks_too_big_in_the_whole_population_make_no_pairs_either_way(
    workspace: Any, world: tuple[dict[str, Any], list[Any]]
) -> None:
    # given: blocks of more than 3 profiles are skipped (first letters, common years, ...)
    sources, records = world
    MatchSettings.objects.filter(workspace=workspace).update(max_block_size=3)
    services.match_run(workspace=workspace, full=True)
    _change_some(workspace, sources, records)
    # when
    keyed, keyed_found, everyone, everyone_found = _both_ways(workspace)
    # then
    assert keyed.stats["decrypted"] == "changed and partners"
    assert keyed.candidate_pairs == everyone.candidate_pairs
    assert keyed_found == pytest.approx(everyone_found, rel=1e-9)


def test_new_settings_make_the_next_run_decrypt_everyone_and_store_new_keys(
    workspace: Any, world: tuple[dict[str, Any], list[Any]]
) -> None:
    # given: another blocking rule; the stored keys were made under the old ones
    sources, records = world
    settings = MatchSettings.objects.get(workspace=workspace)
    old = set(MatchKeys.objects.values_list("fingerprint", flat=True))
    services.match_settings_update(
        settings=settings, blocking=[*settings.blocking, {"keys": ["city"]}]
    )
    _change_some(workspace, sources, records)
    # when
    first = services.match_run(workspace=workspace).run
    second_changes = records[:3]
    _import(workspace, sources, second_changes, start=30_000)
    for record in second_changes:
        profile_services.ingest_messages(
            source=sources[record.source],
            messages=[_identify(record, 31_000, first_name="Quillon")],
        )
    second = services.match_run(workspace=workspace).run
    # then
    assert (first.kind, first.stats["decrypted"]) == (RunKind.INCREMENTAL, "all")
    new = set(MatchKeys.objects.values_list("fingerprint", flat=True))
    assert len(new) == 1 and new.isdisjoint(old)
    assert second.stats["decrypted"] == "changed and partners"
    assert second.profiles_decrypted < second.profiles_considered


def test_the_keys_hold_no_value_in_plaintext(
    workspace: Any, world: tuple[dict[str, Any], list[Any]]
) -> None:
    # given
    sources, records = world
    _change_some(workspace, sources, records)
    services.match_run(workspace=workspace)
    # then: keyed hashes only; neither the sentinel nor its blocking forms appear
    blobs = b"".join(bytes(k) for k in MatchKeys.objects.values_list("keys", flat=True))
    assert len(blobs) % 8 == 0 and blobs
    for form in (SENTINEL_NAME, SENTINEL_NAME.lower(), "zphr", "Z165"):
        assert form.encode() not in blobs
        assert form.lower().encode() not in blobs


def test_a_block_too_big_overall_pairs_no_one_though_few_of_it_are_decrypted(
    workspace: Any,
) -> None:
    # given: blocks of at most 2; B and C share A's postcode (a block of 3 once A comes), and
    # B is decrypted as A2's partner (the same email local part)
    MatchSettings.objects.update_or_create(
        workspace=workspace,
        defaults={
            "blocking": [{"keys": ["postcode"]}, {"keys": ["email:local"]}],
            "max_block_size": 2,
        },
    )
    source = crm_source(workspace)
    add_person(source, first_name="Bea", last_name="Quist", postcode="11111", email="bq@b.example")
    add_person(source, first_name="Cal", last_name="Roe", postcode="11111")
    services.match_run(workspace=workspace, full=True)
    add_person(source, first_name="Ann", last_name="Quist", postcode="11111", email="a@a.example")
    add_person(source, first_name="Bo", last_name="Quist", email="bq@c.example")
    # when
    keyed, keyed_found, everyone, everyone_found = _both_ways(workspace)
    # then: A and B share only the postcode, whose block is too big: no pair, either way
    assert keyed.stats["decrypted"] == "changed and partners"
    assert (keyed.profiles_decrypted, everyone.profiles_decrypted) == (3, 4)
    assert keyed.candidate_pairs == everyone.candidate_pairs == 1
    assert keyed_found.keys() == everyone_found.keys()


def test_a_profile_that_absorbed_another_is_looked_at_again(workspace: Any) -> None:
    # given: a steward merges B (with an email) into A after the full run; C then shares that
    # email's local part, so only A's merged-in email makes A and C partners
    MatchSettings.objects.update_or_create(
        workspace=workspace, defaults={"blocking": [{"keys": ["email:local"]}]}
    )
    source = crm_source(workspace)
    a = add_person(source, first_name="Ann", last_name="Quist", postcode="11111")
    b = add_person(source, first_name="Ann", last_name="Quist", email="annq@a.example")
    services.match_run(workspace=workspace, full=True)
    profile_services.profiles_merge(
        workspace=workspace, profile_ids=(a.pk, b.pk), rule="steward", actor=None, evidence={}
    )
    add_person(source, first_name="Ann", last_name="Quist", email="annq@b.example")
    # when
    keyed, keyed_found, everyone, everyone_found = _both_ways(workspace)
    # then
    assert keyed.stats["decrypted"] == "changed and partners"
    assert keyed.candidate_pairs == everyone.candidate_pairs == 1
    assert keyed_found.keys() == everyone_found.keys()


def test_a_new_survivorship_policy_makes_the_next_run_decrypt_everyone(
    workspace: Any, world: tuple[dict[str, Any], list[Any]]
) -> None:
    # given: which value of a contested trait survives changes, no profile row does
    sources, records = world
    TraitSchema.objects.update_or_create(
        workspace=workspace, key="last_name", defaults={"survivorship": Survivorship.EARLIEST}
    )
    _change_some(workspace, sources, records)
    # when
    run = services.match_run(workspace=workspace).run
    # then
    assert run.stats["decrypted"] == "all"


def test_a_new_source_or_a_default_schema_row_keeps_the_keys(
    workspace: Any, world: tuple[dict[str, Any], list[Any]]
) -> None:
    # given: an import creates a source (default priority); a trait gets its first schema
    # row (default policy): neither changes which value survives
    sources, records = world
    profile_services.source_create(workspace=workspace, name="Newsletter import", kind="import")
    TraitSchema.objects.update_or_create(
        workspace=workspace, key="first_name", defaults={"survivorship": Survivorship.LATEST}
    )
    _change_some(workspace, sources, records)
    # when
    run = services.match_run(workspace=workspace).run
    # then
    assert run.stats["decrypted"] == "changed and partners"


def test_source_priorities_count_once_a_matched_trait_survives_by_them(
    workspace: Any, world: tuple[dict[str, Any], list[Any]]
) -> None:
    # given: last names survive by source priority; then a source's priority changes
    sources, records = world
    TraitSchema.objects.update_or_create(
        workspace=workspace, key="last_name",
        defaults={"survivorship": Survivorship.SOURCE_PRIORITY},
    )  # fmt: skip
    services.match_run(workspace=workspace, full=True)
    first = next(iter(sources.values()))
    first.priority = 10
    first.save(update_fields=["priority"])
    _change_some(workspace, sources, records)
    # when
    run = services.match_run(workspace=workspace).run
    # then
    assert run.stats["decrypted"] == "all"
