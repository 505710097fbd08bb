"""Retention: how long each kind of data is kept, and the sweep that removes what is older.

A workspace's `RetentionPolicy` rows say what goes and when (see ADR 0006):

- `events`: events that happened before the cutoff (all, or those named);
- `event_ip`: the full IP address sealed with each event, once the event was received before
  the cutoff; the truncated address in the plain context stays;
- `traits`: trait values of the listed keys last set before the cutoff;
- `inactive_profiles`: profiles not seen since the cutoff are erased through every registered
  personal-data handler, like an erasure request but without suppression (the person did not
  ask; a returning customer may come back) and without a certificate (the audit entry of the
  run records it). Profiles with an open request, a request under legal hold, or a
  restriction of processing are kept;
- `purpose`: the events and traits held only for a consent purpose, of each profile that has
  not allowed the purpose since the cutoff (withdrawn, denied, objected to), are deleted.
  Consent records themselves are kept: they prove what the person decided.

The sweep (`retention_apply`, daily through Celery beat, or `manage.py apply_retention`) also
deletes expired access-request exports and destroys their keys. Every real run of a policy
writes an audit entry with its counts; a dry run only counts and changes nothing."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from auditlog import get_logentry_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from cdp.core import registry
from cdp.core.exceptions import ApplicationError, InvalidInput
from cdp.core.registry import ErasureStatus
from consent import selectors as consent_selectors
from governance.deadlines import add_months
from governance.enums import FINAL_STATES, RetentionKind, RetentionUnit
from governance.models import (
    DataSubjectRequest,
    ExportArchive,
    GovernanceSettings,
    RetentionPolicy,
)
from profiles import selectors as profile_selectors
from profiles import services as profile_services

logger = logging.getLogger(__name__)

PROFILE_CHUNK = 1000
# The order a sweep runs the kinds in: the cheap, narrow ones first; erasing whole profiles
# last, so their counts are not inflated by rows another policy would have removed anyway.
KIND_ORDER: dict[str, int] = {
    RetentionKind.EVENT_IP: 0,
    RetentionKind.EVENTS: 1,
    RetentionKind.TRAITS: 2,
    RetentionKind.PURPOSE: 3,
    RetentionKind.INACTIVE_PROFILES: 4,
}

DEFAULT_POLICIES: list[dict[str, Any]] = [
    {
        "name": "Raw events",
        "kind": RetentionKind.EVENTS,
        "period": 13,
        "unit": RetentionUnit.MONTHS,
        "description": "Raw events serve analytics and audiences: a year of seasonality plus "
        "a month to compare with (the CNIL's 13-month horizon for audience measurement).",
    },
    {
        "name": "Full IP addresses",
        "kind": RetentionKind.EVENT_IP,
        "period": 7,
        "unit": RetentionUnit.DAYS,
        "description": "The full IP address is kept a week to investigate fraud and abuse; the "
        "truncated address (/24 or /48) stays with the event for geography.",
    },
    {
        "name": "Inactive profiles",
        "kind": RetentionKind.INACTIVE_PROFILES,
        "period": 3,
        "unit": RetentionUnit.YEARS,
        "description": "A customer not seen for three years is no longer a customer whose "
        "profile serves any purpose; the profile and everything held on it is erased.",
    },
]


class RetentionErasureFailed(ApplicationError):
    code = "retention_erasure_failed"
    default_message = "A personal-data handler could not erase the profile."


# --- policies --------------------------------------------------------------------------------


def period_cutoff(*, now: datetime, period: int, unit: str) -> datetime:
    """`now` minus the period: whole calendar months and years (13 months before 31 March is
    28 or 29 February), or days."""
    if unit == RetentionUnit.DAYS:
        return now - timedelta(days=period)
    months = period * (12 if unit == RetentionUnit.YEARS else 1)
    day = add_months(now.date(), -months)
    return now.replace(year=day.year, month=day.month, day=day.day)


def policy_cutoff(policy: RetentionPolicy, *, now: datetime) -> datetime:
    return period_cutoff(now=now, period=policy.period, unit=policy.unit)


def _names(value: Any, what: str) -> list[str]:
    if value in (None, ""):
        return []
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise InvalidInput(f"{what} must be a list of non-empty strings.", code="invalid_names")
    return sorted(set(value))


def policy_clean(
    *,
    workspace: Any,
    kind: str,
    period: Any,
    unit: str,
    event_names: Any = (),
    trait_keys: Any = (),
    purpose_key: str = "",
) -> dict[str, Any]:
    """Check a policy's fields for its kind; returns them normalized. Raises InvalidInput
    with a code naming the problem."""
    if kind not in RetentionKind.values:
        raise InvalidInput("Unknown retention kind.", code="unknown_kind")
    if unit not in RetentionUnit.values:
        raise InvalidInput("The unit is days, months or years.", code="unknown_unit")
    if not isinstance(period, int) or isinstance(period, bool) or period < 1:
        raise InvalidInput("The period is a whole number, at least 1.", code="invalid_period")
    names = _names(event_names, "Event names")
    keys = _names(trait_keys, "Trait keys")
    purpose_key = (purpose_key or "").strip()
    if kind in (RetentionKind.EVENT_IP, RetentionKind.INACTIVE_PROFILES) and (
        names or keys or purpose_key
    ):
        raise InvalidInput(
            "This kind of policy takes no event names, trait keys or purpose.",
            code="unexpected_scope",
        )
    if kind == RetentionKind.EVENTS and (keys or purpose_key):
        raise InvalidInput("An events policy takes event names only.", code="unexpected_scope")
    if kind == RetentionKind.TRAITS:
        if names or purpose_key:
            raise InvalidInput("A traits policy takes trait keys only.", code="unexpected_scope")
        if not keys:
            raise InvalidInput("A traits policy names the trait keys.", code="keys_required")
    if kind == RetentionKind.PURPOSE:
        if not purpose_key:
            raise InvalidInput("A purpose policy names the purpose.", code="purpose_required")
        if consent_selectors.purpose_get(workspace=workspace, key=purpose_key) is None:
            raise InvalidInput("Unknown purpose.", code="unknown_purpose")
        if not names and not keys:
            raise InvalidInput(
                "A purpose policy names the events or traits held only for the purpose.",
                code="scope_required",
            )
    return {
        "kind": kind,
        "period": period,
        "unit": unit,
        "event_names": names,
        "trait_keys": keys,
        "purpose_key": purpose_key,
    }


@transaction.atomic
def retention_policy_create(
    *,
    workspace: Any,
    name: str,
    kind: str,
    period: int,
    unit: str = RetentionUnit.DAYS,
    event_names: Iterable[str] = (),
    trait_keys: Iterable[str] = (),
    purpose_key: str = "",
    description: str = "",
    enabled: bool = True,
) -> RetentionPolicy:
    """Add a policy to the workspace (audited by auditlog, like every later change)."""
    name = (name or "").strip()
    if not name:
        raise InvalidInput("A policy needs a name.", code="name_required")
    if RetentionPolicy.objects.filter(workspace=workspace, name=name).exists():
        raise InvalidInput("A policy with this name exists already.", code="name_taken")
    values = policy_clean(
        workspace=workspace,
        kind=kind,
        period=period,
        unit=unit,
        event_names=list(event_names),
        trait_keys=list(trait_keys),
        purpose_key=purpose_key,
    )
    return RetentionPolicy.objects.create(
        workspace=workspace, name=name, description=description, enabled=enabled, **values
    )


def governance_settings_get(*, workspace: Any) -> GovernanceSettings:
    """The workspace's governance settings row, created (empty) on first use."""
    found, _ = GovernanceSettings.objects.get_or_create(workspace=workspace)
    return found


@transaction.atomic
def retention_defaults_ensure(*, workspace: Any) -> list[RetentionPolicy]:
    """Seed the default policies (raw events 13 months, full IP 7 days, inactive profiles 3
    years) once per workspace: a steward who deletes or changes one later keeps that choice.
    Returns the policies created (none after the first call)."""
    settings_row = governance_settings_get(workspace=workspace)
    settings_row = GovernanceSettings.objects.select_for_update().get(pk=settings_row.pk)
    if settings_row.retention_defaults_seeded_at is not None:
        return []
    created = [
        retention_policy_create(workspace=workspace, **spec)
        for spec in DEFAULT_POLICIES
        if not RetentionPolicy.objects.filter(workspace=workspace, name=spec["name"]).exists()
    ]
    settings_row.retention_defaults_seeded_at = timezone.now()
    settings_row.save(update_fields=["retention_defaults_seeded_at"])
    return created


def _default_policies_unsaved(workspace: Any) -> list[RetentionPolicy]:
    return [RetentionPolicy(workspace=workspace, **spec) for spec in DEFAULT_POLICIES]


def retention_policies(*, workspace: Any, enabled_only: bool = False) -> list[RetentionPolicy]:
    """The workspace's policies in the order a sweep runs them."""
    qs = RetentionPolicy.objects.filter(workspace=workspace)
    if enabled_only:
        qs = qs.filter(enabled=True)
    return sorted(qs, key=lambda p: (KIND_ORDER.get(p.kind, 99), p.name))


# --- the sweep -------------------------------------------------------------------------------


@dataclass
class PolicyRun:
    """What one policy removed (or, in a dry run, would remove)."""

    policy_id: int | None
    name: str
    kind: str
    cutoff: datetime
    counts: dict[str, int] = field(default_factory=dict)
    error: str = ""


@dataclass
class SweepResult:
    workspace: str
    dry_run: bool
    exports: int = 0  # expired access-request exports deleted (or to delete)
    runs: list[PolicyRun] = field(default_factory=list)
    seeded: list[str] = field(default_factory=list)  # default policies created by this run

    @property
    def failed(self) -> list[PolicyRun]:
        return [run for run in self.runs if run.error]


def _protected_profile_ids(workspace: Any) -> set[Any]:
    """Profiles that no retention policy may erase or thin out: those with an open request
    (it must be answered on the data as it is) or a request under legal hold. A request may
    name a profile merged since, so the survivor is protected too."""
    ids: set[Any] = set()
    profile_ids = (
        DataSubjectRequest.objects.filter(workspace=workspace, profile_id__isnull=False)
        .filter(Q(legal_hold=True) | ~Q(state__in=FINAL_STATES))
        .values_list("profile_id", flat=True)
        .distinct()
    )
    for profile_id in profile_ids:
        ids.add(profile_id)
        try:
            ids.add(profile_selectors.profile_get(workspace=workspace, profile_id=profile_id).pk)
        except ApplicationError:
            continue  # erased since
    return ids


def _chunks(ids: Iterable[Any], size: int = PROFILE_CHUNK) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for value in ids:
        chunk.append(value)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _add(counts: dict[str, int], more: dict[str, int]) -> None:
    for key, value in more.items():
        counts[key] = counts.get(key, 0) + int(value)


def _erase_profile(workspace: Any, profile: Any) -> dict[str, int]:
    """Erase one profile through every registered handler in one transaction: all or nothing
    (a half-erased profile with no certificate would be worse than a kept one). No suppression:
    the person did not ask to be forgotten."""
    key_ids = profile_selectors.profile_person_data_key_ids(workspace=workspace, profile=profile)
    counts: dict[str, int] = {}
    with transaction.atomic():
        for handler in registry.handlers():
            report = handler.erase(profile)
            if report.status == ErasureStatus.FAILED:
                raise RetentionErasureFailed(f"The handler {handler.name} failed.")
            _add(counts, report.counts)
        profile_services.data_keys_destroy(key_ids=key_ids)
    return counts


def _run_inactive(
    policy: RetentionPolicy, workspace: Any, cutoff: datetime, dry_run: bool
) -> dict[str, int]:
    protected = _protected_profile_ids(workspace)
    candidates = profile_selectors.profiles_inactive(workspace=workspace, before=cutoff)
    if protected:
        candidates = candidates.exclude(pk__in=protected)
    if dry_run:
        return {"profiles": candidates.count()}
    counts: dict[str, int] = {"profiles_erased": 0, "profiles_failed": 0}
    for profile in candidates.order_by("pk").iterator(chunk_size=PROFILE_CHUNK):
        try:
            _add(counts, _erase_profile(workspace, profile))
        except Exception as exc:
            # Kept whole and counted; the next run tries again. Only the class is logged: a
            # message might quote a value.
            logger.warning("retention: profile %s not erased (%s)", profile.pk, type(exc).__name__)
            counts["profiles_failed"] += 1
        else:
            counts["profiles_erased"] += 1
    return counts


def _purpose_profile_ids(workspace: Any, cutoff: datetime, purpose: Any) -> Iterator[Any]:
    """Profiles that do not allow the purpose now and did not allow it at the cutoff either
    (consent gate, the purpose's default mode): withdrawn, denied or objected to since at
    least the cutoff. Restricted and protected profiles are left alone."""
    allowed_now = consent_selectors.consent_gate_profiles(workspace=workspace, purpose=purpose)
    allowed_then = consent_selectors.consent_gate_profiles(
        workspace=workspace, purpose=purpose, at=cutoff
    )
    candidates = (
        profile_selectors.profile_list(workspace=workspace)
        .filter(restricted=False)
        .exclude(pk__in=allowed_now.values("pk"))
        .exclude(pk__in=allowed_then.values("pk"))
        .order_by("pk")
    )
    protected = _protected_profile_ids(workspace)
    for pk in candidates.values_list("pk", flat=True).iterator(chunk_size=PROFILE_CHUNK):
        if pk not in protected:
            yield pk


def _run_purpose(
    policy: RetentionPolicy, workspace: Any, cutoff: datetime, now: datetime, dry_run: bool
) -> dict[str, int]:
    purpose = consent_selectors.purpose_get(workspace=workspace, key=policy.purpose_key)
    if purpose is None:
        raise InvalidInput("The policy's purpose no longer exists.", code="unknown_purpose")
    counts = {"profiles": 0, "events": 0, "traits": 0}
    for chunk in _chunks(_purpose_profile_ids(workspace, cutoff, purpose)):
        counts["profiles"] += len(chunk)
        if policy.event_names:
            if dry_run:
                counts["events"] += profile_selectors.events_expired(
                    workspace=workspace,
                    before=now,
                    event_names=policy.event_names,
                    profile_ids=chunk,
                ).count()
            else:
                counts["events"] += profile_services.events_purge(
                    workspace=workspace,
                    before=now,
                    event_names=policy.event_names,
                    profile_ids=chunk,
                )
        if policy.trait_keys:
            if dry_run:
                counts["traits"] += profile_selectors.traits_expired(
                    workspace=workspace, keys=policy.trait_keys, before=now, profile_ids=chunk
                ).count()
            else:
                counts["traits"] += profile_services.traits_purge(
                    workspace=workspace, keys=policy.trait_keys, before=now, profile_ids=chunk
                )
    return counts


def _run_event_ip(
    policy: RetentionPolicy, workspace: Any, cutoff: datetime, dry_run: bool
) -> dict[str, int]:
    since = policy.ip_cleared_until
    if since is not None and since >= cutoff:
        return {"events_opened": 0, "ips_cleared": 0, "unreadable": 0}
    if dry_run:
        # Counting the addresses themselves would mean decrypting: a dry run opens nothing.
        pending = profile_selectors.events_sealed_received(
            workspace=workspace, before=cutoff, since=since
        ).count()
        return {"events_to_open": pending}
    result = profile_services.events_clear_sealed_ip(
        workspace=workspace, before=cutoff, since=since
    )
    RetentionPolicy.objects.filter(pk=policy.pk).update(ip_cleared_until=cutoff)
    policy.ip_cleared_until = cutoff
    return {
        "events_opened": result.scanned,
        "ips_cleared": result.cleared,
        "unreadable": result.unreadable,
    }


def _run_policy(
    policy: RetentionPolicy, workspace: Any, *, now: datetime, dry_run: bool
) -> dict[str, int]:
    cutoff = policy_cutoff(policy, now=now)
    kind = policy.kind
    if kind == RetentionKind.EVENTS:
        names = policy.event_names or None
        if dry_run:
            expired = profile_selectors.events_expired(
                workspace=workspace, before=cutoff, event_names=names
            )
            return {"events": expired.count()}
        return {
            "events": profile_services.events_purge(
                workspace=workspace, before=cutoff, event_names=names
            )
        }
    if kind == RetentionKind.EVENT_IP:
        return _run_event_ip(policy, workspace, cutoff, dry_run)
    if kind == RetentionKind.TRAITS:
        if dry_run:
            return {
                "traits": profile_selectors.traits_expired(
                    workspace=workspace, keys=policy.trait_keys, before=cutoff
                ).count()
            }
        return {
            "traits": profile_services.traits_purge(
                workspace=workspace, keys=policy.trait_keys, before=cutoff
            )
        }
    if kind == RetentionKind.PURPOSE:
        return _run_purpose(policy, workspace, cutoff, now, dry_run)
    if kind == RetentionKind.INACTIVE_PROFILES:
        return _run_inactive(policy, workspace, cutoff, dry_run)
    raise InvalidInput("Unknown retention kind.", code="unknown_kind")


def _audit_run(policy: RetentionPolicy, run: PolicyRun, *, now: datetime, actor: Any) -> None:
    """One audit entry per real run of a policy: the counts, the cutoff, any error."""
    entry_model = get_logentry_model()
    previous = policy.last_run_at
    entry_model.objects.log_create(
        policy,
        force_log=True,
        action=entry_model.Action.UPDATE,
        changes={"last_run_at": [str(previous) if previous else "None", str(now)]},
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        additional_data={
            "retention_run": {
                "kind": run.kind,
                "cutoff": run.cutoff.isoformat(),
                "counts": run.counts,
                **({"error": run.error} if run.error else {}),
            }
        },
    )
    RetentionPolicy.objects.filter(pk=policy.pk).update(last_run_at=now, last_run_counts=run.counts)
    policy.last_run_at, policy.last_run_counts = now, run.counts


def exports_expired(*, workspace: Any, now: datetime) -> Any:
    """Access-request exports of the workspace whose download link has expired."""
    return ExportArchive.objects.filter(request__workspace=workspace, expires_at__lte=now)


@transaction.atomic
def exports_purge(*, workspace: Any, now: datetime) -> int:
    """Delete expired exports (each deletion is audited by auditlog) and destroy their data
    keys, so the copy of the person's data they held is unreadable in backups too."""
    expired = list(exports_expired(workspace=workspace, now=now).values_list("pk", "data_key_id"))
    if not expired:
        return 0
    ExportArchive.objects.filter(pk__in=[pk for pk, _ in expired]).delete()
    profile_services.data_keys_destroy(key_ids=[key for _, key in expired])
    return len(expired)


def retention_apply(
    *, workspace: Any, dry_run: bool = False, now: datetime | None = None, actor: Any = None
) -> SweepResult:
    """Run the workspace's enabled policies and purge expired exports. A real run seeds the
    default policies first (once per workspace) and audits every policy it runs; a dry run
    counts what would go (including the defaults not seeded yet) and changes nothing."""
    now = now or timezone.now()
    result = SweepResult(workspace=workspace.slug, dry_run=dry_run)
    if dry_run:
        seeded = GovernanceSettings.objects.filter(
            workspace=workspace, retention_defaults_seeded_at__isnull=False
        ).exists()
        policies = retention_policies(workspace=workspace, enabled_only=True)
        if not seeded:
            taken = {p.name for p in RetentionPolicy.objects.filter(workspace=workspace)}
            policies += [p for p in _default_policies_unsaved(workspace) if p.name not in taken]
        result.exports = exports_expired(workspace=workspace, now=now).count()
    else:
        result.seeded = [p.name for p in retention_defaults_ensure(workspace=workspace)]
        policies = retention_policies(workspace=workspace, enabled_only=True)
        result.exports = exports_purge(workspace=workspace, now=now)
    for policy in sorted(policies, key=lambda p: (KIND_ORDER.get(p.kind, 99), p.name)):
        run = PolicyRun(
            policy_id=policy.pk,
            name=policy.name,
            kind=policy.kind,
            cutoff=policy_cutoff(policy, now=now),
        )
        try:
            run.counts = _run_policy(policy, workspace, now=now, dry_run=dry_run)
        except Exception as exc:
            if dry_run:
                raise
            run.error = exc.code if isinstance(exc, ApplicationError) else type(exc).__name__
            logger.error("retention: policy %s failed (%s)", policy.pk, run.error)
        if not dry_run:
            _audit_run(policy, run, now=now, actor=actor)
        result.runs.append(run)
    return result


def retention_apply_all(
    *, dry_run: bool = False, now: datetime | None = None, actor: Any = None
) -> list[SweepResult]:
    """The sweep over every workspace (the daily beat task)."""
    now = now or timezone.now()
    return [
        retention_apply(workspace=workspace, dry_run=dry_run, now=now, actor=actor)
        for workspace in profile_selectors.workspace_list()
    ]
