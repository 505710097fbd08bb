"""Which references of the ingestion tables carry a database constraint
(docs/decisions/0009): none to the workspace or the source, whose deletion the ORM guards;
every one to a profile, so that no personal data outlives its profile."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.db.models import ProtectedError

from consent.models import ConsentRecord, ConsentState, Receipt
from profiles import services
from profiles.models import DataKey, Event, Identity, IdentityLink, Profile, SeenMessage, Trait
from tests.profiles.ingest_helpers import msg

UNCONSTRAINED = {
    Profile: ["workspace"],
    DataKey: ["workspace"],
    Identity: ["workspace", "source"],
    IdentityLink: ["workspace"],
    Trait: ["workspace", "source"],
    Event: ["workspace", "source"],
    SeenMessage: ["workspace"],
    ConsentRecord: ["workspace", "source"],
    ConsentState: ["workspace"],
    Receipt: ["workspace"],
}
CONSTRAINED = {
    Identity: ["profile", "data_key"],
    IdentityLink: ["left", "right"],
    Trait: ["profile", "data_key"],
    Event: ["profile", "data_key"],
    DataKey: ["profile"],
    ConsentRecord: ["profile", "purpose"],
    ConsentState: ["profile", "purpose", "record"],
    Receipt: ["profile"],
}


def _foreign_keys(model: Any) -> set[str]:
    """The columns of `model`'s table that the database checks as foreign keys."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
    return {
        column
        for constraint in constraints.values()
        if constraint["foreign_key"]
        for column in constraint["columns"]
    }


@pytest.mark.django_db
@pytest.mark.parametrize("model", list(UNCONSTRAINED), ids=lambda m: m.__name__)
def test_workspace_and_source_references_have_no_constraint(model: Any) -> None:
    checked = _foreign_keys(model)
    for name in UNCONSTRAINED[model]:
        assert model._meta.get_field(name).column not in checked


@pytest.mark.django_db
@pytest.mark.parametrize("model", list(CONSTRAINED), ids=lambda m: m.__name__)
def test_profile_references_keep_their_constraint(model: Any) -> None:
    checked = _foreign_keys(model)
    for name in CONSTRAINED[model]:
        assert model._meta.get_field(name).column in checked


@pytest.mark.django_db
def test_a_source_with_events_still_cannot_be_deleted(workspace: Any) -> None:
    """PROTECT is the ORM's: it holds without the constraint."""
    source = services.source_create(workspace=workspace, name="web")
    services.ingest_messages(source=source, messages=[msg(user_id="u-1", name="Viewed")])
    assert Event.objects.filter(source=source).exists()

    with pytest.raises(ProtectedError):
        source.delete()
    assert Event.objects.filter(source=source).exists()
