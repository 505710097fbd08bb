"""Compliance reports of one workspace, as printable HTML or CSV.

- `dsr`: the request SLA: requests received in the period per type and regime, answered on
  time, answered late, open past their deadline, median days to fulfil.
- `consent`: consent rates per purpose, withdrawals and GPC opt-outs
  (consent.selectors.consent_report).
- `ropa`: the records of processing (GDPR Art. 30(1)) generated from what the workspace
  holds: purposes, categories of data subjects and of personal data (identifiers, the trait
  schema, event categories), recipients (the processing registry in cdp.core.registry, filled
  by the apps that send data out), transfers, retention and security measures.
- `pii-access`: every reveal of decrypted personal data in the period: who, what, when, why.
- `audit`: the audit chain's verification, the workspace's audited actions in the period and
  its retention runs.

A report is built (`report_build`) into sections of rows, so that the HTML and the CSV say the
same thing; neither ever holds a personal-data value (profiles are named by id)."""

from __future__ import annotations

import csv
import io
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from auditlog import get_logentry_model
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.template.loader import render_to_string
from django.utils import timezone

from cdp.core import registry
from cdp.core.exceptions import InvalidInput
from cdp.core.registry import ErasureStatus
from cdp.core.spreadsheet import spreadsheet_safe
from consent import selectors as consent_selectors
from governance import chain, retention, selectors
from governance.enums import (
    FINAL_STATES,
    Regime,
    ReportFormat,
    ReportKind,
    RequestState,
    RequestType,
    RetentionKind,
)
from governance.handlers import RETENTION_DETAIL
from governance.models import (
    DataSubjectRequest,
    ErasureCertificate,
    ExportArchive,
    GovernanceSettings,
    RequestEvent,
    RetentionPolicy,
)
from profiles import selectors as profile_selectors

DEFAULT_PERIOD_DAYS = 30
ANSWERED = frozenset(
    {RequestState.FULFILLED, RequestState.PARTIALLY_FULFILLED, RequestState.DENIED}
)
FULFILLED = frozenset({RequestState.FULFILLED, RequestState.PARTIALLY_FULFILLED})
# ISO 3166 codes of the EEA: a recipient elsewhere is a transfer to a third country.
EEA = frozenset(
    {
        "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT",
        "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO",
    }
)  # fmt: skip
SECURITY_MEASURES = [
    (
        "Encryption at rest",
        "Identifiers, personal-data traits and event properties, and full IP addresses are "
        "sealed with AES-256-GCM under a data key per profile; data keys are wrapped by "
        "master keys held outside the database; each ciphertext is bound to its table, "
        "column and row.",
    ),
    (
        "Pseudonymous lookup",
        "Identifiers are found through keyed HMAC-SHA256 blind indexes, never by their value.",
    ),
    (
        "Erasure by crypto-shredding",
        "Erasure destroys the person's data keys and deletes the rows; identifiers of erased "
        "people are kept only as keyed hashes so they are not collected again.",
    ),
    (
        "Access control",
        "Stewards hold roles per workspace; revealing decrypted personal data needs a reason "
        "and writes an access entry.",
    ),
    (
        "Audit trail",
        "Every change and every reveal is recorded in an append-only, hash-chained audit "
        "trail, verified daily.",
    ),
    (
        "Minimisation in logs",
        "Logs pass a redaction filter; task arguments are ids, never personal data.",
    ),
]


@dataclass(frozen=True)
class Section:
    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""


@dataclass(frozen=True)
class Report:
    kind: str
    title: str
    workspace_name: str
    workspace_slug: str
    since: datetime | None  # None: the report describes the present state, not a period
    until: datetime
    generated_at: datetime
    summary: list[tuple[str, Any]] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def filename_stem(self) -> str:
        return f"{self.workspace_slug}-{self.kind}-{self.generated_at:%Y%m%d}"


def report_period(
    *, since: date | None, until: date | None, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """The period [since, until) in UTC: `until` is inclusive as a day (its end), now by
    default; `since` starts its day, DEFAULT_PERIOD_DAYS before `until` by default."""
    now = now or timezone.now()
    end = (
        datetime.combine(until + timedelta(days=1), time.min, tzinfo=UTC)
        if until is not None
        else now
    )
    start = (
        datetime.combine(since, time.min, tzinfo=UTC)
        if since is not None
        else end - timedelta(days=DEFAULT_PERIOD_DAYS)
    )
    if start >= end:
        raise InvalidInput("The period's start must come before its end.", code="invalid_period")
    return start, end


def _at(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value else ""


def _at_text(value: str) -> str:
    try:
        return _at(datetime.fromisoformat(value))
    except (TypeError, ValueError):
        return str(value)


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}" if whole else ""


def _days(delta: timedelta) -> float:
    return round(delta.total_seconds() / 86400, 1)


# --- dsr -------------------------------------------------------------------------------------


def _dsr(workspace: Any, since: datetime, until: datetime, now: datetime) -> Report:
    requests = list(
        DataSubjectRequest.objects.filter(
            workspace=workspace, received_at__gte=since, received_at__lt=until
        )
        .select_related("assigned_to")
        .defer("contact", "details")
        .order_by("received_at", "pk")
    )
    groups: dict[tuple[str, str], list[DataSubjectRequest]] = defaultdict(list)
    for dsr in requests:
        groups[(dsr.type, dsr.regime)].append(dsr)

    def figures(items: list[DataSubjectRequest]) -> list[Any]:
        answered = [r for r in items if r.state in ANSWERED]
        on_time = [r for r in answered if r.closed_at and r.closed_at <= r.effective_due_at]
        open_ = [r for r in items if r.state not in FINAL_STATES]
        overdue = [r for r in open_ if r.effective_due_at < now]
        durations = [
            _days(r.closed_at - r.received_at)
            for r in items
            if r.state in FULFILLED and r.closed_at
        ]
        return [
            len(items),
            len(answered),
            len(on_time),
            _pct(len(on_time), len(answered)),
            len(answered) - len(on_time),
            len(open_),
            len(overdue),
            sum(1 for r in items if r.state == RequestState.REVOKED),
            sum(1 for r in items if r.state == RequestState.EXPIRED),
            statistics.median(durations) if durations else "",
        ]

    columns = [
        "type",
        "regime",
        "received",
        "answered",
        "answered on time",
        "on time %",
        "answered late",
        "open",
        "open and overdue",
        "revoked",
        "expired",
        "median days to fulfil",
    ]
    rows = [
        [RequestType(kind).label, Regime(regime).label, *figures(items)]
        for (kind, regime), items in sorted(groups.items())
    ]
    total = figures(requests)
    if requests:
        rows.append(["all", "all", *total])
    overdue_rows = [
        [
            str(r.pk),
            RequestType(r.type).label,
            Regime(r.regime).label,
            RequestState(r.state).label,
            _at(r.received_at),
            _at(r.effective_due_at),
            (now - r.effective_due_at).days,
            r.assigned_to.get_username() if r.assigned_to else "",
        ]
        for r in requests
        if r.state not in FINAL_STATES and r.effective_due_at < now
    ]
    erasures, unverified, missing = _erasure_rows(requests)
    return Report(
        kind=ReportKind.DSR,
        title="Data-subject requests: deadlines kept",
        workspace_name=workspace.name,
        workspace_slug=workspace.slug,
        since=since,
        until=until,
        generated_at=now,
        summary=[
            ("requests received", total[0]),
            ("answered", total[1]),
            ("answered on time (%)", total[3] or "n/a"),
            ("open and overdue", total[6]),
            ("median days to fulfil", total[9] if total[9] != "" else "n/a"),
            ("erasures carried out without a certificate", missing),
            ("erasure certificates that no longer verify", unverified),
        ],
        sections=[
            Section("Requests per type and regime", columns, rows),
            Section(
                "Open requests past their deadline",
                [
                    "request",
                    "type",
                    "regime",
                    "state",
                    "received",
                    "due",
                    "days overdue",
                    "steward",
                ],
                overdue_rows,
                note="" if overdue_rows else "None.",
            ),
            Section(
                "Erasures carried out, with their certificates",
                [
                    "request",
                    "state",
                    "closed",
                    "certificate",
                    "issued",
                    "stores erased",
                    "stores failed",
                    "destinations asked to delete",
                    "signature",
                ],
                erasures,
                note="" if erasures else "None.",
            ),
        ],
        notes=[
            "Requests received in the period. Answered: fulfilled, partially fulfilled or "
            "denied; on time: closed by the (possibly extended) deadline. Revoked and expired "
            "requests are not answered and do not count towards the rate.",
            "Each erasure certificate's signature is checked against the workspace's published "
            "key (/.well-known/cdp-receipt-keys.json?workspace=<slug>): INVALID means its "
            "stored record was changed after it was signed.",
        ],
    )


def _erasure_rows(requests: list[DataSubjectRequest]) -> tuple[list[list[Any]], int, int]:
    """One row per erasure carried out (fulfilled or partially), with its certificate and the
    check of its signature; and how many certificates fail the check, how many are missing."""
    done = [r for r in requests if r.type == RequestType.ERASURE and r.state in FULFILLED]
    certificates = {
        c.request_id: c
        for c in ErasureCertificate.objects.filter(request__in=done).select_related(
            "request__workspace"
        )
    }
    keys = selectors.certificate_keys(
        workspace_ids={c.request.workspace_id for c in certificates.values()}
    )
    rows: list[list[Any]] = []
    unverified = missing = 0
    for dsr in done:
        certificate = certificates.get(dsr.pk)
        if certificate is None:
            missing += 1
            rows.append([str(dsr.pk), RequestState(dsr.state).label, _at(dsr.closed_at),
                         "missing", "", "", "", "", ""])  # fmt: skip
            continue
        check = selectors.certificate_check(
            certificate, keys=keys.get(certificate.request.workspace.slug, [])
        )
        unverified += not check.valid
        stores = selectors.certificate_entries(certificate, "stores")
        failed = len(selectors.certificate_failed_stores(certificate))
        rows.append(
            [
                str(dsr.pk),
                RequestState(dsr.state).label,
                _at(dsr.closed_at),
                str(certificate.pk),
                _at(certificate.issued_at),
                sum(1 for s in stores if s.get("status") == ErasureStatus.ERASED),
                failed,
                len(selectors.certificate_entries(certificate, "destinations")),
                "valid" if check.valid else f"INVALID: {check.reason}",
            ]
        )
    return rows, unverified, missing


# --- consent ---------------------------------------------------------------------------------


def _consent(workspace: Any, since: datetime, until: datetime, now: datetime) -> Report:
    days = max(1, round((until - since).total_seconds() / 86400))
    found = consent_selectors.consent_report(workspace=workspace, now=until, days=days)
    rows = [
        [
            p.key,
            p.name,
            p.states,
            p.granted,
            p.denied,
            p.withdrawn,
            p.expired,
            "" if p.granted_percent is None else p.granted_percent,
            p.withdrawals_recent,
        ]
        for p in found.purposes
    ]
    return Report(
        kind=ReportKind.CONSENT,
        title="Consent",
        workspace_name=workspace.name,
        workspace_slug=workspace.slug,
        since=found.since,
        until=until,
        generated_at=now,
        summary=[
            ("withdrawals in the period", found.withdrawals_recent),
            ("GPC opt-outs in the period", found.gpc_opt_outs_recent),
            ("GPC opt-outs in all", found.gpc_opt_outs),
            ("profiles to ask again (re-consent)", found.needs_reconsent_profiles),
        ],
        sections=[
            Section(
                "Rates per purpose",
                [
                    "purpose",
                    "name",
                    "decisions",
                    "granted",
                    "denied",
                    "withdrawn",
                    "expired",
                    "granted %",
                    "withdrawals in the period",
                ],
                rows,
            )
        ],
        notes=[
            "Rates are over the current decision of each profile and purpose, as of the "
            "report's generation; withdrawals and GPC opt-outs are ledger records in the period.",
        ],
    )


# --- ropa ------------------------------------------------------------------------------------


def _scope(policy: RetentionPolicy) -> str:
    parts = []
    if policy.purpose_key:
        parts.append(f"purpose {policy.purpose_key}")
    if policy.event_names:
        parts.append("events " + ", ".join(policy.event_names))
    elif policy.kind == RetentionKind.EVENTS:
        parts.append("all events")
    if policy.trait_keys:
        parts.append("traits " + ", ".join(policy.trait_keys))
    return "; ".join(parts)


def _ropa(workspace: Any, now: datetime) -> Report:
    settings_row = GovernanceSettings.objects.filter(workspace=workspace).first()
    controller = (settings_row.controller_contact if settings_row else "") or (
        f"{workspace.name}, {settings.DEFAULT_FROM_EMAIL}"
    )
    dpo = (settings_row.dpo_contact if settings_row else "") or "not designated"
    purposes = list(consent_selectors.purpose_list(workspace=workspace))
    purpose_rows = [
        [
            p.key,
            p.name,
            p.get_legal_basis_display(),
            p.description,
            ", ".join(p.dpv_purposes or []),
            ", ".join(p.data_categories or []),
            "yes" if p.sale_or_share else "no",
            p.retention_days or "",
        ]
        for p in purposes
    ]
    sources = [
        [s.name, s.get_kind_display(), "yes" if s.enabled else "no"]
        for s in profile_selectors.source_list(workspace=workspace)
    ]
    identifiers = [
        [kind, n]
        for kind, n in profile_selectors.identifier_type_counts(workspace=workspace).items()
    ]
    traits = [
        [t.key, t.get_classification_display(), t.description]
        for t in profile_selectors.trait_schema_list(workspace=workspace)
    ]
    events = [
        [kind, name or "(unnamed)", n]
        for kind, name, n in profile_selectors.event_categories(workspace=workspace)
    ]
    recipients = registry.recipients(workspace)
    recipient_rows = [
        [
            r.name,
            r.kind,
            provider,
            ", ".join(r.purposes),
            ", ".join(r.data_categories),
            r.country,
            r.safeguards,
        ]
        for provider, r in recipients
    ]
    transfers = [
        [r.name, r.country, r.safeguards or "none recorded"]
        for _, r in recipients
        if r.country and r.country.upper() not in EEA
    ]
    policies = retention.retention_policies(workspace=workspace)
    retention_rows = [
        [
            p.name,
            RetentionKind(p.kind).label,
            f"{p.period} {p.unit}",
            _scope(p),
            "yes" if p.enabled else "no",
            p.description,
            _at(p.last_run_at),
        ]
        for p in policies
    ]
    fixed = [
        ["Data-subject requests", "records of the requests", RETENTION_DETAIL],
        [
            "Access exports",
            f"downloadable {settings.GOVERNANCE_EXPORT_TTL_DAYS} days",
            "then deleted, and their keys destroyed, by the retention sweep",
        ],
        [
            "Suppression list",
            "as long as the workspace exists",
            "keyed hashes of erased people's identifiers, so they are not collected again",
        ],
        [
            "Audit trail",
            "as long as the workspace exists",
            "append-only record of changes and reveals; holds no personal-data values",
        ],
    ]
    if settings_row and settings_row.erasure_cancellation_hours is not None:
        window = settings_row.erasure_cancellation_hours
    else:
        window = int(getattr(settings, "CDP_ERASURE_CANCELLATION_HOURS", 0) or 0)
    return Report(
        kind=ReportKind.ROPA,
        title="Records of processing activities (GDPR Art. 30)",
        workspace_name=workspace.name,
        workspace_slug=workspace.slug,
        since=None,
        until=now,
        generated_at=now,
        summary=[
            ("controller", controller),
            ("data protection officer", dpo),
            ("purposes", len(purposes)),
            ("profiles", profile_selectors.profile_list(workspace=workspace).count()),
            ("recipients", len(recipients)),
            ("erasure cancellation window (hours)", window),
        ],
        sections=[
            Section(
                "Purposes of the processing (Art. 30(1)(b))",
                [
                    "purpose",
                    "name",
                    "legal basis",
                    "description",
                    "DPV terms",
                    "data categories",
                    "sale or sharing",
                    "consent valid (days)",
                ],
                purpose_rows,
                note="" if purpose_rows else "No purpose is defined.",
            ),
            Section(
                "Categories of data subjects (Art. 30(1)(c)): customers and visitors "
                "identified through these sources",
                ["source", "kind", "enabled"],
                sources,
                note="" if sources else "No source collects data.",
            ),
            Section(
                "Categories of personal data: identifiers",
                ["identifier type", "identities held"],
                identifiers,
                note="" if identifiers else "None held.",
            ),
            Section(
                "Categories of personal data: traits",
                ["trait", "classification", "description"],
                traits,
                note="Personal data and unclassified traits are stored encrypted.",
            ),
            Section(
                "Categories of personal data: events",
                ["event type", "event name", "events held"],
                events,
                note="" if events else "No event is held.",
            ),
            Section(
                "Recipients (Art. 30(1)(d))",
                [
                    "recipient",
                    "kind",
                    "registered by",
                    "purposes",
                    "data categories",
                    "country",
                    "safeguards",
                ],
                recipient_rows,
                note=""
                if recipient_rows
                else "No recipient is registered: no destination receives personal data.",
            ),
            Section(
                "Transfers to third countries (Art. 30(1)(e))",
                ["recipient", "country", "safeguards"],
                transfers,
                note="" if transfers else "None recorded.",
            ),
            Section(
                "Time limits for erasure (Art. 30(1)(f)): retention policies",
                ["policy", "kind", "period", "scope", "enabled", "why", "last run (UTC)"],
                retention_rows,
                note="" if retention_rows else "No retention policy yet (seeded by the sweep).",
            ),
            Section(
                "Time limits for erasure: records kept by the platform",
                ["record", "kept", "detail"],
                fixed,
            ),
            Section(
                "Technical and organisational security measures (Art. 30(1)(g))",
                ["measure", "description"],
                [list(m) for m in SECURITY_MEASURES],
            ),
        ],
        notes=[
            "Generated from the workspace's configuration and holdings at the time shown; "
            "review and complete it (e.g. processors outside this platform) before filing.",
        ],
    )


# --- pii-access ------------------------------------------------------------------------------


def _label(content_type: ContentType) -> str:
    return f"{content_type.app_label}.{content_type.model}"


def _deleted_owner(entry_model: Any, content_type: Any, pks: Iterable[str], field: str) -> dict:
    """object pk -> the value of `field` (a foreign key id, as text) recorded by any audit
    entry of the object that carried it (its creation, a change or its deletion)."""
    found: dict[str, str] = {}
    for entry in entry_model.objects.filter(
        content_type=content_type, object_pk__in=list(pks)
    ).exclude(action=entry_model.Action.ACCESS):
        change = (entry.changes or {}).get(field) if isinstance(entry.changes, dict) else None
        if isinstance(change, list) and change:
            value = change[0] if change[0] not in (None, "None") else change[-1]
            if value not in (None, "None"):
                found[str(entry.object_pk)] = str(value)
    return found


def _attributable(workspace: Any, entries: list[Any]) -> list[Any]:
    """The ACCESS entries about objects of `workspace`: existing profiles and exports are
    looked up; deleted ones (erased profiles, purged exports) through the workspace or the
    request their own audit entries recorded. Anything else is not shown."""
    entry_model = get_logentry_model()
    by_type: dict[int, set[str]] = defaultdict(set)
    types: dict[int, ContentType] = {}
    for entry in entries:
        by_type[entry.content_type_id].add(str(entry.object_pk))
        types[entry.content_type_id] = entry.content_type
    own: set[tuple[int, str]] = set()
    request_ids = {
        str(pk)
        for pk in DataSubjectRequest.objects.filter(workspace=workspace).values_list(
            "pk", flat=True
        )
    }
    for type_id, pks in by_type.items():
        label = _label(types[type_id])
        if label == "profiles.profile":
            mine = profile_selectors.profile_ids_in_workspace(workspace=workspace, profile_ids=pks)
            rest = pks - mine
            owners = _deleted_owner(entry_model, types[type_id], rest, "workspace")
            mine |= {pk for pk, ws in owners.items() if ws == str(workspace.pk)}
        elif label == "governance.exportarchive":
            mine = {
                str(pk)
                for pk in ExportArchive.objects.filter(
                    pk__in=list(pks), request__workspace=workspace
                ).values_list("pk", flat=True)
            }
            owners = _deleted_owner(entry_model, types[type_id], pks - mine, "request")
            mine |= {pk for pk, request in owners.items() if request in request_ids}
        else:
            owners = _deleted_owner(entry_model, types[type_id], pks, "workspace")
            mine = {pk for pk, ws in owners.items() if ws == str(workspace.pk)}
        own.update((type_id, pk) for pk in mine)
    return [e for e in entries if (e.content_type_id, str(e.object_pk)) in own]


def access_entries(*, workspace: Any, since: datetime, until: datetime) -> list[Any]:
    """ACCESS audit entries (reveals of decrypted personal data) of the workspace's objects."""
    entry_model = get_logentry_model()
    entries = list(
        entry_model.objects.filter(
            action=entry_model.Action.ACCESS, timestamp__gte=since, timestamp__lt=until
        )
        .select_related("actor", "content_type")
        .order_by("timestamp", "pk")
    )
    return _attributable(workspace, entries)


def _who(entry: Any) -> str:
    if entry.actor is not None:
        return str(entry.actor.get_username())
    if entry.actor_ref:
        return str(entry.actor_ref)
    return "the data subject" if (entry.additional_data or {}).get("via") else "system"


def _pii_access(workspace: Any, since: datetime, until: datetime, now: datetime) -> Report:
    entries = access_entries(workspace=workspace, since=since, until=until)
    rows = []
    for entry in entries:
        data = entry.additional_data or {}
        rows.append(
            [
                _at(entry.timestamp),
                _who(entry),
                _label(entry.content_type),
                str(entry.object_pk),
                ", ".join(data.get("fields", [])),
                data.get("reason", ""),
                data.get("via", ""),
            ]
        )
    people = Counter(row[1] for row in rows)
    return Report(
        kind=ReportKind.PII_ACCESS,
        title="Access to personal data (reveals)",
        workspace_name=workspace.name,
        workspace_slug=workspace.slug,
        since=since,
        until=until,
        generated_at=now,
        summary=[
            ("reveals", len(rows)),
            ("people who revealed", len(people)),
            *[(f"by {who}", n) for who, n in sorted(people.items())],
        ],
        sections=[
            Section(
                "Reveals",
                ["when (UTC)", "who", "what", "id", "fields", "why", "via"],
                rows,
                note="" if rows else "No personal data was revealed in the period.",
            )
        ],
        notes=[
            "Each row is an ACCESS entry of the audit trail, written before the data was shown. "
            "Values are never recorded, only which fields were revealed and why.",
        ],
    )


# --- audit -----------------------------------------------------------------------------------


def _governance_objects(workspace: Any) -> dict[str, tuple[Any, set[str]]]:
    """label -> (model, pks as text) of the workspace's governance records."""
    requests = DataSubjectRequest.objects.filter(workspace=workspace)
    found: dict[str, tuple[Any, Any]] = {
        "data-subject requests": (DataSubjectRequest, requests.values_list("pk", flat=True)),
        "request history": (
            RequestEvent,
            RequestEvent.objects.filter(request__workspace=workspace).values_list("pk", flat=True),
        ),
        "exports": (
            ExportArchive,
            ExportArchive.objects.filter(request__workspace=workspace).values_list("pk", flat=True),
        ),
        "erasure certificates": (
            ErasureCertificate,
            ErasureCertificate.objects.filter(request__workspace=workspace).values_list(
                "pk", flat=True
            ),
        ),
        "retention policies": (
            RetentionPolicy,
            RetentionPolicy.objects.filter(workspace=workspace).values_list("pk", flat=True),
        ),
        "governance settings": (
            GovernanceSettings,
            GovernanceSettings.objects.filter(workspace=workspace).values_list("pk", flat=True),
        ),
    }
    return {label: (model, {str(pk) for pk in pks}) for label, (model, pks) in found.items()}


def _entries_of(model: Any, pks: set[str], since: datetime, until: datetime) -> list[Any]:
    entry_model = get_logentry_model()
    content_type = ContentType.objects.get_for_model(model)
    ordered = sorted(pks)
    entries: list[Any] = []
    for start in range(0, len(ordered), 500):
        entries.extend(
            entry_model.objects.filter(
                content_type=content_type,
                object_pk__in=ordered[start : start + 500],
                timestamp__gte=since,
                timestamp__lt=until,
            ).order_by("timestamp", "pk")
        )
    return entries


def _audit(workspace: Any, since: datetime, until: datetime, now: datetime) -> Report:
    entry_model = get_logentry_model()
    verification = chain.verify(entry_model)
    actions = dict(entry_model.Action.choices)
    count_rows = []
    retention_rows = []
    for label, (model, pks) in _governance_objects(workspace).items():
        entries = _entries_of(model, pks, since, until)
        for action, n in sorted(Counter(e.action for e in entries).items()):
            count_rows.append([label, str(actions.get(action, action)), n])
        if model is RetentionPolicy:
            names = dict(
                RetentionPolicy.objects.filter(workspace=workspace).values_list("pk", "name")
            )
            for entry in entries:
                run = (entry.additional_data or {}).get("retention_run")
                if run:
                    retention_rows.append(
                        [
                            _at(entry.timestamp),
                            names.get(int(entry.object_pk), entry.object_pk),
                            run.get("kind", ""),
                            _at_text(run.get("cutoff", "")),
                            ", ".join(f"{k}: {v}" for k, v in sorted(run["counts"].items())),
                            run.get("error", ""),
                        ]
                    )
    reveals = access_entries(workspace=workspace, since=since, until=until)
    count_rows.append(
        ["personal data revealed", str(actions[entry_model.Action.ACCESS]), len(reveals)]
    )
    broken = verification.first_break
    return Report(
        kind=ReportKind.AUDIT,
        title="Audit trail",
        workspace_name=workspace.name,
        workspace_slug=workspace.slug,
        since=since,
        until=until,
        generated_at=now,
        summary=[
            ("hash chain", "intact" if verification.ok else "BROKEN"),
            ("entries verified (whole installation)", verification.checked),
            *(
                [("first broken entry", f"{broken.entry_id}: {broken.reason}")]
                if broken is not None
                else []
            ),
            ("retention runs in the period", len(retention_rows)),
            ("reveals in the period", len(reveals)),
        ],
        sections=[
            Section(
                "Audited actions on the workspace's governance records and data",
                ["records", "action", "entries"],
                count_rows,
            ),
            Section(
                "Retention runs",
                ["when (UTC)", "policy", "kind", "cutoff (UTC)", "counts", "error"],
                retention_rows,
                note="" if retention_rows else "No retention run in the period.",
            ),
        ],
        notes=[
            "The hash chain covers every workspace's entries together: each entry links to the "
            "previous one, so any change, removal or insertion breaks it from that point on.",
        ],
    )


# --- build and render ------------------------------------------------------------------------


def report_build(
    *,
    workspace: Any,
    kind: str,
    since: date | None = None,
    until: date | None = None,
    now: datetime | None = None,
) -> Report:
    """Build the `kind` report of the workspace over [since, until] (days, UTC)."""
    now = now or timezone.now()
    if kind not in ReportKind.values:
        raise InvalidInput(
            f"Unknown report kind; choose from {', '.join(ReportKind.values)}.",
            code="unknown_report",
        )
    if kind == ReportKind.ROPA:
        return _ropa(workspace, now)
    start, end = report_period(since=since, until=until, now=now)
    build = {
        ReportKind.DSR: _dsr,
        ReportKind.CONSENT: _consent,
        ReportKind.PII_ACCESS: _pii_access,
        ReportKind.AUDIT: _audit,
    }[ReportKind(kind)]
    return build(workspace, start, end, now)


def _csv_cell(value: Any) -> Any:
    # Free text here (reasons, descriptions) is written by people: never run as a formula.
    return spreadsheet_safe(value) if isinstance(value, str) else value


def report_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    write = lambda row: writer.writerow([_csv_cell(v) for v in row])  # noqa: E731
    write(["report", report.kind, report.title])
    write(["workspace", report.workspace_slug, report.workspace_name])
    write(["period", _at(report.since) if report.since else "", _at(report.until)])
    write(["generated", _at(report.generated_at)])
    for key, value in report.summary:
        write(["summary", key, value])
    for section in report.sections:
        write([])
        write(["section", section.title])
        write(section.columns)
        for row in section.rows:
            write(row)
        if section.note:
            write(["note", section.note])
    for note in report.notes:
        write(["note", note])
    return out.getvalue()


def report_html(report: Report) -> str:
    return render_to_string(
        f"governance/reports/{report.kind.replace('-', '_')}.html", {"report": report}
    )


def report_render(report: Report, *, fmt: str) -> tuple[str, str, str]:
    """(content, content type, file name) of the report in `fmt` (html or csv)."""
    if fmt == ReportFormat.CSV:
        return report_csv(report), "text/csv; charset=utf-8", f"{report.filename_stem}.csv"
    if fmt == ReportFormat.HTML:
        return report_html(report), "text/html; charset=utf-8", f"{report.filename_stem}.html"
    raise InvalidInput("The format is html or csv.", code="unknown_format")
