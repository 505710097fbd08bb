"""Model field helpers shared by the apps."""

from __future__ import annotations

from typing import Any

from django.db import models

__all__ = ["unconstrained_fk"]


def unconstrained_fk(to: Any, *, on_delete: Any, **kwargs: Any) -> models.ForeignKey[Any, Any]:
    """A foreign key without a database constraint, for a reference to a workspace or a source
    from a table ingestion writes at volume (events, identities, traits, consent records).

    PostgreSQL checks a constraint with one trigger query per written row, at commit: on the
    drain those checks were a quarter of the database's CPU (docs/decisions/0009). A workspace
    or a source is deleted only through the ORM, whose `on_delete` (PROTECT, CASCADE,
    SET_NULL) is applied the same without the constraint. References to profiles keep theirs:
    no personal data may outlive its profile, whatever deletes it."""
    return models.ForeignKey(to, on_delete=on_delete, db_constraint=False, **kwargs)
