"""Changing a destination after it was created (the management API's PATCH and the admin), with
the checks `destination_create` makes (activation.destinations): what its kind may declare,
its purposes, its secret. The kind is fixed: a file destination does not become a webhook."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from activation.destinations import (
    MIN_SECRET_LENGTH,
    _check_config,
    _check_data,
    _check_min_audience_size,
    _purposes,
    acting,
)
from activation.enums import DestinationKind
from activation.exceptions import DestinationInvalid
from activation.models import Destination
from cdp.core.exceptions import Conflict
from profiles import services as profile_services
from profiles.enums import DataKeyPurpose

EDITABLE = ("name", "purposes", "data", "config", "secret", "min_audience_size", "enabled")


@transaction.atomic
def destination_update(
    *, destination: Destination, actor: Any = None, **fields: Any
) -> Destination:
    """Change a destination's name, purposes, data, settings, secret, minimum audience size
    or enabled flag (checked as on creation, audited). A new secret is sealed under the
    destination's own data key; the old one is overwritten, never answered."""
    unknown = sorted(set(fields) - set(EDITABLE))
    if unknown:
        raise DestinationInvalid(f"`{unknown[0]}` cannot be changed.", code="not_editable")
    kind = destination.kind
    changed: list[str] = []
    if "name" in fields:
        name = (fields["name"] or "").strip()
        if not name or len(name) > 100:
            raise DestinationInvalid("A destination needs a name (up to 100 characters).")
        taken = Destination.objects.filter(workspace_id=destination.workspace_id, name=name)
        if taken.exclude(pk=destination.pk).exists():
            raise Conflict("A destination with that name exists.", code="destination_exists")
        destination.name = name
        changed.append("name")
    if "data" in fields:
        destination.data = _check_data(kind, fields["data"])
        changed.append("data")
    if "config" in fields:
        destination.config = _check_config(kind, fields["config"])
        changed.append("config")
    if "min_audience_size" in fields:
        destination.min_audience_size = _check_min_audience_size(fields["min_audience_size"])
        changed.append("min_audience_size")
    if "enabled" in fields:
        if not isinstance(fields["enabled"], bool):
            raise DestinationInvalid("`enabled` is true or false.", code="invalid_enabled")
        destination.enabled = fields["enabled"]
        changed.append("enabled")
    chosen = (
        _purposes(destination.workspace, fields["purposes"], kind) if "purposes" in fields else None
    )
    if "secret" in fields:
        secret = fields["secret"]
        if not isinstance(secret, str) or not secret:
            raise DestinationInvalid("`secret` is text.", code="invalid_secret")
        if kind == DestinationKind.WEBHOOK and len(secret) < MIN_SECRET_LENGTH:
            raise DestinationInvalid(
                f"A webhook needs a signing secret of at least {MIN_SECRET_LENGTH} characters.",
                code="secret_required",
            )
        if destination.data_key_id is None:
            destination.data_key_id = profile_services.data_key_create_unowned(
                workspace_id=destination.workspace_id, purpose=DataKeyPurpose.DESTINATION
            )
            changed.append("data_key")
        destination.secret = secret
        changed.append("secret")
    with acting(actor):
        if changed:
            destination.save(update_fields=[*changed, "updated_at"])
        if chosen is not None:
            destination.purposes.set(chosen)
    return destination
