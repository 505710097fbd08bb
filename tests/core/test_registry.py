"""Every model that stores personal data is covered by a registered personal-data handler (or an
erasure would miss it), and every domain model is audited without its encrypted fields."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import models

from cdp.core import audit, registry
from cdp.core.crypto import personal_data_fields
from cdp.core.registry import ErasureReport, ErasureStatus, PersonalDataHandler

DOMAIN_APPS = ("profiles", "consent", "governance", "activation", "collect", "matching")
# Written in bulk by the ingestion pipeline (their rows are their own record; IntakeBatch is a
# buffer deleted within seconds, see collect/apps.py), or the audit trail itself. Suppression
# rows are written in bulk by an erasure, whose signed certificate is their record; the daily
# counters of dropped messages are upserted by ingestion.
NOT_AUDITED = {
    "profiles.Event",
    "profiles.IdentityLink",
    "profiles.SeenMessage",
    "profiles.Suppression",
    "profiles.SuppressionHit",
    "collect.IntakeBatch",
    # An uploaded import file waiting for its worker, sealed, deleted once processed (the
    # audited ImportJob is the record).
    "collect.ImportChunk",
    "consent.ConsentRecord",
    "consent.Receipt",
    "governance.AuditLogEntry",
    # Written by the sync engine as their own record (like the consent ledger): the delivery
    # ledger, sync runs (started_by names the steward) and removals with their status.
    "activation.Delivery",
    "activation.SyncRun",
    "activation.Removal",
    # Derived rows rewritten set-wise by refreshes (computed values, current members); the
    # membership changes are themselves the history of entries and exits.
    "activation.ComputedTraitValue",
    "activation.AudienceMembership",
    "activation.MembershipChange",
    # Marks a consent grant leaves for syncs to look at a member again, written set-wise in the
    # consent transaction and deleted by the run (the consent record is the grant's record).
    "activation.SyncRecheck",
    # Keyed hashes of a profile's blocking keys, rewritten by every matching run (the run and
    # its ACCESS entry are audited).
    "matching.MatchKeys",
}


def _domain_models() -> list[type[models.Model]]:
    return [
        model
        for app_label in DOMAIN_APPS
        for model in apps.get_app_config(app_label).get_models()
        if not model._meta.abstract and not model._meta.proxy
    ]


def _personal_data_models() -> set[str]:
    """Models with an encrypted or blind-index field or a link to a profile, and (to a fixed
    point) models linking to those; a model may declare `holds_personal_data = False` (an
    encrypted secret of the workspace, not of a person), which a reviewer must accept."""
    profile = apps.get_model("profiles", "Profile")
    candidates = [m for m in _domain_models() if getattr(m, "holds_personal_data", True)]
    found = {
        model._meta.label
        for model in candidates
        if personal_data_fields(model)
        or any(
            isinstance(f, models.ForeignKey) and f.related_model is profile
            for f in model._meta.concrete_fields
        )
    }
    while True:
        linked = {
            model._meta.label
            for model in candidates
            if any(
                isinstance(f, models.ForeignKey) and f.related_model._meta.label in found
                for f in model._meta.concrete_fields
            )
        }
        if linked <= found:
            return found
        found |= linked


def _handler(name: str, labels: tuple[str, ...]) -> PersonalDataHandler:
    return PersonalDataHandler(
        name=name,
        models=labels,
        export=lambda profile: {},
        erase=lambda profile: ErasureReport(store=name, status=ErasureStatus.NOTHING_FOUND),
    )


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, PersonalDataHandler]:
    handlers = dict(registry._handlers)
    monkeypatch.setattr(registry, "_handlers", handlers)
    return handlers


def test_personal_data_models_are_found() -> None:
    # when
    found = _personal_data_models()

    # then: the detection itself works (the coverage test below would pass vacuously if not)
    assert {
        "profiles.Profile",
        "profiles.DataKey",
        "profiles.Identity",
        "profiles.IdentityLink",
        "profiles.Trait",
        "profiles.Event",
        "profiles.Merge",
        "profiles.MergeConflict",
    } <= found
    assert "profiles.Workspace" not in found
    assert "profiles.ApiToken" not in found


def test_every_model_with_personal_data_has_a_handler() -> None:
    # given
    personal = _personal_data_models()

    # when
    missing = registry.uncovered(personal)

    # then
    assert missing == []


def test_every_handler_covers_real_models_and_can_export_and_erase() -> None:
    # given
    labels = {model._meta.label for model in _domain_models()}

    # when
    handlers = registry.handlers()

    # then
    assert handlers
    for handler in handlers:
        assert set(handler.models) <= labels, handler.name
        assert callable(handler.export)
        assert callable(handler.erase)
    assert [h.erase_order for h in handlers] == sorted(h.erase_order for h in handlers)


def test_uncovered_reports_a_model_without_handler(
    isolated_registry: dict[str, PersonalDataHandler],
) -> None:
    # given
    registry.register(_handler("tests.covered", ("tests.Covered",)))

    # when
    missing = registry.uncovered(["tests.Uncovered", "tests.Covered", "profiles.Identity"])

    # then
    assert missing == ["tests.Uncovered"]


def test_register_refuses_a_second_handler_of_the_same_name(
    isolated_registry: dict[str, PersonalDataHandler],
) -> None:
    # given
    first = _handler("tests.fake", ("tests.Fake",))
    registry.register(first)

    # when
    with pytest.raises(ValueError, match=r"'tests\.fake' is registered already"):
        registry.register(_handler("tests.fake", ("tests.Other",)))

    # then
    assert isolated_registry["tests.fake"] is first
    assert "tests.Other" not in registry.covered_models()


def test_register_accepts_the_same_handler_twice(
    isolated_registry: dict[str, PersonalDataHandler],
) -> None:
    # given
    handler = _handler("tests.fake", ("tests.Fake",))
    registry.register(handler)

    # when
    registry.register(handler)

    # then
    assert [h.name for h in registry.handlers()].count("tests.fake") == 1


def test_every_domain_model_is_audited_but_the_allowlist() -> None:
    # given
    labels = {model._meta.label: model for model in _domain_models()}

    # when
    unaudited = {label for label, model in labels.items() if not audit.is_registered(model)}

    # then
    assert unaudited == NOT_AUDITED


def test_audited_models_never_track_encrypted_or_blind_index_fields() -> None:
    # given
    audited = [m for m in _domain_models() if audit.is_registered(m)]

    # when
    tracked = {
        model._meta.label: sorted(
            {f.name for f in personal_data_fields(model)} - audit.excluded_fields(model)
        )
        for model in audited
        if personal_data_fields(model)
    }

    # then
    assert {label: fields for label, fields in tracked.items() if fields} == {}
    assert {"profiles.Identity", "profiles.Trait"} <= set(tracked)
    assert {"value", "blind_index"} <= audit.excluded_fields(apps.get_model("profiles.Identity"))
    assert "value_pii" in audit.excluded_fields(apps.get_model("profiles.Trait"))


def test_only_workspace_secrets_opt_out_of_the_personal_data_rule() -> None:
    # given / when
    opted_out = {
        m._meta.label for m in _domain_models() if not getattr(m, "holds_personal_data", True)
    }
    # then: the receipt-signing key, a destination's credentials and a source's
    # identity-verification secret, all sealed
    assert opted_out == {"consent.SigningKey", "activation.Destination", "profiles.SourceSecret"}
