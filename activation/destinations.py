"""Destinations and syncs: creating them, and what each kind of destination may declare.

A destination declares the consent purposes it serves (a profile is sent only when the gate
allows every one of them at send time) and the data it receives: identifiers by type and
traits by key. What a kind may declare is fixed here, so that a file for an ad platform can
never carry an identifier in clear, and a webhook never sends more than it declared.

A webhook URL is checked when the destination is created (http or https, no credentials, and
no loopback or private address unless CDP_WEBHOOK_ALLOW_PRIVATE): a name that resolves
elsewhere later (DNS rebinding) is not checked again at send time."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from auditlog.context import set_actor
from django.conf import settings
from django.db import transaction

from activation import webhooks
from activation.enums import AD_PLATFORMS, DestinationKind, SyncMode
from activation.exceptions import DestinationInvalid, SyncInvalid
from activation.models import Audience, Destination, Sync
from cdp.core.exceptions import Conflict
from consent import selectors as consent_selectors
from consent.enums import LegalBasis
from profiles import services as profile_services
from profiles.enums import DataKeyPurpose, IdentifierType

# Identifier types each kind may send. Ad platforms match on email and phone, hashed; the other
# kinds send what they declare, in clear, to a system the workspace controls.
_ALL_IDENTIFIERS = frozenset(IdentifierType.values)
IDENTIFIERS_BY_KIND: dict[str, frozenset[str]] = {
    DestinationKind.WEBHOOK: _ALL_IDENTIFIERS,
    DestinationKind.CSV: _ALL_IDENTIFIERS,
    DestinationKind.JSONL: _ALL_IDENTIFIERS,
    DestinationKind.GOOGLE_CUSTOMER_MATCH: frozenset({IdentifierType.EMAIL, IdentifierType.PHONE}),
    DestinationKind.META_CUSTOM_AUDIENCES: frozenset({IdentifierType.EMAIL, IdentifierType.PHONE}),
}
# Trait keys an ad platform can match on (activation.platforms.Contact reads these names);
# Google matches a mailing address on names, country and postcode only.
GOOGLE_TRAITS = frozenset(
    {"first_name", "firstName", "last_name", "lastName", "country", "postal_code", "zip"}
)
META_TRAITS = GOOGLE_TRAITS | frozenset(
    {"city", "state", "date_of_birth", "dateOfBirth", "birthday", "gender"}
)
TRAITS_BY_KIND: dict[str, frozenset[str] | None] = {
    DestinationKind.GOOGLE_CUSTOMER_MATCH: GOOGLE_TRAITS,
    DestinationKind.META_CUSTOM_AUDIENCES: META_TRAITS,
}
_TRAIT_KEY = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
_PREFIX = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
_REGION = re.compile(r"^[A-Z]{2}$")

WEBHOOK_BATCH_SIZE = 100
WEBHOOK_TIMEOUT_SECONDS = 10
MIN_SECRET_LENGTH = 16
MAX_MIN_AUDIENCE_SIZE = 2_147_483_647


@contextlib.contextmanager
def acting(actor: Any) -> Iterator[None]:
    """Attribute the audit entries written inside to `actor` (when there is one)."""
    if actor is None:
        yield
        return
    with set_actor(actor):
        yield


def export_dir(workspace: Any) -> Path:
    """Where the file destinations of a workspace write: CDP_EXPORT_DIR/<workspace slug>/."""
    return Path(settings.CDP_EXPORT_DIR) / str(workspace.slug)


def _string_list(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise DestinationInvalid(f"`{name}` is a list of names.", code=f"invalid_{name}")
    if len(set(value)) != len(value):
        raise DestinationInvalid(f"`{name}` lists a name twice.", code=f"invalid_{name}")
    return list(value)


def _check_min_audience_size(value: Any) -> int:
    # The column is a PositiveIntegerField: PostgreSQL refuses more than MAX_MIN_AUDIENCE_SIZE.
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 1 <= value <= MAX_MIN_AUDIENCE_SIZE
    ):
        raise DestinationInvalid(
            f"`min_audience_size` is a whole number from 1 to {MAX_MIN_AUDIENCE_SIZE}.",
            code="invalid_min_size",
        )
    return value


def _check_data(kind: str, data: Any) -> dict[str, list[str]]:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DestinationInvalid("`data` is an object with `identifiers` and `traits`.")
    unknown = sorted(set(data) - {"identifiers", "traits"})
    if unknown:
        raise DestinationInvalid(
            f"Unknown key(s) in `data`: {', '.join(unknown)}.", code="invalid_data"
        )
    identifiers = _string_list(data.get("identifiers"), "identifiers")
    traits = _string_list(data.get("traits"), "traits")
    allowed = IDENTIFIERS_BY_KIND[kind]
    refused = sorted(set(identifiers) - allowed)
    if refused:
        raise DestinationInvalid(
            f"A {kind} destination cannot send {', '.join(refused)}; choose from "
            f"{', '.join(sorted(allowed))}.",
            code="invalid_identifiers",
        )
    bad = sorted(t for t in traits if not _TRAIT_KEY.match(t))
    if bad:
        raise DestinationInvalid("A trait key is letters, digits, _ . or -.", code="invalid_traits")
    allowed_traits = TRAITS_BY_KIND.get(kind)
    if allowed_traits is not None:
        refused = sorted(set(traits) - allowed_traits)
        if refused:
            raise DestinationInvalid(
                f"A {kind} destination cannot match on {', '.join(refused)}; choose from "
                f"{', '.join(sorted(allowed_traits))}.",
                code="invalid_traits",
            )
    if kind in AD_PLATFORMS and not identifiers:
        raise DestinationInvalid(
            "An ad-platform destination sends email or phone (hashed): declare at least one.",
            code="invalid_identifiers",
        )
    return {"identifiers": identifiers, "traits": traits}


def _check_url(url: Any) -> str:
    if not isinstance(url, str) or not url.strip():
        raise DestinationInvalid("A webhook needs a `url`.", code="url_required")
    # http or https, a host, no credentials; and, unless the workspace's operator allows it,
    # no loopback or private address (a webhook must not reach into the CDP's own network).
    return webhooks.validate_webhook_url(
        url.strip(), allow_http=True, allow_private=settings.CDP_WEBHOOK_ALLOW_PRIVATE
    )


def _int_option(config: dict[str, Any], key: str, low: int, high: int) -> None:
    if key not in config:
        return
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DestinationInvalid(
            f"`{key}` is a whole number from {low} to {high}.", code="invalid_config"
        )


def _check_config(kind: str, config: Any) -> dict[str, Any]:
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise DestinationInvalid("`config` is an object.", code="invalid_config")
    config = dict(config)
    allowed = {"prefix"}
    if kind == DestinationKind.WEBHOOK:
        allowed = {"url", "batch_size", "timeout_seconds"}
        config["url"] = _check_url(config.get("url"))
        _int_option(config, "batch_size", 1, 1000)
        _int_option(config, "timeout_seconds", 1, 60)
    elif kind in AD_PLATFORMS:
        allowed = {"prefix", "default_region"}
        if kind == DestinationKind.GOOGLE_CUSTOMER_MATCH:
            allowed.add("canonicalize_gmail")
            if not isinstance(config.get("canonicalize_gmail", True), bool):
                raise DestinationInvalid(
                    "`canonicalize_gmail` is true or false.", code="invalid_config"
                )
        region = config.get("default_region")
        if region is not None and (not isinstance(region, str) or not _REGION.match(region)):
            raise DestinationInvalid(
                "`default_region` is an ISO 3166-1 alpha-2 code in capitals, e.g. US.",
                code="invalid_config",
            )
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise DestinationInvalid(
            f"Unknown setting(s) for a {kind} destination: {', '.join(unknown)}.",
            code="invalid_config",
        )
    prefix = config.get("prefix")
    if prefix is not None and (not isinstance(prefix, str) or not _PREFIX.match(prefix)):
        raise DestinationInvalid(
            "`prefix` is lowercase letters, digits, - and _ (files are written under the "
            "workspace's export directory, never elsewhere).",
            code="invalid_config",
        )
    return config


def _purposes(workspace: Any, purposes: Iterable[Any], kind: str) -> list[Any]:
    """The declared purposes, known in the workspace. An ad platform's audience upload is a
    sale or sharing of personal data for advertising: among them it must serve one held on
    consent and opted out of by GPC (`advertising` by default), so that neither a missing
    consent nor a GPC signal lets a person through."""
    given = [p if isinstance(p, str) else getattr(p, "key", None) for p in purposes]
    keys = [k for k in given if isinstance(k, str) and k]
    if not keys or len(keys) != len(given):
        raise DestinationInvalid(
            "A destination declares the consent purposes it serves (at least one).",
            code="purposes_required",
        )
    known = {p.key: p for p in consent_selectors.purpose_list(workspace=workspace)}
    unknown = sorted(set(keys) - known.keys())
    if unknown:
        raise DestinationInvalid(
            f"Unknown purpose(s): {', '.join(unknown)}.", code="unknown_purpose"
        )
    chosen = [known[k] for k in dict.fromkeys(keys)]
    if kind in AD_PLATFORMS and not any(advertising_purpose(p) for p in chosen):
        raise DestinationInvalid(
            "An ad platform destination serves a purpose held on consent that a Global Privacy "
            "Control signal opts out of (sale or sharing, such as `advertising`).",
            code="advertising_purpose_required",
        )
    return chosen


def advertising_purpose(purpose: Any) -> bool:
    """Whether a purpose may carry an ad platform upload: held on consent, and a sale or
    sharing that GPC opts out of."""
    return bool(purpose.sale_or_share) and purpose.legal_basis == LegalBasis.CONSENT


@transaction.atomic
def destination_create(
    *,
    workspace: Any,
    name: str,
    kind: str,
    purposes: Iterable[Any],
    data: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    secret: str | None = None,
    min_audience_size: int = 100,
    actor: Any = None,
) -> Destination:
    """Create a destination after checking what its kind may declare; a secret (the webhook
    signing key) is sealed under a data key of its own, owned by no profile."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise DestinationInvalid("A destination needs a name (up to 100 characters).")
    if kind not in DestinationKind.values:
        raise DestinationInvalid(
            f"Unknown destination kind; choose from {', '.join(DestinationKind.values)}.",
            code="invalid_kind",
        )
    checked_data = _check_data(kind, data)
    checked_config = _check_config(kind, config)
    chosen = _purposes(workspace, purposes, kind)
    min_audience_size = _check_min_audience_size(min_audience_size)
    if kind == DestinationKind.WEBHOOK:
        if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH:
            raise DestinationInvalid(
                f"A webhook needs a signing secret of at least {MIN_SECRET_LENGTH} characters.",
                code="secret_required",
            )
    elif secret is not None and not isinstance(secret, str):
        raise DestinationInvalid("`secret` is text.", code="invalid_secret")
    if Destination.objects.filter(workspace=workspace, name=name).exists():
        raise Conflict("A destination with that name exists.", code="destination_exists")
    destination = Destination(
        workspace=workspace,
        name=name,
        kind=kind,
        data=checked_data,
        config=checked_config,
        min_audience_size=min_audience_size,
    )
    if secret:
        destination.data_key_id = profile_services.data_key_create_unowned(
            workspace_id=workspace.pk, purpose=DataKeyPurpose.DESTINATION
        )
        destination.secret = secret
    with acting(actor):
        destination.save(force_insert=True)
        destination.purposes.set(chosen)
    return destination


@transaction.atomic
def sync_create(
    *,
    audience: Audience,
    destination: Destination,
    mode: str = SyncMode.INCREMENTAL,
    interval_minutes: int = 60,
    actor: Any = None,
) -> Sync:
    """Connect an audience to a destination of the same workspace."""
    if audience.workspace_id != destination.workspace_id:
        raise SyncInvalid(
            "The audience and the destination belong to different workspaces.",
            code="workspace_mismatch",
        )
    if mode not in SyncMode.values:
        raise SyncInvalid(
            f"Unknown sync mode; choose from {', '.join(SyncMode.values)}.", code="invalid_mode"
        )
    if (
        isinstance(interval_minutes, bool)
        or not isinstance(interval_minutes, int)
        or not 0 <= interval_minutes <= 60 * 24 * 31
    ):
        raise SyncInvalid(
            "`interval_minutes` is a whole number of minutes (0 for manual runs only).",
            code="invalid_interval",
        )
    if Sync.objects.filter(audience=audience, destination=destination).exists():
        raise Conflict("This audience is synced to this destination already.", code="sync_exists")
    with acting(actor):
        return Sync.objects.create(
            workspace_id=audience.workspace_id,
            audience=audience,
            destination=destination,
            mode=mode,
            interval_minutes=interval_minutes,
        )


def destination_recipients(workspace: Any) -> list[Any]:
    """The workspace's destinations as recipients of personal data, for the records of
    processing (cdp.core.registry.register_recipients; registered in apps.py)."""
    from cdp.core.registry import Recipient

    recipients = []
    for destination in (
        Destination.objects.filter(workspace=workspace)
        .prefetch_related("purposes")
        .order_by("name")
    ):
        data = destination.data or {}
        recipients.append(
            Recipient(
                name=destination.name,
                kind="destination",
                purposes=tuple(sorted(p.key for p in destination.purposes.all())),
                data_categories=tuple(
                    [f"identifier:{name}" for name in data.get("identifiers", [])]
                    + [f"trait:{name}" for name in data.get("traits", [])]
                ),
                detail=f"{destination.get_kind_display()}"
                + ("" if destination.enabled else " (disabled)"),
            )
        )
    return recipients
