"""A trait key a steward classifies as personal data after values were stored in plain under
it: those values are sealed too (trait values, the profiles' attributes, event properties at
any depth), not only the ones collected from then on."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from profiles import handlers, services
from profiles.enums import TraitClass
from profiles.models import Event, Profile, Source, Trait, TraitSchema
from tests.profiles.ingest_helpers import msg

SENTINEL = "Sentinel-Gold-7731"
TABLES = {
    "profiles_trait": ["value_attribute", "value_pii"],
    "profiles_profile": ["attributes"],
    "profiles_event": ["properties", "sealed"],
}


@pytest.fixture
def source(workspace: Any) -> Source:
    TraitSchema.objects.update_or_create(
        workspace=workspace, key="loyalty_tier", defaults={"classification": TraitClass.ATTRIBUTE}
    )
    return services.source_create(workspace=workspace, name="Web shop")


def plaintext_hits() -> list[str]:
    """The columns holding the sentinel in plain (JSON as text, sealed bytes as they are)."""
    hits = []
    with connection.cursor() as cursor:
        for table, columns in TABLES.items():
            for column in columns:
                cursor.execute(f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL")  # noqa: S608
                for (value,) in cursor.fetchall():
                    if isinstance(value, bytes | memoryview):
                        text = bytes(value).decode(errors="replace")
                    else:
                        text = value if isinstance(value, str) else repr(value)
                    if SENTINEL.lower() in text.lower():
                        hits.append(f"{table}.{column}")
    return hits


def classify_as_pii(user: Any, schema: TraitSchema, capture: Any) -> Any:
    client = Client()
    client.force_login(user)
    with capture(execute=True):
        return client.post(
            reverse("admin:profiles_traitschema_changelist"),
            {"action": "classify_as_pii", "_selected_action": [schema.pk]},
            follow=True,
        )


def test_classifying_a_key_as_personal_data_seals_what_was_stored_in_plain(
    source: Source, owner: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given: stored in plain while the key was an attribute
    properties = {
        "loyalty_tier": SENTINEL,
        "cart": {"Loyalty Tier": SENTINEL, "items": 2},
        "lines": [{"loyaltyTier": SENTINEL, "sku": "a"}, {"sku": "b"}],
        "total": 42,
    }
    services.ingest_messages(
        source=source,
        messages=[
            msg("identify", user_id="u-1", traits={"loyalty_tier": SENTINEL, "plan": "pro"}),
            msg("track", user_id="u-1", name="Order Completed", properties=properties),
            msg("track", user_id="u-1", name="Viewed", properties={"sku": "a"}),
        ],
    )
    assert sorted(set(plaintext_hits())) == [
        "profiles_event.properties",
        "profiles_profile.attributes",
        "profiles_trait.value_attribute",
    ]
    schema = TraitSchema.objects.get(workspace=source.workspace, key="loyalty_tier")
    # when: a steward classifies it as personal data in the admin
    response = classify_as_pii(owner, schema, django_capture_on_commit_callbacks)
    # then: nothing of it is left in plain; it is all still there, sealed
    assert response.status_code == 200
    assert "being encrypted in the background" in response.content.decode()
    assert plaintext_hits() == []
    trait = Trait.objects.get(key="loyalty_tier")
    assert (trait.is_pii, trait.value_attribute, trait.value_pii) == (True, None, SENTINEL)
    assert Profile.objects.get().attributes == {"plan": "pro"}
    order = Event.objects.get(name="Order Completed")
    assert order.properties == {
        "cart": {"items": 2},
        "lines": [{"sku": "a"}, {"sku": "b"}],
        "total": 42,
    }
    (exported,) = [
        e for e in handlers.export_events(order.profile)["events"] if e["name"] == order.name
    ]
    assert exported["properties"] == properties


def test_sealing_again_changes_nothing(source: Source) -> None:
    # given
    services.ingest_messages(
        source=source,
        messages=[
            msg("identify", user_id="u-1", traits={"loyalty_tier": SENTINEL}),
            msg("track", user_id="u-1", name="Bought", properties={"loyalty_tier": SENTINEL}),
        ],
    )
    TraitSchema.objects.filter(key="loyalty_tier").update(classification=TraitClass.PII)
    # when
    first = services.personal_data_reseal(workspace=source.workspace, keys=["loyalty_tier"])
    sealed_before = Event.objects.get(name="Bought").sealed
    second = services.personal_data_reseal(workspace=source.workspace, keys=["loyalty_tier"])
    # then
    assert (first.traits, first.profiles, first.events) == (1, 1, 1)
    assert (second.traits, second.profiles, second.events, second.unreadable) == (0, 0, 0, 0)
    bought = Event.objects.get(name="Bought")
    assert bought.sealed == sealed_before == {"properties": {"loyalty_tier": SENTINEL}}


def test_only_the_workspace_s_own_values_are_sealed_and_only_personal_keys(
    source: Source, other_workspace: Any
) -> None:
    # given: the same key, an attribute in both workspaces, values in both
    TraitSchema.objects.update_or_create(
        workspace=other_workspace,
        key="loyalty_tier",
        defaults={"classification": TraitClass.ATTRIBUTE},
    )
    elsewhere = services.source_create(workspace=other_workspace, name="Other shop")
    for where in (source, elsewhere):
        services.ingest_messages(
            source=where,
            messages=[
                msg("identify", user_id="u-1", traits={"loyalty_tier": SENTINEL}),
                msg("track", user_id="u-1", name="Bought", properties={"loyalty_tier": SENTINEL}),
            ],
        )
    TraitSchema.objects.filter(workspace=source.workspace, key="loyalty_tier").update(
        classification=TraitClass.PII
    )
    # when: a run for each workspace, but the key is personal data in the first only
    services.personal_data_reseal(workspace=source.workspace, keys=["loyalty_tier"])
    services.personal_data_reseal(workspace=other_workspace, keys=["loyalty_tier"])
    # then
    assert Trait.objects.get(workspace=source.workspace).is_pii
    assert Trait.objects.get(workspace=other_workspace).value_attribute == SENTINEL
    assert Event.objects.get(workspace=other_workspace, name="Bought").properties == {
        "loyalty_tier": SENTINEL
    }


def test_the_change_form_seals_too(
    source: Source, owner: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    services.ingest_messages(
        source=source,
        messages=[msg("identify", user_id="u-1", traits={"loyalty_tier": SENTINEL})],
    )
    schema = TraitSchema.objects.get(workspace=source.workspace, key="loyalty_tier")
    client = Client()
    client.force_login(owner)
    # when: a steward changes the classification on the key's own page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:profiles_traitschema_change", args=[schema.pk]),
            {
                "classification": TraitClass.PII,
                "survivorship": schema.survivorship,
                "description": "",
            },
            follow=True,
        )
    # then
    assert response.status_code == 200
    assert "being encrypted in the background" in response.content.decode()
    assert plaintext_hits() == []
    assert Trait.objects.get(key="loyalty_tier").value_pii == SENTINEL


def test_sealed_parts_of_the_value_are_kept_and_any_spelling_is_found(source: Source) -> None:
    # given: a URL under the key had its query sealed already; the key spelt other ways
    sent = {
        "loyalty_tier": {"url": f"https://shop.example.com/p?code={SENTINEL}", "level": 3},
        "_Loyalty Tier:": SENTINEL,
        "LOYALTY-tier ": SENTINEL,
        "tier": "not this one",
    }
    services.ingest_messages(
        source=source,
        messages=[msg("track", user_id="u-1", name="Bought", properties=sent)],
    )
    TraitSchema.objects.filter(key="loyalty_tier").update(classification=TraitClass.PII)
    # when
    done = services.personal_data_reseal(workspace=source.workspace, keys=["loyalty_tier"])
    # then: nothing is lost; all of it is sealed but the other key
    event = Event.objects.get(name="Bought")
    assert done.events == 1
    assert event.properties == {"tier": "not this one"}
    (exported,) = handlers.export_events(event.profile)["events"]
    assert exported["properties"] == sent


def test_keys_classified_together_are_sealed_in_one_run_per_workspace(
    source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: two attribute keys and one never classified (sealed at ingestion already)
    TraitSchema.objects.update_or_create(
        workspace=source.workspace, key="shoe_size", defaults={"classification": "attribute"}
    )
    TraitSchema.objects.update_or_create(
        workspace=source.workspace, key="nickname", defaults={"classification": "unclassified"}
    )
    queued: list[tuple[int, list[str]]] = []
    monkeypatch.setattr(
        services,
        "personal_data_reseal_queue",
        lambda *, workspace_id, keys: queued.append((workspace_id, sorted(keys))),
    )
    schemas = TraitSchema.objects.filter(
        workspace=source.workspace, key__in=["loyalty_tier", "shoe_size", "nickname"]
    )
    # when
    changed = services.trait_schemas_classify(schemas=schemas, classification=TraitClass.PII)
    # then: each run reads every event once, so one for both keys
    assert changed == 3
    assert queued == [(source.workspace.pk, ["loyalty_tier", "shoe_size"])]
