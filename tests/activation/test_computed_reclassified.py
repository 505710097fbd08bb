"""A computed trait over an event property whose key a steward then classifies as personal
data: its values were plain copies of what is sealed from then on. The classification disables
the trait (audited) and deletes its values in the same transaction; enabling it again is
refused like defining it."""

from __future__ import annotations

from typing import Any

import pytest
from auditlog import get_logentry_model
from django.db import connection
from django.test import Client
from django.urls import reverse

from activation import computed
from activation.exceptions import ComputedTraitInvalid
from activation.models import ComputedTrait, ComputedTraitValue
from profiles import services
from profiles.enums import TraitClass
from profiles.models import Source, TraitSchema
from tests.profiles.ingest_helpers import msg

SENTINEL = "Sentinel-Tier-4417"
LogEntry = get_logentry_model()


@pytest.fixture
def source(workspace: Any) -> Source:
    TraitSchema.objects.update_or_create(
        workspace=workspace, key="loyalty_tier", defaults={"classification": TraitClass.ATTRIBUTE}
    )
    return services.source_create(workspace=workspace, name="Web shop")


@pytest.fixture
def traits(source: Source) -> dict[str, ComputedTrait]:
    """Over the attribute `loyalty_tier` (a copy of it, and a count of its values), and a
    count of orders that reads no property."""
    services.ingest_messages(
        source=source,
        messages=[
            msg(
                "track",
                user_id="u-1",
                name="Order Completed",
                properties={"loyalty_tier": x, "Loyalty Tier": x},
            )
            for x in ("silver", SENTINEL)
        ],
    )
    workspace = source.workspace
    made = {
        "last": computed.computed_trait_create(
            workspace=workspace, key="last_tier", name="Last tier", kind="last",
            property="loyalty_tier",
        ),
        "unique": computed.computed_trait_create(
            workspace=workspace, key="tiers", name="Tiers", kind="unique_count",
            property="Loyalty Tier",
        ),
        "orders": computed.computed_trait_create(
            workspace=workspace, key="orders", name="Orders", kind="count",
            event_name="Order Completed",
        ),
    }  # fmt: skip
    assert ComputedTraitValue.objects.filter(trait__in=made.values()).count() == 3
    return made


def _sentinel_in_values() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT value, text FROM activation_computedtraitvalue")
        return any(SENTINEL.lower() in repr(row).lower() for row in cursor.fetchall())


def test_classifying_the_property_as_personal_data_disables_its_traits_and_drops_values(
    workspace: Any, traits: dict[str, ComputedTrait]
) -> None:
    # given: the last tier, a plain copy of the sentinel
    assert _sentinel_in_values()
    schema = TraitSchema.objects.get(workspace=workspace, key="loyalty_tier")
    # when
    services.trait_schemas_classify(schemas=[schema], classification=TraitClass.PII)
    # then: both traits over the property (however spelt) are off, with no value left
    for name in ("last", "unique"):
        trait = ComputedTrait.objects.get(pk=traits[name].pk)
        assert not trait.enabled
        assert not ComputedTraitValue.objects.filter(trait=trait).exists()
    assert not _sentinel_in_values()
    # the count that reads no property is untouched
    assert ComputedTrait.objects.get(pk=traits["orders"].pk).enabled
    assert ComputedTraitValue.objects.filter(trait=traits["orders"]).count() == 1
    # each change is in the audit trail, as a steward's edit would be
    changed = LogEntry.objects.get_for_object(ComputedTrait.objects.get(pk=traits["last"].pk))
    assert any("enabled" in (entry.changes_dict or {}) for entry in changed)


def test_enabling_it_again_is_refused(workspace: Any, traits: dict[str, ComputedTrait]) -> None:
    # given
    schema = TraitSchema.objects.get(workspace=workspace, key="loyalty_tier")
    services.trait_schemas_classify(schemas=[schema], classification=TraitClass.PII)
    trait = ComputedTrait.objects.get(pk=traits["last"].pk)
    # when / then
    with pytest.raises(ComputedTraitInvalid, match="personal data"):
        computed.computed_trait_update(trait=trait, enabled=True)
    assert not ComputedTrait.objects.get(pk=trait.pk).enabled
    assert not ComputedTraitValue.objects.filter(trait=trait).exists()


def test_the_admin_change_form_does_the_same(
    workspace: Any, owner: Any, traits: dict[str, ComputedTrait]
) -> None:
    # given
    schema = TraitSchema.objects.get(workspace=workspace, key="loyalty_tier")
    client = Client()
    client.force_login(owner)
    # when
    response = client.post(
        reverse("admin:profiles_traitschema_change", args=[schema.pk]),
        {
            "workspace": workspace.pk,
            "key": "loyalty_tier",
            "classification": TraitClass.PII,
            "survivorship": schema.survivorship,
            "description": "",
        },
        follow=True,
    )
    # then
    assert response.status_code == 200
    assert "computed trait over such an event property is disabled" in response.content.decode()
    assert not ComputedTrait.objects.get(pk=traits["last"].pk).enabled
    assert not _sentinel_in_values()


def test_classifying_another_key_or_back_to_attribute_leaves_the_traits(
    workspace: Any, traits: dict[str, ComputedTrait]
) -> None:
    # given
    other, _ = TraitSchema.objects.update_or_create(
        workspace=workspace, key="plan", defaults={"classification": TraitClass.ATTRIBUTE}
    )
    schema = TraitSchema.objects.get(workspace=workspace, key="loyalty_tier")
    # when
    services.trait_schemas_classify(schemas=[other], classification=TraitClass.PII)
    services.trait_schemas_classify(schemas=[schema], classification=TraitClass.ATTRIBUTE)
    # then
    assert all(t.enabled for t in ComputedTrait.objects.all())
    assert ComputedTraitValue.objects.count() == 3
