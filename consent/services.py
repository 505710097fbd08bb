"""Consent writes: purposes, the append-only ledger with its per-subject hash chain, the current
state per profile and purpose, GPC, merges, and signed receipts.

The ledger is only ever appended to by these services (erasure deletes a person's records with
the person). Every record names its subject (an identity: type and blind index, so consent
given on an anonymousId before any login is provable), the profile it resolved to at the time,
the purpose, decision, notice version, method, jurisdiction, client and server time, keyed
hashes of the IP address, user agent and page URL, and the raw signals (GPC, TC string)."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import F, Window
from django.db.models.functions import RowNumber
from django.urls import reverse
from django.utils import timezone

from cdp.core import audit, bulk, hooks
from cdp.core.crypto import blind_index, keyed_hash
from cdp.core.exceptions import InvalidInput
from cdp.core.ids import uuid7
from cdp.core.ratelimit import rate_limit_consume
from consent import tcf
from consent.enums import CLIENT_METHODS, Decision, DefaultMode, LegalBasis, Method
from consent.exceptions import NoticeVersionUnknown, PurposeUnknown
from consent.models import (
    ConsentRecord,
    ConsentState,
    Notice,
    NoticeVersion,
    Purpose,
    Receipt,
    SigningKey,
)
from profiles import selectors as profile_selectors
from profiles import services as profile_services
from profiles.contracts import InboundMessage
from profiles.enums import DataKeyPurpose, EventType, IdentifierType

logger = logging.getLogger(__name__)

GENESIS = "0" * 64
RECEIPT_VERSION = "cdp-consent-receipt/1"
RESTRICTIVENESS: dict[str, int] = {
    Decision.DENIED: 3,
    Decision.WITHDRAWN: 3,
    Decision.EXPIRED: 2,
    Decision.GRANTED: 1,
}

# How long a grant of a seeded consent purpose holds: 13 months, as the banner keeps a choice
# (cdp-consent.js CHOICE_DAYS) and as the CNIL accepts for cookie consent.
CONSENT_VALIDITY_DAYS = 395
OPT_IN_REGIONS = {"EU": DefaultMode.OPT_IN, "UK": DefaultMode.OPT_IN, "BR": DefaultMode.OPT_IN}
DEFAULT_PURPOSES: list[dict[str, Any]] = [
    {
        "key": "necessary",
        "name": "Strictly necessary",
        "description": "Running the shop: cart, checkout, security, fraud prevention.",
        "legal_basis": LegalBasis.CONTRACT,
        "defaults": {"default": DefaultMode.OPT_OUT},
        "tcf_purposes": [],
        "dpv_purposes": ["dpv:ServiceProvision"],
        "data_categories": ["identifying", "transactional"],
        "retention_days": 730,
    },
    {
        "key": "analytics",
        "name": "Analytics",
        "description": "Measuring how the shop is used, to improve it.",
        "tcf_purposes": [8, 9],
        "dpv_purposes": ["dpv:ServiceOptimisation"],
        "data_categories": ["behavioural", "device"],
        "retention_days": 395,
        "consent_validity_days": CONSENT_VALIDITY_DAYS,
    },
    {
        "key": "personalization",
        "name": "Personalisation",
        "description": "Recommendations and content chosen for you.",
        "tcf_purposes": [5, 6],
        "dpv_purposes": ["dpv:PersonalisedServices"],
        "data_categories": ["behavioural", "preference"],
        "retention_days": 395,
        "consent_validity_days": CONSENT_VALIDITY_DAYS,
    },
    {
        "key": "marketing_email",
        "name": "Marketing email",
        "description": "News and offers by email.",
        "tcf_purposes": [],
        "dpv_purposes": ["dpv:DirectMarketing"],
        "data_categories": ["contact"],
        "retention_days": 730,
        "consent_validity_days": CONSENT_VALIDITY_DAYS,
    },
    {
        "key": "advertising",
        "name": "Advertising (sale or sharing)",
        "description": "Sharing data with advertising partners to show you relevant ads.",
        "sale_or_share": True,
        "tcf_purposes": [2, 3, 4, 7],
        "dpv_purposes": ["dpv:Advertising", "dpv:PersonalisedAdvertising"],
        "data_categories": ["behavioural", "identifying"],
        "retention_days": 180,
        "consent_validity_days": CONSENT_VALIDITY_DAYS,
    },
    {
        "key": "profiling",
        "name": "Profiling",
        "description": "Predicting interests and value from what you do.",
        "tcf_purposes": [3, 5],
        "dpv_purposes": ["dpv:CustomerProfiling"],
        "data_categories": ["behavioural", "inferred"],
        "retention_days": 395,
        "consent_validity_days": CONSENT_VALIDITY_DAYS,
    },
]


@transaction.atomic
def purposes_ensure_defaults(*, workspace: Any) -> list[Purpose]:
    """Seed the default purposes and a first banner notice, once per workspace."""
    seeded = Purpose.objects.filter(workspace=workspace).exists()
    if not seeded or not Notice.objects.filter(workspace=workspace).exists():
        # Two ingestion workers may meet a new workspace at once: one seeds, the other waits
        # for it, then finds the purposes (instead of failing on their unique key).
        _lock_subject(keyed_hash("consent-defaults", workspace.pk, "workspace", "seed"))
        seeded = Purpose.objects.filter(workspace=workspace).exists()
    if not seeded:
        for position, spec in enumerate(DEFAULT_PURPOSES):
            Purpose.objects.create(
                workspace=workspace,
                position=position,
                defaults=spec.get("defaults", {**OPT_IN_REGIONS, "default": DefaultMode.OPT_OUT}),
                **{k: v for k, v in spec.items() if k != "defaults"},
            )
    if not Notice.objects.filter(workspace=workspace).exists():
        notice = Notice.objects.create(workspace=workspace, key="banner", title="Cookie banner")
        notice_version_publish(
            notice=notice,
            text=(
                f"{workspace.name} and its partners use cookies and similar technologies for "
                "the purposes below. You can accept, reject or choose, and change your mind "
                "at any time."
            ),
            purposes=[p["key"] for p in DEFAULT_PURPOSES],
        )
    return list(Purpose.objects.filter(workspace=workspace))


@dataclass(frozen=True)
class NoticePublished:
    """A new notice version, and how many current grants it flagged for re-consent."""

    version: NoticeVersion
    reconsent_flagged: int


def notice_version_publish(
    *,
    notice: Notice,
    text: str,
    purposes: Sequence[str],
    language: str = "en",
    policy_url: str = "",
) -> NoticePublished:
    """A new version of a notice; versions are never edited. The people who granted a purpose
    it covers under an earlier version agreed to a text that has changed: once the version is
    committed, their grants are flagged for re-consent (`consent_states_reconsent_flag`, a
    transaction per batch)."""
    with transaction.atomic():
        last = notice.versions.order_by("-version").values_list("version", flat=True).first()
        version = NoticeVersion.objects.create(
            notice=notice,
            version=(last or 0) + 1,
            language=language,
            text=text,
            text_hash=hashlib.sha256(text.encode()).hexdigest(),
            purposes=list(purposes),
            policy_url=policy_url,
        )
    return NoticePublished(
        version=version, reconsent_flagged=consent_states_reconsent_flag(version=version)
    )


def notice_version_superseded_purposes(*, notice_version: NoticeVersion | None) -> set[str]:
    """The purpose keys that a later version of `notice_version`'s notice covers: a grant of
    one of them given under `notice_version` is to be asked again."""
    if notice_version is None:
        return set()
    later = NoticeVersion.objects.filter(
        notice_id=notice_version.notice_id, version__gt=notice_version.version
    ).values_list("purposes", flat=True)
    return {key for purposes in later for key in purposes}


# States flagged per statement when a notice version is published: a notice a whole workspace
# agreed to may meet every one of its profiles.
RECONSENT_BATCH_SIZE = 1000


def consent_states_reconsent_flag(*, version: NoticeVersion) -> int:
    """Flag for re-consent (`ConsentState.needs_reconsent`) every current grant of a purpose
    `version` covers whose granting record cites an earlier version of the same notice. The
    grant stands until the person answers: the gate reads the decision, as for any state
    flagged for re-consent, while the consent API (`needsReconsent`) and the preference centre
    ask again, and the person's next decision clears the flag. Grants citing no notice version,
    or another notice, are left: nothing says they were given to this text. Each flag is an
    audit entry (an update of the state, attributed to whoever published). Returns how many
    grants were flagged.

    Each batch is its own transaction (a savepoint within a caller's): a batch takes the
    ledger lock of each of its profiles, and one transaction over a whole workspace's grants
    would hold one lock per granting profile until it ends, beyond what PostgreSQL's lock
    table holds (`max_locks_per_transaction`), and across batches in an order no other writer
    follows. Flagging is idempotent: a run stopped halfway is completed by running it again
    (`manage.py flag_reconsent`)."""
    notice = version.notice
    found = ConsentState.objects.filter(
        workspace_id=notice.workspace_id,
        decision=Decision.GRANTED,
        needs_reconsent=False,
        purpose__key__in=list(version.purposes),
        record__notice_version__notice_id=notice.pk,
        record__notice_version__version__lt=version.version,
    )
    flagged, after = 0, None
    while True:
        batch = found if after is None else found.filter(pk__gt=after)
        rows = list(batch.order_by("pk").values_list("pk", "profile_id")[:RECONSENT_BATCH_SIZE])
        if not rows:
            return flagged
        after = rows[-1][0]
        flagged += _reconsent_flag_batch(found, rows)


@transaction.atomic
def _reconsent_flag_batch(found: Any, rows: list[tuple[Any, Any]]) -> int:
    # The profiles' ledger locks, then the states read again under them: a decision
    # committed meanwhile is the state flagged (or, if no longer a grant, left alone).
    _lock_profiles([profile_id for _pk, profile_id in rows])
    states = list(found.filter(pk__in=[pk for pk, _profile_id in rows]).order_by("pk"))
    if not states:
        return 0
    consent_cache_invalidate(profile_ids=[s.profile_id for s in states])
    ConsentState.objects.filter(pk__in=[s.pk for s in states]).update(needs_reconsent=True)
    changes: list[tuple[ConsentState | None, ConsentState | None]] = []
    for state in states:
        new = copy.copy(state)
        new.needs_reconsent = True
        changes.append((state, new))
    audit.log_changes(changes)
    return len(states)


@dataclass(frozen=True)
class Subject:
    """Who a consent is about: an identity (normalized value) and the profile it resolves to.
    A caller that holds the identity's blind index rather than its value (a linked identity
    whose value stays sealed) gives `index` instead, and an empty value."""

    type: str
    value: str
    profile_id: Any
    index: bytes | None = None

    def index_in(self, workspace_id: int) -> bytes:
        """The ledger's key of this subject: its blind index in the workspace."""
        if self.index is not None:
            return self.index
        return blind_index(workspace_id, self.type, self.value)


@dataclass(frozen=True)
class Evidence:
    method: str
    jurisdiction: str = ""
    source_id: int | None = None
    notice_version: NoticeVersion | None = None
    client_time: datetime | None = None
    ip: str | None = None
    user_agent: str | None = None
    page_url: str | None = None
    signals: dict[str, Any] | None = None


@dataclass(frozen=True)
class RecordedConsent:
    records: list[ConsentRecord]
    receipt: Receipt | None


def _canonical(record: ConsentRecord, purpose_key: str) -> bytes:
    data = {
        "id": str(record.id),
        "workspace": record.workspace_id,
        "profile": str(record.profile_id) if record.profile_id else None,
        "subject_type": record.subject_type,
        "subject_index": bytes(record.subject_index).hex(),
        "purpose": purpose_key,
        "decision": record.decision,
        "notice_version": record.notice_version_id,
        "method": record.method,
        "jurisdiction": record.jurisdiction,
        "source": record.source_id,
        "client_time": record.client_time.isoformat() if record.client_time else None,
        "server_time": record.server_time.isoformat(timespec="microseconds"),
        "proof": record.proof,
        "signals": record.signals,
    }
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()


def record_hash(prev_hash: str, record: ConsentRecord, purpose_key: str) -> str:
    return hashlib.sha256(prev_hash.encode() + _canonical(record, purpose_key)).hexdigest()


def _lock_subject(index: bytes) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s)", [int.from_bytes(index[:8], "big", signed=True)]
            )


def _proof(workspace_id: int, evidence: Evidence) -> dict[str, str]:
    proof = {}
    for name, value in (
        ("ip", evidence.ip),
        ("user_agent", evidence.user_agent),
        ("page_url", evidence.page_url),
    ):
        if value:
            proof[name] = keyed_hash("consent-proof", workspace_id, name, value).hex()
    return proof


def _record_new(
    workspace: Any,
    subject: Subject,
    index: bytes,
    purpose: Purpose,
    decision: str,
    evidence: Evidence,
    proof: dict[str, str],
    server_time: datetime,
    prev_hash: str,
) -> ConsentRecord:
    """An unsaved ledger record of one decision (its own hash is the caller's to set)."""
    return ConsentRecord(
        workspace=workspace,
        profile_id=subject.profile_id,
        subject_type=subject.type,
        subject_index=index,
        purpose=purpose,
        decision=decision,
        notice_version=evidence.notice_version,
        method=evidence.method,
        jurisdiction=evidence.jurisdiction[:16],
        source_id=evidence.source_id,
        client_time=evidence.client_time,
        server_time=server_time,
        proof=proof,
        signals=evidence.signals or {},
        prev_hash=prev_hash,
    )


@transaction.atomic
def consent_record(
    *,
    workspace: Any,
    subject: Subject,
    decisions: dict[str, str],
    evidence: Evidence,
    needs_reconsent: Iterable[str] = (),
    issue_receipt: bool = True,
) -> RecordedConsent:
    """Append one record per purpose decision to the subject's chain, update the current state
    of the subject's profile, and issue one signed receipt for the change."""
    purposes = {p.key: p for p in Purpose.objects.filter(workspace=workspace)}
    unknown = sorted(set(decisions) - purposes.keys())
    if unknown:
        raise PurposeUnknown(f"Unknown purpose(s): {', '.join(unknown)}.")
    bad = sorted(d for d in decisions.values() if d not in Decision.values)
    if bad:
        raise PurposeUnknown(f"Unknown decision(s): {', '.join(bad)}.", code="unknown_decision")
    if evidence.notice_version is not None and (
        evidence.notice_version.notice.workspace_id != workspace.pk
    ):
        raise NoticeVersionUnknown()
    index = subject.index_in(workspace.pk)
    _lock_subjects({index}, [subject.profile_id])
    prev, head_time = _chain_heads(workspace, {index}).get(index, (GENESIS, None))
    now = _after(timezone.now(), head_time)
    proof = _proof(workspace.pk, evidence)
    reconsent = set(needs_reconsent)
    records = []
    for key in sorted(decisions):
        record = _record_new(
            workspace, subject, index, purposes[key], decisions[key], evidence, proof, now, prev
        )
        record.record_hash = record_hash(prev, record, key)
        prev = record.record_hash
        records.append(record)
    ConsentRecord.objects.bulk_create(records)
    if subject.profile_id is not None:
        # What the profile held before, for the grant hook below (read under the locks).
        held = dict(
            ConsentState.objects.filter(
                profile_id=subject.profile_id, purpose_id__in=[r.purpose_id for r in records]
            ).values_list("purpose_id", "decision")
        )
        for record in records:
            _state_set(record, reconsent=record.purpose.key in reconsent)
        # Destinations that received the person must take them back: activation queues the
        # removals through this hook in this transaction, so a withdrawal and the removals it
        # owes commit together (a crash between the two cannot lose one).
        refused = sorted(r.purpose.key for r in records if r.decision != Decision.GRANTED)
        hooks.run_consent_change_hooks(workspace.pk, [subject.profile_id], refused)
        # And a grant lets activation send again whom it took back (it marks; syncs send):
        # only a purpose not granted before is a grant to act on (banners repeat theirs).
        granted = sorted(
            r.purpose.key
            for r in records
            if r.decision == Decision.GRANTED and held.get(r.purpose_id) != Decision.GRANTED
        )
        hooks.run_consent_grant_hooks(workspace.pk, [subject.profile_id], granted)
    receipt = receipt_issue(workspace=workspace, records=records) if issue_receipt else None
    return RecordedConsent(records=records, receipt=receipt)


@dataclass(frozen=True)
class ConsentChange:
    """The arguments of one `consent_record` call, for `consent_record_many`."""

    subject: Subject
    decisions: dict[str, str]
    evidence: Evidence
    needs_reconsent: frozenset[str] = frozenset()


def change_time(now: datetime, position: int) -> datetime:
    """The server time `consent_record_many(now=now)` gives the change at `position`: one
    microsecond apart, so that changes of one subject in one call keep their order."""
    return now + timedelta(microseconds=position)


@transaction.atomic
def consent_record_many(
    *,
    workspace: Any,
    changes: Sequence[ConsentChange],
    now: datetime | None = None,
    issue_receipt: bool = True,
) -> list[RecordedConsent]:
    """`consent_record` for each change, in order, set-wise (the ingestion pipeline records the
    consent signals of a whole drain at once): the same records and per-subject chains, current
    states and their audit entries, consent-change hooks and one signed receipt per change,
    with a handful of statements in all instead of some twenty per change. Change `n` gets the
    server time `change_time(now, n)`."""
    if not changes:
        return []
    purposes = {p.key: p for p in Purpose.objects.filter(workspace=workspace)}
    for change in changes:
        _check_change(workspace, purposes, change)
    indexes = [c.subject.index_in(workspace.pk) for c in changes]
    _lock_subjects(set(indexes), [c.subject.profile_id for c in changes])
    heads = _chain_heads(workspace, set(indexes))
    prev = {index: head for index, (head, _time) in heads.items()}
    last_time = {index: at for index, (_head, at) in heads.items()}
    now = now or timezone.now()
    grouped: list[list[ConsentRecord]] = []
    for position, (change, index) in enumerate(zip(changes, indexes, strict=True)):
        # After the subject's chain head, always: a record timed before it (a caller's clock
        # behind another's) would break the chain's order (it is verified by time).
        server_time = _after(change_time(now, position), last_time.get(index))
        last_time[index] = server_time
        evidence = change.evidence
        proof = _proof(workspace.pk, evidence)
        records = []
        for key in sorted(change.decisions):
            record = _record_new(
                workspace,
                change.subject,
                index,
                purposes[key],
                change.decisions[key],
                evidence,
                proof,
                server_time,
                prev.get(index, GENESIS),
            )
            record.record_hash = record_hash(record.prev_hash, record, key)
            prev[index] = record.record_hash
            records.append(record)
        grouped.append(records)
    bulk.insert(ConsentRecord, _RECORD_COLUMNS, bulk.model_rows(_flat(grouped), _RECORD_COLUMNS))
    newly_granted = _states_set_many(
        [
            (record, record.purpose.key in change.needs_reconsent)
            for change, records in zip(changes, grouped, strict=True)
            if change.subject.profile_id is not None
            for record in records
        ]
    )
    # As consent_record: profiles that refused purposes, one hook call per set of purposes;
    # then likewise the profiles that granted purposes.
    refused_by: dict[tuple[str, ...], list[Any]] = {}
    granted_by: dict[tuple[str, ...], list[Any]] = {}
    for change, records in zip(changes, grouped, strict=True):
        if change.subject.profile_id is None:
            continue
        refused = tuple(sorted(r.purpose.key for r in records if r.decision != Decision.GRANTED))
        granted = tuple(sorted(r.purpose.key for r in records if id(r) in newly_granted))
        for keys, by_keys in ((refused, refused_by), (granted, granted_by)):
            if keys:
                profiles = by_keys.setdefault(keys, [])
                if change.subject.profile_id not in profiles:
                    profiles.append(change.subject.profile_id)
    for refused, profile_ids in refused_by.items():
        hooks.run_consent_change_hooks(workspace.pk, profile_ids, list(refused))
    for granted, profile_ids in granted_by.items():
        hooks.run_consent_grant_hooks(workspace.pk, profile_ids, list(granted))
    receipts = (
        _receipts_issue_many(workspace=workspace, grouped=grouped)
        if issue_receipt
        else [None] * len(grouped)
    )
    return [
        RecordedConsent(records=records, receipt=receipt)
        for records, receipt in zip(grouped, receipts, strict=True)
    ]


_RECORD_COLUMNS = [
    f.name for f in ConsentRecord._meta.concrete_fields
]  # every column: ids and hashes are made in Python
_RECEIPT_COLUMNS = [f.name for f in Receipt._meta.concrete_fields]
_STATE_COLUMNS = ["workspace", "profile", "purpose", "decision", "record", "updated_at",
                  "needs_reconsent"]  # fmt: skip


def _flat(grouped: Sequence[Sequence[ConsentRecord]]) -> list[ConsentRecord]:
    return [record for records in grouped for record in records]


def _check_change(workspace: Any, purposes: dict[str, Purpose], change: ConsentChange) -> None:
    """The checks of consent_record, with the same errors."""
    unknown = sorted(set(change.decisions) - purposes.keys())
    if unknown:
        raise PurposeUnknown(f"Unknown purpose(s): {', '.join(unknown)}.")
    bad = sorted(d for d in change.decisions.values() if d not in Decision.values)
    if bad:
        raise PurposeUnknown(f"Unknown decision(s): {', '.join(bad)}.", code="unknown_decision")
    notice_version = change.evidence.notice_version
    if notice_version is not None and notice_version.notice.workspace_id != workspace.pk:
        raise NoticeVersionUnknown()


def _profile_lock_key(profile_id: Any) -> int:
    digest = hashlib.blake2b(b"consent-profile:" + str(profile_id).encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def _lock_subjects(indexes: set[bytes], profile_ids: Iterable[Any] = ()) -> None:
    """_lock_subject for several subjects, and a lock per profile they resolve to (a profile's
    consent state is written through any of its identities), in one statement, in a fixed
    order (no deadlock); held until the transaction ends."""
    if connection.vendor != "postgresql" or not indexes:
        return
    keys = {int.from_bytes(index[:8], "big", signed=True) for index in indexes}
    keys |= {_profile_lock_key(p) for p in profile_ids if p is not None}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k ORDER BY k",
            [sorted(keys)],
        )


def _lock_profiles(profile_ids: Iterable[Any]) -> None:
    """The per-profile locks of `_lock_subjects` alone, for a writer of current states that
    records nothing on a subject's chain (flagging states for re-consent)."""
    keys = sorted({_profile_lock_key(p) for p in profile_ids if p is not None})
    if connection.vendor != "postgresql" or not keys:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k ORDER BY k", [keys]
        )


def consent_subjects_lock(*, workspace: Any, subjects: Iterable[Subject]) -> None:
    """Take the locks `consent_record` and `consent_record_many` take for these subjects (and
    their profiles) before reading the current states a decision depends on: a change another
    transaction commits meanwhile is then seen, not overwritten by a decision made on what was
    there before it. Within a transaction; the recording call takes them again at no cost."""
    subjects = list(subjects)
    _lock_subjects({s.index_in(workspace.pk) for s in subjects}, [s.profile_id for s in subjects])


def _chain_heads(workspace: Any, indexes: set[bytes]) -> dict[bytes, tuple[str, datetime]]:
    """Each subject's latest record (what the next record chains to) as (hash, server time),
    in one query."""
    if not indexes:
        return {}
    latest = (
        ConsentRecord.objects.filter(workspace=workspace, subject_index__in=list(indexes))
        .annotate(
            rank=Window(
                RowNumber(),
                partition_by=[F("subject_index")],
                order_by=[F("server_time").desc(), F("id").desc()],
            )
        )
        .filter(rank=1)
        .values_list("subject_index", "record_hash", "server_time")
    )
    return {bytes(index): (found, at) for index, found, at in latest}


def _after(at: datetime, head_time: datetime | None) -> datetime:
    """`at`, or a microsecond after the chain head's time when `at` is not later."""
    if head_time is not None and at <= head_time:
        return head_time + timedelta(microseconds=1)
    return at


def _states_set_many(items: list[tuple[ConsentRecord, bool]]) -> set[int]:
    """_state_set for each (record, needs re-consent), in order, set-wise: one read of the
    current states, one upsert, and the audit entries the per-row saves would have written
    (a create or an update with its diff, for every write, in order). Returns the `id()` of
    the records that grant a purpose the profile did not hold granted just before."""
    if not items:
        return set()
    consent_cache_invalidate(profile_ids=[record.profile_id for record, _ in items])
    profile_ids = [record.profile_id for record, _ in items if record.profile_id is not None]
    purpose_ids = {record.purpose_id for record, _ in items}
    current: dict[tuple[Any, Any], ConsentState] = {
        (state.profile_id, state.purpose_id): state
        for state in ConsentState.objects.select_for_update().filter(
            profile_id__in=profile_ids, purpose_id__in=purpose_ids
        )
    }
    writes: list[tuple[ConsentState | None, ConsentState]] = []
    granted: set[int] = set()
    for record, reconsent in items:
        key = (record.profile_id, record.purpose_id)
        old = current.get(key)
        if record.decision == Decision.GRANTED and (
            old is None or old.decision != Decision.GRANTED
        ):
            granted.add(id(record))
        assert record.profile_id is not None  # a state belongs to a profile
        new = ConsentState(
            pk=old.pk if old is not None else None,
            workspace_id=record.workspace_id,
            profile_id=record.profile_id,
            purpose=record.purpose,
            decision=record.decision,
            record=record,
            updated_at=record.server_time,
            needs_reconsent=reconsent,
        )
        writes.append((old, new))
        current[key] = new
    # One upsert of each state's final value.
    final = {(n.profile_id, n.purpose_id): n for _old, n in writes}
    # Every write of a state names the id the upsert returned (new states got theirs there).
    pk_of = _states_upsert(list(final.values()))
    for _old, new in writes:
        new.pk = pk_of[(new.profile_id, new.purpose_id)]
    audit.log_changes(writes)
    return granted


def _states_upsert(states: Sequence[ConsentState]) -> dict[tuple[Any, Any], Any]:
    """Write each state's value in one upsert (rows without an id: an existing row keeps its
    own, and a state another transaction created meanwhile is updated, not duplicated);
    returns the id of each (profile, purpose)."""
    written = bulk.insert(
        ConsentState,
        _STATE_COLUMNS,
        bulk.model_rows(list(states), _STATE_COLUMNS),
        on_conflict="ON CONFLICT (profile_id, purpose_id) DO UPDATE SET "
        + ", ".join(
            f"{c} = excluded.{c}"
            for c in ("workspace_id", "decision", "record_id", "updated_at", "needs_reconsent")
        ),
        returning=["id", "profile", "purpose"],
    )
    return {(profile_id, purpose_id): pk for pk, profile_id, purpose_id in written}


def _receipts_issue_many(
    *, workspace: Any, grouped: Sequence[Sequence[ConsentRecord]]
) -> list[Receipt]:
    """receipt_issue for each change's records: one key read, one insert."""
    key = signing_key_current(workspace=workspace)
    private = _private_key(key)
    receipts = [_receipt_signed(workspace, key, private, records) for records in grouped]
    bulk.insert(Receipt, _RECEIPT_COLUMNS, bulk.model_rows(receipts, _RECEIPT_COLUMNS))
    return receipts


# A counter per profile in the cache; consent.selectors keys cached GET /v1/consent answers by
# it, so bumping it makes every cached answer of the profile's identities stale.
VERSION_CACHE_SECONDS = 24 * 3600


def consent_cache_version_key(profile_id: Any) -> str:
    return f"consent:v:{profile_id}"


def consent_cache_invalidate(*, profile_ids: Iterable[Any]) -> None:
    """Make every cached consent answer of these profiles stale once the current transaction
    commits (at once outside one). Every write that changes a ConsentState calls it."""
    keys = sorted({consent_cache_version_key(p) for p in profile_ids if p is not None})
    if not keys or settings.CDP_CONSENT_CACHE_SECONDS <= 0:
        return

    def bump() -> None:
        for key in keys:
            try:
                cache.incr(key)
            except ValueError:  # no counter yet, or evicted: start a fresh, unguessable one
                cache.add(key, time.time_ns(), VERSION_CACHE_SECONDS)

    transaction.on_commit(bump)


def _state_set(record: ConsentRecord, *, reconsent: bool) -> None:
    assert record.profile_id is not None  # a state belongs to a profile
    consent_cache_invalidate(profile_ids=[record.profile_id])
    ConsentState.objects.update_or_create(
        profile_id=record.profile_id,
        purpose=record.purpose,
        defaults={
            "workspace_id": record.workspace_id,
            "decision": record.decision,
            "record": record,
            "updated_at": record.server_time,
            "needs_reconsent": reconsent,
        },
    )


@transaction.atomic
def consent_apply_gpc(*, workspace: Any, subject: Subject, evidence: Evidence) -> RecordedConsent:
    """A Global Privacy Control signal: opt the subject out of every sale/share purpose, even
    over an earlier opt-in (then flagged so the site may ask again). Nothing is recorded when
    the subject is already opted out, so a header on every request is one record, not many.
    The state is read under the ledger locks, as consent_signals_apply reads it."""
    purposes = list(Purpose.objects.filter(workspace=workspace, sale_or_share=True))
    consent_subjects_lock(workspace=workspace, subjects=[subject])
    current = {}
    profile_id = subject.profile_id
    if profile_id is not None:
        current = dict(
            ConsentState.objects.filter(profile_id=profile_id, purpose__in=purposes).values_list(
                "purpose__key", "decision"
            )
        )
    change = gpc_change(purposes=purposes, current=current, subject=subject, evidence=evidence)
    if change is None:
        return RecordedConsent(records=[], receipt=None)
    return consent_record(
        workspace=workspace,
        subject=change.subject,
        decisions=change.decisions,
        evidence=change.evidence,
        needs_reconsent=change.needs_reconsent,
    )


def gpc_change(
    *, purposes: Iterable[Purpose], current: dict[str, str], subject: Subject, evidence: Evidence
) -> ConsentChange | None:
    """What a GPC signal records (see consent_apply_gpc), given the workspace's purposes and
    the profile's current decision per purpose key; None when it records nothing."""
    decisions: dict[str, str] = {
        p.key: Decision.DENIED
        for p in purposes
        if p.sale_or_share and current.get(p.key) not in (Decision.DENIED, Decision.WITHDRAWN)
    }
    if not decisions:
        return None
    overridden = frozenset(key for key in decisions if current.get(key) == Decision.GRANTED)
    signals = {**(evidence.signals or {}), "gpc": True}
    return ConsentChange(
        subject=subject,
        decisions=decisions,
        evidence=Evidence(**{**evidence.__dict__, "method": Method.GPC, "signals": signals}),
        needs_reconsent=overridden,
    )


def consent_states_merge(workspace_id: int, merges: Sequence[tuple[Any, Any]]) -> None:
    """Merge hook: the survivor keeps, per purpose, the most restrictive decision of the
    profiles merged into it; a disagreement is flagged for re-consent."""
    if not merges:
        return
    survivor_of = {absorbed: survivor for survivor, absorbed in merges}
    involved = set(survivor_of) | set(survivor_of.values())
    # The absorbed profiles too: their identities now resolve to the survivor.
    consent_cache_invalidate(profile_ids=involved)
    states = list(ConsentState.objects.filter(profile_id__in=involved).order_by("pk"))
    by_target: dict[tuple[Any, int], list[ConsentState]] = {}
    for state in states:
        target = survivor_of.get(state.profile_id, state.profile_id)
        by_target.setdefault((target, state.purpose_id), []).append(state)
    # Set-wise: one delete, one upsert, and the audit entries of the per-row deletes and saves
    # (per group: the absorbed states deleted, then the survivor's state written).
    changes: list[tuple[ConsentState | None, ConsentState | None]] = []
    written: dict[tuple[Any, int], ConsentState] = {}
    for (target, purpose_id), group in by_target.items():
        winner = max(group, key=lambda s: (RESTRICTIVENESS[s.decision], s.updated_at))
        conflict = len({s.decision for s in group}) > 1 or any(s.needs_reconsent for s in group)
        changes.extend((state, None) for state in group if state.profile_id != target)
        old = next((state for state in group if state.profile_id == target), None)
        new = ConsentState(
            pk=old.pk if old is not None else None,
            workspace_id=workspace_id,
            profile_id=target,
            purpose_id=purpose_id,
            decision=winner.decision,
            record_id=winner.record_id,
            updated_at=winner.updated_at,
            needs_reconsent=conflict,
        )
        changes.append((old, new))
        written[(target, purpose_id)] = new
    gone = [old.pk for old, new in changes if new is None and old is not None]
    if gone:
        with connection.cursor() as cursor:
            table = ConsentState._meta.db_table
            for start in range(0, len(gone), 500):
                chunk = gone[start : start + 500]
                cursor.execute(
                    f"DELETE FROM {table} WHERE id IN ({', '.join(['%s'] * len(chunk))})",  # noqa: S608
                    chunk,
                )
    if written:
        for key, pk in _states_upsert(list(written.values())).items():
            written[key].pk = pk
    audit.log_changes(changes)
    # A merge that turns a grant into the stricter decision of the other side is a refusal
    # for whatever received the granted side: the same hook a recorded withdrawal runs, so
    # activation takes the person back from those destinations in this transaction. One that
    # gives the survivor a grant it did not hold (the other side granted, it had not decided)
    # runs the grant hooks, as a recorded grant would: the next incremental sync sends it.
    refused: dict[Any, set[Any]] = defaultdict(set)
    granted: dict[Any, set[Any]] = defaultdict(set)
    for (target, purpose_id), group in by_target.items():
        decided = written[(target, purpose_id)].decision
        if decided != Decision.GRANTED and any(s.decision == Decision.GRANTED for s in group):
            refused[target].add(purpose_id)
        held = any(s.profile_id == target and s.decision == Decision.GRANTED for s in group)
        if decided == Decision.GRANTED and not held:
            granted[target].add(purpose_id)
    _run_transition_hooks(workspace_id, refused, hooks.run_consent_change_hooks)
    _run_transition_hooks(workspace_id, granted, hooks.run_consent_grant_hooks)


def consent_states_unmerge(workspace_id: int, unmerges: Sequence[tuple[Any, Any]]) -> None:
    """Unmerge hook: both profiles of each undone merge get the consent state their own
    ledger gives (consent_states_replay), replacing the combined state of the merge. A purpose
    that comes out granted where the combined state did not hold it granted runs the
    consent-grant hooks (activation marks the person to be sent again), one that no longer
    comes out granted the consent-change hooks (taken back), as a recorded decision would."""
    from consent import selectors  # selectors import this module

    granted: dict[Any, set[Any]] = defaultdict(set)  # profile -> purposes granted anew
    refused: dict[Any, set[Any]] = defaultdict(set)  # profile -> purposes no longer granted
    for survivor_id, restored_id in unmerges:
        pair = [survivor_id, restored_id]
        consent_cache_invalidate(profile_ids=pair)
        held = set(
            ConsentState.objects.filter(profile_id__in=pair, decision=Decision.GRANTED).values_list(
                "profile_id", "purpose_id"
            )
        )
        ConsentState.objects.filter(profile_id__in=pair).delete()
        states = [
            ConsentState(
                workspace_id=workspace_id,
                profile_id=profile_id,
                purpose_id=purpose_id,
                decision=state.decision,
                record_id=state.record_id,
                updated_at=state.updated_at,
                needs_reconsent=state.needs_reconsent,
            )
            for profile_id in pair
            for purpose_id, state in selectors.consent_states_replay(
                workspace_id=workspace_id, profile_id=profile_id
            ).items()
        ]
        ConsentState.objects.bulk_create(states)
        now_held = {(s.profile_id, s.purpose_id) for s in states if s.decision == Decision.GRANTED}
        for profile_id, purpose_id in now_held - held:
            granted[profile_id].add(purpose_id)
        for profile_id, purpose_id in held - now_held:
            refused[profile_id].add(purpose_id)
    _run_transition_hooks(workspace_id, refused, hooks.run_consent_change_hooks)
    _run_transition_hooks(workspace_id, granted, hooks.run_consent_grant_hooks)


def _run_transition_hooks(
    workspace_id: int, purposes_by_profile: dict[Any, set[Any]], run: Any
) -> None:
    """`run(workspace_id, profile_ids, purpose_keys)` once per set of purposes."""
    if not purposes_by_profile:
        return
    all_ids = {pid for ids in purposes_by_profile.values() for pid in ids}
    keys = dict(Purpose.objects.filter(pk__in=all_ids).values_list("pk", "key"))
    by_keys: dict[tuple[str, ...], list[Any]] = defaultdict(list)
    for profile_id, purpose_ids in sorted(purposes_by_profile.items(), key=lambda i: str(i[0])):
        by_keys[tuple(sorted(keys[p] for p in purpose_ids))].append(profile_id)
    for purpose_keys, profile_ids in by_keys.items():
        run(workspace_id, profile_ids, list(purpose_keys))


# --- expiry ----------------------------------------------------------------------------------

# Grants expired per transaction: a first sweep after a validity is set may meet a whole
# workspace's old grants, and one transaction over all of them would hold their locks (and the
# records, states and receipts in memory) for the whole run.
EXPIRY_BATCH_SIZE = 500


def consent_grants_expire(*, workspace: Any, now: datetime | None = None) -> int:
    """Record `expired` (method `expiry`) for every current grant older than its purpose's
    validity (consent.selectors.consent_grants_expired), through consent_record_many: the
    records go on the granting subject's chain, with states, receipts, audit entries and the
    consent-change hooks (destinations take the person back) as for any refusal. Returns how
    many grants expired. Each batch commits on its own: a run cut short leaves the rest to the
    next one, and a grant already expired is not a grant any more, so a second run records
    nothing."""
    now = now or timezone.now()
    expired, after = 0, None
    while True:
        with transaction.atomic():
            done, after = _grants_expire_batch(workspace, now, after)
        expired += done
        if after is None:
            return expired


def _grants_expire_batch(workspace: Any, now: datetime, after: Any) -> tuple[int, Any]:
    """Expire the next EXPIRY_BATCH_SIZE expired grants by state id after `after`: (how many
    were recorded, the last state id looked at, or None when there were none)."""
    from consent import selectors  # selectors import this module

    found = selectors.consent_grants_expired(workspace=workspace, now=now)
    if after is not None:
        found = found.filter(pk__gt=after)
    batch = list(
        found.order_by("pk").values_list(
            "pk", "profile_id", "purpose_id", "record_id",
            "record__subject_type", "record__subject_index",
        )[:EXPIRY_BATCH_SIZE]
    )  # fmt: skip
    if not batch:
        return 0, None
    # The subject of each grant is the identity that gave it (by blind index: its value stays
    # sealed), so the expiry continues that identity's chain; the profile is the state's, which
    # a merge may have moved from the one the grant was recorded for.
    subjects = {
        (kind, bytes(index), profile_id): Subject(
            type=kind, value="", profile_id=profile_id, index=bytes(index)
        )
        for _pk, profile_id, _purpose, _record, kind, index in batch
    }
    consent_subjects_lock(workspace=workspace, subjects=subjects.values())
    # Under the locks: a grant given again (a new record) or refused since the read is left.
    current = set(
        ConsentState.objects.filter(
            pk__in=[row[0] for row in batch], decision=Decision.GRANTED
        ).values_list("pk", "profile_id", "record_id")
    )
    purposes = {p.pk: p for p in Purpose.objects.filter(workspace=workspace)}
    grants: dict[tuple[str, bytes, Any], dict[int, Any]] = {}
    for pk, profile_id, purpose_id, record_id, kind, index in batch:
        if (pk, profile_id, record_id) in current:
            grants.setdefault((kind, bytes(index), profile_id), {})[purpose_id] = record_id
    changes = []
    for key in sorted(grants, key=lambda k: (k[1], k[0], str(k[2]))):
        ended = {purposes[purpose_id]: record_id for purpose_id, record_id in grants[key].items()}
        changes.append(
            ConsentChange(
                subject=subjects[key],
                decisions={purpose.key: Decision.EXPIRED for purpose in ended},
                evidence=Evidence(
                    method=Method.EXPIRY,
                    # Which grant each expiry ends, and the validity it was held to then.
                    signals={
                        "expiry": {
                            purpose.key: {
                                "grant": str(record_id),
                                "validity_days": purpose.consent_validity_days,
                            }
                            for purpose, record_id in ended.items()
                        }
                    },
                ),
            )
        )
    consent_record_many(workspace=workspace, changes=changes, now=now)
    return sum(len(change.decisions) for change in changes), batch[-1][0]


@dataclass(frozen=True)
class ExpirySweep:
    workspace: str
    expired: int
    error: str = ""


def consent_grants_expire_all(
    *, now: datetime | None = None, workspaces: Iterable[Any] | None = None
) -> list[ExpirySweep]:
    """The sweep over every workspace (the daily beat task), or over `workspaces` (the
    command). A workspace whose run fails is reported and logged (the class of the error only:
    a message might quote a value) and the others still run."""
    now = now or timezone.now()
    results = []
    for workspace in profile_selectors.workspace_list() if workspaces is None else workspaces:
        try:
            expired = consent_grants_expire(workspace=workspace, now=now)
        except Exception as exc:
            logger.error(
                "consent expiry failed in workspace %s (%s)", workspace.pk, type(exc).__name__
            )
            results.append(ExpirySweep(workspace.slug, 0, type(exc).__name__))
        else:
            results.append(ExpirySweep(workspace.slug, expired))
    return results


# --- receipts --------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@transaction.atomic
def signing_key_current(*, workspace: Any) -> SigningKey:
    """The workspace's active receipt key, made on first use."""
    key = SigningKey.objects.filter(workspace=workspace, retired_at__isnull=True).first()
    if key is not None:
        return key
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    raw_private = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    key = SigningKey(
        workspace=workspace,
        kid=f"{workspace.slug}-{_b64(hashlib.sha256(public).digest()[:9])}",
        public_key=public,
        data_key_id=profile_services.data_key_create_unowned(
            workspace_id=workspace.pk, purpose=DataKeyPurpose.SIGNING
        ),
    )
    key.private_key = _b64(raw_private)
    key.save(force_insert=True)
    return key


def receipt_body(*, workspace: Any, records: Sequence[ConsentRecord], receipt_id: str) -> dict:
    """The receipt's fields, after ISO/IEC TS 27560 and the Kantara Consent Receipt v1.1. The
    principal is named by a pseudonymous id, never by an email or other identifier value.

    One change may hold records collected in different ways (a banner's explicit choices and
    the decisions its TC string implies): each purpose names its record's `collectionMethod`,
    and `collectionMethods` lists them all, in record order. The top-level `collectionMethod`
    is kept for readers of earlier receipts: the first record's (the explicit choice's, when
    there is one)."""
    first = records[0]
    notice = first.notice_version
    return {
        "version": RECEIPT_VERSION,
        "conformsTo": ["ISO/IEC TS 27560:2023", "Kantara Consent Receipt v1.1"],
        "receiptId": receipt_id,
        # The workspace's slug: a verifier fetches its keys by it
        # (/.well-known/cdp-receipt-keys.json?workspace=<slug>), and the check binds the two.
        "workspace": workspace.slug,
        "recordIds": [str(r.id) for r in records],
        "recordHashes": [r.record_hash for r in records],
        "jurisdiction": first.jurisdiction,
        "consentTimestamp": first.server_time.isoformat(),
        "collectionMethod": first.method,
        "collectionMethods": list(dict.fromkeys(r.method for r in records)),
        "language": notice.language if notice else "en",
        "piiPrincipalId": f"{first.subject_type}:{bytes(first.subject_index).hex()}",
        "piiControllers": [
            {"piiController": workspace.name, "contact": settings.DEFAULT_FROM_EMAIL}
        ],
        "policyUrl": notice.policy_url if notice else "",
        "notice": (
            {"key": notice.notice.key, "version": notice.version, "textHash": notice.text_hash}
            if notice
            else None
        ),
        "services": [
            {
                "service": workspace.name,
                "purposes": [
                    {
                        "purpose": r.purpose.key,
                        "purposeCategory": r.purpose.dpv_purposes,
                        "legalBasis": r.purpose.legal_basis,
                        "consentStatus": r.decision,
                        "collectionMethod": r.method,
                        "piiCategory": r.purpose.data_categories,
                        "termination": (
                            f"P{r.purpose.retention_days}D" if r.purpose.retention_days else ""
                        ),
                        "thirdPartyDisclosure": r.purpose.sale_or_share,
                        # ISO/IEC TS 27560's validity duration: how long a grant holds.
                        "validity": _validity(r.purpose),
                    }
                    for r in records
                ],
            }
        ],
        "withdrawalMethod": "POST /v1/consent, or the preference centre",
        "signals": first.signals,
    }


def _validity(purpose: Purpose) -> str:
    days = purpose_consent_validity(purpose)
    return f"P{days}D" if days else ""


def receipt_issue(*, workspace: Any, records: Sequence[ConsentRecord]) -> Receipt:
    """Sign and store the receipt of one consent change."""
    key = signing_key_current(workspace=workspace)
    receipt = _receipt_signed(workspace, key, _private_key(key), records)
    receipt.save(force_insert=True)
    return receipt


def _private_key(key: SigningKey) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(
        base64.urlsafe_b64decode(key.private_key + "=" * (-len(key.private_key) % 4))
    )


def _receipt_signed(
    workspace: Any,
    key: SigningKey,
    private: Ed25519PrivateKey,
    records: Sequence[ConsentRecord],
) -> Receipt:
    """The (unsaved) signed receipt of one change's records."""
    receipt = Receipt(
        workspace=workspace,
        profile_id=records[0].profile_id,
        subject_index=records[0].subject_index,
        records=[str(r.id) for r in records],
        kid=key.kid,
        created_at=records[0].server_time,
    )
    receipt.body = receipt_body(workspace=workspace, records=records, receipt_id=str(receipt.id))
    receipt.signature = _b64(private.sign(canonical_json(receipt.body)))
    return receipt


def refusal_recorded_as(*, current: str | None, decision: str) -> str:
    """The decision the ledger records for `decision` when the subject's current decision is
    `current`: a denial of what the person had granted is a withdrawal (GDPR Art. 7(3): a
    consent taken back, which the report counts and destinations act on as one), any other
    decision as sent. The one rule of every writer of people's choices: the consent API, the
    preference centre and the preferences carried by events."""
    if decision == Decision.DENIED and current == Decision.GRANTED:
        return Decision.WITHDRAWN
    return decision


# --- preference centre -----------------------------------------------------------------------

PREFERENCE_LINK_SALT = "cdp-preference-centre"
PREFERENCE_LINK_MAX_AGE = timedelta(days=30)
# Purposes that rest on a basis other than consent: shown, never asked (the gate allows them).
NOT_ASKED_BASES = frozenset(
    {
        LegalBasis.CONTRACT,
        LegalBasis.LEGAL_OBLIGATION,
        LegalBasis.VITAL_INTERESTS,
        LegalBasis.PUBLIC_TASK,
    }
)


@dataclass(frozen=True)
class PreferenceLink:
    workspace_id: int
    profile_id: str


def preference_link_create(*, workspace: Any, profile_id: Any, base_url: str) -> str:
    """A link to the hosted preference centre of one profile, signed and valid for 30 days;
    it names no identifier, only the workspace and profile ids."""
    token = signing.TimestampSigner(salt=PREFERENCE_LINK_SALT).sign_object(
        {"w": workspace.pk, "p": str(profile_id)}
    )
    return base_url.rstrip("/") + reverse("consent-preference-centre", args=[token])


def preference_link_read(*, token: str) -> PreferenceLink | None:
    """The workspace and profile a preference-centre token was signed for; None when it was
    tampered with, is malformed or is older than 30 days."""
    try:
        data = signing.TimestampSigner(salt=PREFERENCE_LINK_SALT).unsign_object(
            token, max_age=PREFERENCE_LINK_MAX_AGE
        )
    except (signing.BadSignature, ValueError, TypeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("w"), int):
        return None
    if not isinstance(data.get("p"), str):
        return None
    return PreferenceLink(workspace_id=data["w"], profile_id=data["p"])


def purpose_is_asked(purpose: Purpose) -> bool:
    """Whether a purpose rests on consent (or an objection to legitimate interests), so that
    a person decides it; the others are required to run the service."""
    return purpose.legal_basis not in NOT_ASKED_BASES


def purpose_consent_validity(purpose: Purpose) -> int | None:
    """The days a grant of the purpose holds before the expiry sweep ends it (as
    selectors.consent_grants_expired reads them); None when its grants do not expire."""
    if purpose.legal_basis != LegalBasis.CONSENT:
        return None
    return purpose.consent_validity_days or None


@transaction.atomic
def preference_centre_save(
    *,
    workspace: Any,
    profile: Any,
    choices: dict[str, bool],
    ip: str | None = None,
    user_agent: str | None = None,
    page_url: str | None = None,
) -> RecordedConsent:
    """Record what a known person chose in the preference centre (purpose key -> allowed),
    against the profile's strongest identity. Only changes are recorded: a purpose chosen as
    it already stands adds nothing to the ledger; taking back a granted consent is recorded
    as withdrawn."""
    asked = {p.key for p in Purpose.objects.filter(workspace=workspace) if purpose_is_asked(p)}
    unknown = sorted(set(choices) - asked)
    if unknown:
        raise PurposeUnknown(f"Not a purpose to choose: {', '.join(unknown)}.")
    current = dict(
        ConsentState.objects.filter(workspace=workspace, profile_id=profile.pk).values_list(
            "purpose__key", "decision"
        )
    )
    decisions: dict[str, str] = {}
    for key, allowed in choices.items():
        before = current.get(key)
        if before is not None and (before == Decision.GRANTED) == allowed:
            continue  # chosen as it stands
        decisions[key] = refusal_recorded_as(
            current=before, decision=Decision.GRANTED if allowed else Decision.DENIED
        )
    if not decisions:
        return RecordedConsent(records=[], receipt=None)
    from consent import selectors  # selectors import this module

    identity = profile_selectors.profile_primary_identity(workspace=workspace, profile=profile)
    # A profile with no identity left (all erased but the row) is still a subject: its id.
    kind, value = identity if identity else ("profile_id", str(profile.pk))
    return consent_record(
        workspace=workspace,
        subject=Subject(kind, value, profile.pk),
        decisions=decisions,
        evidence=Evidence(
            method=Method.PREFERENCE_CENTRE,
            notice_version=selectors.notice_version_current(workspace=workspace),
            ip=ip,
            user_agent=user_agent,
            page_url=page_url,
        ),
    )


# --- consent API -----------------------------------------------------------------------------

CONSENT_EVENT = "Consent Preference Updated"
BANNER_NOTICE = "banner"
# What a person (or their banner) may say; `expired` is the ledger's own word.
SUBMITTED_DECISIONS = frozenset({Decision.GRANTED, Decision.DENIED, Decision.WITHDRAWN})
MAX_SUBMITTED_DECISIONS = 64
METHOD_NOT_FOR_CLIENTS = (
    'Send "banner" or "api" as the method: the other methods are recorded by the server itself.'
)


@dataclass(frozen=True)
class ConsentConfig:
    """What a banner needs: the purposes with their default for the jurisdiction, and the
    notice text it must show (the newest version of the banner notice)."""

    workspace_name: str
    jurisdiction: str
    purposes: list[Purpose]
    defaults: dict[str, str]
    # Not decided by the person (a basis other than consent or legitimate interests).
    required: dict[str, bool]
    # The days the server holds a grant (purpose_consent_validity): a banner must ask again
    # by then, or the site would go on reading a choice the server has expired.
    validity_days: dict[str, int | None]
    notice: NoticeVersion | None


def consent_config_get(*, workspace: Any, jurisdiction: str) -> ConsentConfig:
    """The banner's configuration for a jurisdiction hint. Seeds the default purposes and the
    first banner notice on first use, hence a service."""
    purposes = sorted(
        purposes_ensure_defaults(workspace=workspace), key=lambda p: (p.position, p.key)
    )
    notice = (
        NoticeVersion.objects.filter(notice__workspace=workspace, notice__key=BANNER_NOTICE)
        .select_related("notice")
        .order_by("-version")
        .first()
    )
    return ConsentConfig(
        workspace_name=workspace.name,
        jurisdiction=jurisdiction,
        purposes=purposes,
        defaults={p.key: p.default_mode(jurisdiction) for p in purposes},
        required={p.key: not purpose_is_asked(p) for p in purposes},
        validity_days={p.key: purpose_consent_validity(p) for p in purposes},
        notice=notice,
    )


@dataclass(frozen=True)
class ConsentSubmission:
    """One consent change as a banner, app or server sends it with a write key (identifiers as
    given; decisions already in the ledger's words; `method` one of `CLIENT_METHODS`)."""

    decisions: dict[str, str]
    user_id: str | None = None
    anonymous_id: str | None = None
    method: str = Method.API
    notice_version: int | None = None
    jurisdiction: str = ""
    tc_string: str | None = None
    gpc: bool | None = None
    client_time: datetime | None = None
    ip: str | None = None
    user_agent: str | None = None
    page_url: str | None = None


@dataclass(frozen=True)
class ConsentSubmitted:
    """What a submission did: the receipt of the change (None when nothing changed), every
    receipt issued (the change's, then GPC's), and the state after it of the purposes it
    decided."""

    profile_id: Any
    receipt: Receipt | None
    receipts: list[Receipt]
    state: dict[str, str]
    needs_reconsent: list[str]


def _submission_subject(submission: ConsentSubmission) -> tuple[str, str]:
    """The identity the consent is about: the userId when given, else the anonymousId."""
    for kind, raw in (
        (IdentifierType.USER_ID, submission.user_id),
        (IdentifierType.ANONYMOUS_ID, submission.anonymous_id),
    ):
        if raw is None:
            continue
        value = profile_selectors.identifier_normalize(identifier_type=kind, value=raw)
        if value is None:
            raise InvalidInput(f"{kind} is not a usable identifier.", code="missing_identity")
        return kind, value
    raise InvalidInput("Send an anonymousId or a userId.", code="missing_identity")


def _check_decisions(workspace: Any, decisions: dict[str, str]) -> list[Purpose]:
    purposes = purposes_ensure_defaults(workspace=workspace)
    if len(decisions) > MAX_SUBMITTED_DECISIONS:
        raise InvalidInput("Too many decisions.", code="too_many_decisions")
    unknown = sorted(set(decisions) - {p.key for p in purposes})
    if unknown:
        raise PurposeUnknown(f"Unknown purpose(s): {', '.join(unknown)}.")
    bad = sorted({d for d in decisions.values() if d not in SUBMITTED_DECISIONS})
    if bad:
        raise PurposeUnknown(
            f"Unknown decision(s): {', '.join(bad)}; use granted, denied or withdrawn.",
            code="unknown_decision",
        )
    return purposes


@transaction.atomic
def consent_submit(*, source: Any, submission: ConsentSubmission) -> ConsentSubmitted:
    """Record a consent change sent through the consent API.

    The person's profile is resolved the way Segment's consent management does it: one track
    event `Consent Preference Updated` (properties: the decisions) is ingested with the
    request's ids, which creates or attaches the profile and merges as usual. Decisions a TC
    string implies for purposes mapped to TCF purposes are recorded too (method `tcf`) unless
    decided explicitly; both go into one receipt. A denial of a purpose the profile has granted
    is recorded as a withdrawal (`refusal_recorded_as`). A GPC signal then opts out of
    sale/share purposes (its own record and receipt). Any refusal rolls everything back."""
    rate_limit_consume(source_id=source.pk, limit=source.rate_limit_per_minute, count=1)
    if submission.method not in CLIENT_METHODS:
        raise InvalidInput(METHOD_NOT_FOR_CLIENTS, code="invalid_method")
    workspace = source.workspace
    purposes = _check_decisions(workspace, submission.decisions)
    kind, value = _submission_subject(submission)
    notice_version = None
    if submission.notice_version is not None:
        notice_version = (
            NoticeVersion.objects.filter(
                notice__workspace=workspace,
                notice__key=BANNER_NOTICE,
                version=submission.notice_version,
            )
            .select_related("notice")
            .first()
        )
        if notice_version is None:
            raise NoticeVersionUnknown()
    derived: dict[str, str] = {}
    if submission.tc_string:
        tc = tcf.tc_string_decode(submission.tc_string)
        derived = {
            key: decision
            for key, decision in tcf.tcf_decisions(tc=tc, purposes=purposes).items()
            if key not in submission.decisions
        }
    if not submission.decisions and not derived and not submission.gpc:
        raise InvalidInput(
            "Send at least one decision (or a TC string or GPC signal).", code="missing_decisions"
        )

    received_at = timezone.now()
    context: dict[str, Any] = {}
    if submission.page_url:
        context["page"] = {"url": submission.page_url}
    if submission.user_agent:
        context["userAgent"] = submission.user_agent
    outcome = profile_services.ingest_messages(
        source=source,
        messages=[
            InboundMessage(
                type=EventType.TRACK,
                message_id=f"consent-{uuid7()}",
                received_at=received_at,
                timestamp=received_at,
                original_timestamp=submission.client_time,
                user_id=submission.user_id,
                anonymous_id=submission.anonymous_id,
                name=CONSENT_EVENT,
                properties={**derived, **submission.decisions},
                context=context,
                ip=submission.ip,
            )
        ],
    )
    profile_id = outcome.profile_ids[0]
    if profile_id is None or (
        profile_selectors.profile_find_by_identifier(
            workspace=workspace, identifier_type=kind, value=value
        )
        is None
    ):
        # Ingestion refused the identifier (a blocked value such as "undefined", or a
        # suppressed subject): consent keyed by it would belong to no one, or to everyone.
        raise InvalidInput(f"{kind} is not a usable identifier.", code="missing_identity")

    subject = Subject(kind, value, profile_id)
    signals: dict[str, Any] = {}
    if submission.gpc is not None:
        signals["gpc"] = submission.gpc
    if submission.tc_string:
        signals["tc_string"] = submission.tc_string
    evidence = Evidence(
        method=submission.method,
        jurisdiction=submission.jurisdiction,
        source_id=source.pk,
        notice_version=notice_version,
        client_time=submission.client_time,
        ip=submission.ip,
        user_agent=submission.user_agent,
        page_url=submission.page_url,
        signals=signals,
    )
    # A refusal of what the profile has granted is recorded as a withdrawal, as the preference
    # centre and the events' preferences record it; read under the ledger locks, so a change
    # committed meanwhile is the one compared with.
    consent_subjects_lock(workspace=workspace, subjects=[subject])
    current = dict(
        ConsentState.objects.filter(workspace=workspace, profile_id=profile_id).values_list(
            "purpose__key", "decision"
        )
    )
    # A grant given under a notice version that a later one has superseded (a banner showing
    # a text it had cached) is flagged for re-consent, as publishing the later one flagged the
    # grants given before it.
    superseded = notice_version_superseded_purposes(notice_version=notice_version)
    records: list[ConsentRecord] = []
    for decisions, method in ((submission.decisions, submission.method), (derived, Method.TCF)):
        if decisions:
            recorded = {
                key: refusal_recorded_as(current=current.get(key), decision=decision)
                for key, decision in decisions.items()
            }
            records += consent_record(
                workspace=workspace,
                subject=subject,
                decisions=recorded,
                evidence=Evidence(**{**evidence.__dict__, "method": method}),
                needs_reconsent={
                    key for key, decision in recorded.items() if decision == Decision.GRANTED
                }
                & superseded,
                issue_receipt=False,
            ).records
    receipts = [receipt_issue(workspace=workspace, records=records)] if records else []
    if submission.gpc:
        gpc = consent_apply_gpc(workspace=workspace, subject=subject, evidence=evidence)
        receipts += [gpc.receipt] if gpc.receipt else []

    # The answer covers the purposes this submission decided (explicitly, by TC string or by
    # GPC), as they now stand: anyone holding the public write key may post a decision for any
    # userId, and the person's other choices are none of the poster's business.
    answered = set(submission.decisions) | set(derived)
    if submission.gpc:
        answered |= {p.key for p in purposes if p.sale_or_share}
    states = list(
        ConsentState.objects.filter(
            workspace=workspace, profile_id=profile_id, purpose__key__in=answered
        )
        .select_related("purpose")
        .order_by("purpose__position", "purpose__key")
    )
    return ConsentSubmitted(
        profile_id=profile_id,
        receipt=receipts[0] if receipts else None,
        receipts=receipts,
        state={s.purpose.key: s.decision for s in states},
        needs_reconsent=[s.purpose.key for s in states if s.needs_reconsent],
    )


# --- signing for other apps ------------------------------------------------------------------


def workspace_sign(*, workspace: Any, body: dict[str, Any]) -> tuple[str, str]:
    """Sign the canonical JSON of `body` with the workspace's current key (the one that signs
    receipts, published at /.well-known/cdp-receipt-keys.json?workspace=<slug>): (signature,
    kid). Governance signs erasure certificates with it, so one published key verifies both."""
    key = signing_key_current(workspace=workspace)
    return _b64(_private_key(key).sign(canonical_json(body))), key.kid
