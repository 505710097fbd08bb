"""Consent reads, and the consent gate every activation asks before sending anything."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Exists, Min, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from cdp.core.crypto import blind_index
from consent.enums import Decision, DefaultMode, LegalBasis, Method
from consent.models import (
    ConsentRecord,
    ConsentState,
    NoticeVersion,
    Purpose,
    Receipt,
    SigningKey,
)
from consent.services import (
    GENESIS,
    VERSION_CACHE_SECONDS,
    canonical_json,
    consent_cache_version_key,
    record_hash,
)
from profiles import selectors as profile_selectors
from profiles.identifiers import normalize_identifier_type

ALLOWING = (Decision.GRANTED,)
RECEIPT_ALG = "EdDSA"


def purpose_list(*, workspace: Any) -> QuerySet[Purpose]:
    return Purpose.objects.filter(workspace=workspace).order_by("position", "key")


def purpose_get(*, workspace: Any, key: str) -> Purpose | None:
    return Purpose.objects.filter(workspace=workspace, key=key).first()


def _decision_at(purpose: Purpose, at: datetime | None) -> Any:
    """The decision of each profile for `purpose`: the current state, or the ledger at `at`."""
    if at is None:
        return Subquery(
            ConsentState.objects.filter(profile_id=OuterRef("pk"), purpose=purpose).values(
                "decision"
            )[:1]
        )
    return Subquery(
        ConsentRecord.objects.filter(
            profile_id=OuterRef("pk"), purpose=purpose, server_time__lte=at
        )
        .order_by("-server_time", "-id")
        .values("decision")[:1]
    )


def consent_gate_profiles(
    *, workspace: Any, purpose: Purpose, at: datetime | None = None, jurisdiction: str = ""
) -> QuerySet[Any]:
    """The active profiles of a workspace that may be processed for `purpose` at `at` (now by
    default), as one SQL query: consent granted, or another legal basis that holds (legitimate
    interests until objected to); never restricted profiles. Unordered: the gate answers
    which profiles; an ORDER BY over hundreds of thousands of rows costs a sort, and makes
    PostgreSQL plan a streamed read (a server-side cursor) as a slow nested loop."""
    profiles = (
        profile_selectors.profile_list(workspace=workspace).filter(restricted=False).order_by()
    )
    basis = purpose.legal_basis
    if basis in (
        LegalBasis.CONTRACT,
        LegalBasis.LEGAL_OBLIGATION,
        LegalBasis.VITAL_INTERESTS,
        LegalBasis.PUBLIC_TASK,
    ):
        return profiles
    opt_out = basis == LegalBasis.LEGITIMATE_INTERESTS or (
        purpose.default_mode(jurisdiction or "default") == DefaultMode.OPT_OUT
    )
    if at is None:
        # The current state holds at most one row per profile and purpose, so "its decision
        # allows" is EXISTS and "no decision, or one that allows" is NOT EXISTS of one that
        # does not. PostgreSQL plans these as a hash semi/anti join over the purpose's states;
        # a scalar subquery in the WHERE clause was a subplan run once per profile, several
        # times slower over a million profiles (bench/consent.py, docs/benchmarks.md).
        states = ConsentState.objects.filter(profile_id=OuterRef("pk"), purpose=purpose)
        if opt_out:
            return profiles.filter(~Exists(states.exclude(decision__in=ALLOWING)))
        return profiles.filter(Exists(states.filter(decision__in=ALLOWING)))
    profiles = profiles.annotate(consent_decision=_decision_at(purpose, at))
    if opt_out:
        return profiles.filter(Q(consent_decision__isnull=True) | Q(consent_decision__in=ALLOWING))
    return profiles.filter(consent_decision__in=ALLOWING)


def consent_allows(
    *, workspace: Any, profile_id: Any, purpose: Purpose, at: datetime | None = None
) -> bool:
    """The gate for one profile."""
    return (
        consent_gate_profiles(workspace=workspace, purpose=purpose, at=at)
        .filter(pk=profile_id)
        .exists()
    )


def consent_gate_basis(
    *, workspace: Any, purpose: Purpose, profile_ids: Sequence[Any]
) -> dict[Any, str]:
    """What allows each of `profile_ids` to be processed for `purpose` now, for those the gate
    allows: the id of the granting ConsentRecord behind the profile's current state when the
    purpose rests on consent, else the name of its legal basis. Stricter than the gate for
    consent: a purpose whose default is opt-out allows a profile that never decided, but
    nothing proves that consent, so such a profile gets no basis here. Activation sends only
    profiles with a basis and writes it to its delivery ledger."""
    ids = list(profile_ids)
    if not ids:
        return {}
    allowed = consent_gate_profiles(workspace=workspace, purpose=purpose).filter(pk__in=ids)
    if purpose.legal_basis != LegalBasis.CONSENT:
        return {pk: str(purpose.legal_basis) for pk in allowed.values_list("pk", flat=True)}
    # The state names the record behind it; the record itself must be the allowing decision
    # (a state whose record says otherwise was changed outside the services: no basis).
    granted = ConsentState.objects.filter(
        workspace=workspace,
        purpose=purpose,
        decision__in=ALLOWING,
        record__decision__in=ALLOWING,
        record__purpose=purpose,
        profile_id__in=allowed.values("pk"),
    ).values_list("profile_id", "record_id")
    return {profile_id: str(record_id) for profile_id, record_id in granted}


def consent_grants_expired(
    *, workspace: Any, now: datetime | None = None
) -> QuerySet[ConsentState]:
    """Current grants older than their purpose's validity (`Purpose.consent_validity_days`, on
    purposes that rest on consent), aged from the granting record's server time; a grant as
    old as the validity has expired, as the banner's choice has (cdp-consent.js)."""
    now = now or timezone.now()
    past = Q()
    for purpose_id, days in Purpose.objects.filter(
        workspace=workspace, legal_basis=LegalBasis.CONSENT, consent_validity_days__isnull=False
    ).values_list("pk", "consent_validity_days"):
        assert days is not None  # filtered above; for the type checker
        past |= Q(purpose_id=purpose_id, record__server_time__lte=now - timedelta(days=days))
    if not past:
        return ConsentState.objects.none()
    return ConsentState.objects.filter(workspace=workspace, decision=Decision.GRANTED).filter(past)


def consent_records_describe(*, workspace: Any, record_ids: Sequence[Any]) -> list[dict[str, Any]]:
    """Consent records by id, as evidence for a reader (activation's "why was this person
    sent?"): decision, purpose, method, jurisdiction, notice version, times, the names of the
    hashed proofs and the signals, and the record's hash in its chain. No identifier value."""
    ids = []
    for value in record_ids:
        try:
            ids.append(uuid.UUID(str(value)))
        except (ValueError, TypeError):
            continue
    rows = (
        ConsentRecord.objects.filter(workspace=workspace, pk__in=ids)
        .select_related("purpose", "notice_version__notice", "source")
        .order_by("server_time", "id")
    )
    return [
        {
            "id": str(r.pk),
            "purpose": r.purpose.key,
            "decision": r.decision,
            "method": r.method,
            "jurisdiction": r.jurisdiction,
            "notice": (
                {
                    "key": r.notice_version.notice.key,
                    "version": r.notice_version.version,
                    "text_hash": r.notice_version.text_hash,
                }
                if r.notice_version
                else None
            ),
            "source": r.source.name if r.source else None,
            "server_time": r.server_time.isoformat(),
            "client_time": r.client_time.isoformat() if r.client_time else None,
            "proof": sorted(r.proof),
            "signals": r.signals,
            "record_hash": r.record_hash,
        }
        for r in rows
    ]


def consent_state_for_profile(*, workspace: Any, profile_id: Any) -> dict[str, dict[str, Any]]:
    """Purpose key -> current decision, when it was set, and the re-consent flag."""
    return {
        s.purpose.key: {
            "decision": s.decision,
            "updated_at": s.updated_at,
            "needs_reconsent": s.needs_reconsent,
            "record": str(s.record_id),
        }
        for s in ConsentState.objects.filter(workspace=workspace, profile_id=profile_id)
        .select_related("purpose")
        .order_by("purpose__position")
    }


def consent_states_for_profiles(
    *, workspace: Any, profile_ids: Sequence[Any]
) -> dict[Any, dict[str, dict[str, Any]]]:
    """consent_state_for_profile for several profiles in one query: profile id -> purpose key
    -> the same dict (a profile without a state maps to {})."""
    found: dict[Any, dict[str, dict[str, Any]]] = {pid: {} for pid in profile_ids}
    if not profile_ids:
        return found
    for state in (
        ConsentState.objects.filter(workspace=workspace, profile_id__in=list(profile_ids))
        .select_related("purpose")
        .order_by("profile_id", "purpose__position")
    ):
        found.setdefault(state.profile_id, {})[state.purpose.key] = {
            "decision": state.decision,
            "updated_at": state.updated_at,
            "needs_reconsent": state.needs_reconsent,
            "record": str(state.record_id),
        }
    return found


def consent_history(*, workspace: Any, profile_id: Any) -> QuerySet[ConsentRecord]:
    return (
        ConsentRecord.objects.filter(workspace=workspace, profile_id=profile_id)
        .select_related("purpose", "notice_version")
        .order_by("-server_time", "-id")
    )


@dataclass(frozen=True)
class ChainCheck:
    checked: int
    broken_record: Any | None


def consent_chain_verify(*, workspace: Any, subject_index: bytes) -> ChainCheck:
    """Recompute a subject's chain of records; name the first that does not hold."""
    prev = GENESIS
    checked = 0
    for record in (
        ConsentRecord.objects.filter(workspace=workspace, subject_index=subject_index)
        .select_related("purpose")
        .order_by("server_time", "id")
    ):
        checked += 1
        if record.prev_hash != prev or record.record_hash != record_hash(
            prev, record, record.purpose.key
        ):
            return ChainCheck(checked, record.pk)
        prev = record.record_hash
    return ChainCheck(checked, None)


def receipt_get(*, workspace: Any, receipt_id: Any) -> Receipt | None:
    try:
        return Receipt.objects.filter(workspace=workspace, pk=receipt_id).first()
    except (ValueError, TypeError):
        return None


def receipt_public_keys(
    *,
    workspace: Any | None = None,
    workspace_ids: Sequence[int] | None = None,
    workspace_slug: str | None = None,
    kid: str | None = None,
) -> list[dict[str, Any]]:
    """The signing keys as published (/.well-known/cdp-receipt-keys.json?workspace=<slug>, or
    ?kid=<kid> for the one key a receipt names), of `workspace`, `workspace_ids`,
    `workspace_slug` or `kid` only; of every workspace when none is given, for the server's own
    checks (never for the public resource: it would list every tenant's slug)."""
    keys = SigningKey.objects.all()
    if workspace is not None:
        keys = keys.filter(workspace=workspace)
    if workspace_ids is not None:
        keys = keys.filter(workspace_id__in=list(workspace_ids))
    if workspace_slug is not None:
        keys = keys.filter(workspace__slug=workspace_slug)
    if kid is not None:
        keys = keys.filter(kid=kid)

    return [
        {
            "kid": k.kid,
            "kty": "OKP",
            "crv": "Ed25519",
            "x": base64.urlsafe_b64encode(bytes(k.public_key)).rstrip(b"=").decode(),
            "workspace": k.workspace.slug,
            "created": k.created_at.isoformat(),
            "retired": k.retired_at.isoformat() if k.retired_at else None,
            "sha256": hashlib.sha256(bytes(k.public_key)).hexdigest(),
        }
        for k in keys.select_related("workspace").order_by("created_at")
    ]


# --- consent API -----------------------------------------------------------------------------

BANNER_NOTICE_KEY = "banner"


def notice_version_current(
    *, workspace: Any, notice_key: str = BANNER_NOTICE_KEY
) -> NoticeVersion | None:
    """The newest version of one of the workspace's notices (the banner by default)."""
    return (
        NoticeVersion.objects.filter(notice__workspace=workspace, notice__key=notice_key)
        .select_related("notice")
        .order_by("-version")
        .first()
    )


def notice_version_get(
    *, workspace: Any, version: int, notice_key: str = BANNER_NOTICE_KEY
) -> NoticeVersion | None:
    """One version of one of the workspace's notices (the banner by default)."""
    return (
        NoticeVersion.objects.filter(
            notice__workspace=workspace, notice__key=notice_key, version=version
        )
        .select_related("notice")
        .first()
    )


@dataclass(frozen=True)
class IdentityConsent:
    """The current decisions of the profile an identity resolves to (empty when none)."""

    state: dict[str, str]
    needs_reconsent: list[str]


def consent_state_for_identity(
    *, workspace: Any, identities: Sequence[tuple[str, str]]
) -> IdentityConsent:
    """Current consent of the profile of the first of `identities` ((type, value), strongest
    first) that the workspace knows; nothing is said about identities it does not know.
    Answers come from the cache when CDP_CONSENT_CACHE_SECONDS > 0 (see consent_cache_*)."""
    if _consent_cache_seconds() > 0:
        return _consent_state_for_identity_cached(workspace=workspace, identities=identities)
    for identifier_type, value in identities:
        profile = profile_selectors.profile_find_by_identifier(
            workspace=workspace, identifier_type=identifier_type, value=value
        )
        if profile is not None:
            state = consent_state_for_profile(workspace=workspace, profile_id=profile.pk)
            return IdentityConsent(
                state={key: entry["decision"] for key, entry in state.items()},
                needs_reconsent=[key for key, entry in state.items() if entry["needs_reconsent"]],
            )
    return IdentityConsent(state={}, needs_reconsent=[])


def receipt_get_for_subject(
    *, workspace: Any, receipt_id: str, identities: Sequence[tuple[str, str]]
) -> Receipt | None:
    """A receipt of the workspace, only for a caller who names its subject: one of
    `identities` ((type, value)) must have the receipt's subject index. The index is computed
    before the lookup and compared in constant time, so a miss of either kind looks alike."""
    indexes = []
    for identifier_type, value in identities:
        normalized = profile_selectors.identifier_normalize(
            identifier_type=identifier_type, value=value
        )
        if normalized is not None:
            indexes.append(blind_index(workspace.pk, identifier_type, normalized))
    try:
        key = uuid.UUID(str(receipt_id))
    except ValueError:
        return None
    receipt = Receipt.objects.filter(workspace=workspace, pk=key).first()
    if receipt is None:
        return None
    subject = bytes(receipt.subject_index)
    matched = False
    for index in indexes:
        matched |= hmac.compare_digest(subject, index)
    return receipt if matched else None


@dataclass(frozen=True)
class ReceiptCheck:
    """The outcome of verifying a receipt's signature: `reason` says why it does not hold."""

    valid: bool
    kid: str
    reason: str = ""


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def receipt_verify(*, receipt: dict[str, Any], keys: Sequence[dict[str, Any]]) -> ReceiptCheck:
    """Verify a receipt as the API hands it out ({"id", "body", "signature", "kid", "alg"})
    against published keys (the /.well-known/cdp-receipt-keys.json?workspace=<slug> entries,
    or the ?kid=<kid> one for a receipt whose body names no workspace): the Ed25519 signature
    over the canonical JSON of the body, by the key the receipt names, and, when the body
    names its workspace (receipts signed since it does), a key of that workspace: another
    workspace's key does not vouch for this one's receipts."""
    check = signed_document_verify(
        document=receipt, keys=keys, id_field="receiptId", what="receipt"
    )
    body = receipt["body"] if check.valid else {}
    if "workspace" not in body:
        return check
    key = next(k for k in keys if isinstance(k, dict) and k.get("kid") == check.kid)
    if key.get("workspace") != body["workspace"]:
        return ReceiptCheck(False, check.kid, f"key {check.kid!r} belongs to another workspace")
    return check


def signed_document_verify(
    *, document: dict[str, Any], keys: Sequence[dict[str, Any]], id_field: str, what: str
) -> ReceiptCheck:
    """Verify a document signed with a workspace's receipt key (`services.workspace_sign`: a
    consent receipt, an erasure certificate), as {"id", "body", "signature", "kid", "alg"}.
    When the document names an `id`, its body must name the same one in `id_field`; `what`
    names the document in the reasons."""
    kid = document.get("kid")
    body = document.get("body")
    signature = document.get("signature")
    if not isinstance(kid, str) or not isinstance(body, dict) or not isinstance(signature, str):
        return ReceiptCheck(False, str(kid or ""), f"not a {what}: id, body, signature and kid")
    if document.get("alg", RECEIPT_ALG) != RECEIPT_ALG:
        return ReceiptCheck(False, kid, f"unsupported algorithm {document.get('alg')!r}")
    if "id" in document and body.get(id_field) != document["id"]:
        return ReceiptCheck(False, kid, f"the {what} id does not match its body")
    key = next((k for k in keys if isinstance(k, dict) and k.get("kid") == kid), None)
    if key is None:
        return ReceiptCheck(False, kid, f"unknown key id {kid!r}")
    if key.get("kty") != "OKP" or key.get("crv") != "Ed25519" or not isinstance(key.get("x"), str):
        return ReceiptCheck(False, kid, f"key {kid!r} is not an Ed25519 public key")
    try:
        public = Ed25519PublicKey.from_public_bytes(_b64decode(key["x"]))
        public.verify(_b64decode(signature), canonical_json(body))
    except (InvalidSignature, ValueError, binascii.Error):
        return ReceiptCheck(False, kid, "bad signature: the body or the signature was changed")
    return ReceiptCheck(True, kid)


# --- the admin's consent timeline and report ---------------------------------------------------


def consent_history_for_profiles(*, workspace: Any, profile_ids: Any) -> QuerySet[ConsentRecord]:
    """Records of a profile and of the profiles merged into it, newest first."""
    return (
        ConsentRecord.objects.filter(workspace=workspace, profile_id__in=list(profile_ids))
        .select_related("purpose", "notice_version__notice")
        .order_by("-server_time", "-id")
    )


@dataclass(frozen=True)
class SubjectChainCheck:
    """The chain check of one subject, named by its type only: the blind index stays out."""

    subject_type: str
    first_seen: datetime
    checked: int
    broken_record: Any | None


def consent_chain_verify_profiles(*, workspace: Any, profile_ids: Any) -> list[SubjectChainCheck]:
    """Verify the whole chain of every subject that has records on these profiles (including
    its records on other profiles), oldest subject first."""
    subjects = (
        ConsentRecord.objects.filter(workspace=workspace, profile_id__in=list(profile_ids))
        .values("subject_type", "subject_index")
        .annotate(first_seen=Min("server_time"))
        .order_by("first_seen", "subject_type")
    )
    checks = []
    for subject in subjects:
        check = consent_chain_verify(
            workspace=workspace, subject_index=bytes(subject["subject_index"])
        )
        checks.append(
            SubjectChainCheck(
                subject_type=subject["subject_type"],
                first_seen=subject["first_seen"],
                checked=check.checked,
                broken_record=check.broken_record,
            )
        )
    return checks


REPORT_WINDOW_DAYS = 30


@dataclass(frozen=True)
class PurposeRates:
    """Current states of one purpose; `withdrawals_recent` counts ledger rows in the window."""

    key: str
    name: str
    states: int
    granted: int
    denied: int
    withdrawn: int
    # Grants that outlived their purpose's validity (services.consent_grants_expire) and were
    # not given again since.
    expired: int
    withdrawals_recent: int

    @property
    def granted_percent(self) -> float | None:
        """Granted states as a share of all current states of the purpose (None without any)."""
        return round(100 * self.granted / self.states, 1) if self.states else None


@dataclass(frozen=True)
class ConsentReport:
    since: datetime
    purposes: list[PurposeRates]
    withdrawals_recent: int
    gpc_opt_outs: int
    gpc_opt_outs_recent: int
    needs_reconsent_profiles: int


def consent_reconsent_profile_ids(*, workspace: Any) -> QuerySet[Any]:
    """Ids of the profiles with at least one purpose flagged for re-consent."""
    return (
        ConsentState.objects.filter(workspace=workspace, needs_reconsent=True)
        .values_list("profile_id", flat=True)
        .order_by("profile_id")
        .distinct()
    )


def consent_report(
    *, workspace: Any, now: datetime | None = None, days: int = REPORT_WINDOW_DAYS
) -> ConsentReport:
    """Consent rates per purpose over the current states, withdrawals and GPC opt-outs (ledger
    rows with method gpc) in total and over the last `days`, and profiles to ask again."""
    since = (now or timezone.now()) - timedelta(days=days)
    by_state: dict[int, dict[str, Any]] = {
        row["purpose_id"]: dict(row)
        for row in ConsentState.objects.filter(workspace=workspace)
        .values("purpose_id")
        .annotate(
            states=Count("id"),
            granted=Count("id", filter=Q(decision=Decision.GRANTED)),
            denied=Count("id", filter=Q(decision=Decision.DENIED)),
            withdrawn=Count("id", filter=Q(decision=Decision.WITHDRAWN)),
            expired=Count("id", filter=Q(decision=Decision.EXPIRED)),
        )
        .order_by()
    }
    recent_withdrawals = dict(
        ConsentRecord.objects.filter(
            workspace=workspace, decision=Decision.WITHDRAWN, server_time__gte=since
        )
        .values("purpose_id")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("purpose_id", "n")
    )
    gpc = ConsentRecord.objects.filter(workspace=workspace, method=Method.GPC).aggregate(
        total=Count("id"), recent=Count("id", filter=Q(server_time__gte=since))
    )
    purposes = []
    for purpose in purpose_list(workspace=workspace):
        row: dict[str, Any] = by_state.get(purpose.pk, {})
        purposes.append(
            PurposeRates(
                key=purpose.key,
                name=purpose.name,
                states=row.get("states", 0),
                granted=row.get("granted", 0),
                denied=row.get("denied", 0),
                withdrawn=row.get("withdrawn", 0),
                expired=row.get("expired", 0),
                withdrawals_recent=recent_withdrawals.get(purpose.pk, 0),
            )
        )
    return ConsentReport(
        since=since,
        purposes=purposes,
        withdrawals_recent=sum(recent_withdrawals.values()),
        gpc_opt_outs=gpc["total"],
        gpc_opt_outs_recent=gpc["recent"],
        needs_reconsent_profiles=consent_reconsent_profile_ids(workspace=workspace).count(),
    )


# --- the cache of GET /v1/consent answers ------------------------------------------------------
#
# Two entries per answer: identity -> (profile id, profile version) for a short time, and the
# profile's answer by (profile id, version). Every write that changes a profile's states bumps
# the profile's version after commit (services.consent_cache_invalidate), so a cached answer of any
# identity of that profile stops matching at once: the identity entry names the old version.
# A merge bumps the absorbed profiles too, so their identities are resolved again. A missing
# version is created as a fresh random-ish number, never 0, so an evicted counter cannot bring
# back answers cached under an earlier one. Unknown identities are never cached (a consent
# given later creates the profile). The one race left, an identity resolved just before a merge
# commits and its version read just after, lasts at most IDENTITY_CACHE_SECONDS.

IDENTITY_CACHE_SECONDS = 30


def _consent_cache_seconds() -> int:
    return int(getattr(settings, "CDP_CONSENT_CACHE_SECONDS", 0) or 0)


def _identity_key(workspace_id: Any, index: bytes) -> str:
    return f"consent:id:{workspace_id}:{index.hex()}"


def _state_key(workspace_id: Any, profile_id: Any, version: int) -> str:
    return f"consent:s:{workspace_id}:{profile_id}:{version}"


def _version_get(profile_id: Any) -> int:
    key = consent_cache_version_key(profile_id)
    version = cache.get(key)
    if version is None:
        cache.add(key, time.time_ns(), VERSION_CACHE_SECONDS)
        version = cache.get(key)
    return int(version or 0)


def _profile_answer(workspace: Any, profile_id: Any) -> IdentityConsent:
    state = consent_state_for_profile(workspace=workspace, profile_id=profile_id)
    return IdentityConsent(
        state={key: entry["decision"] for key, entry in state.items()},
        needs_reconsent=[key for key, entry in state.items() if entry["needs_reconsent"]],
    )


def _consent_state_for_identity_cached(
    *, workspace: Any, identities: Sequence[tuple[str, str]]
) -> IdentityConsent:
    seconds = _consent_cache_seconds()
    for identifier_type, value in identities:
        kind = normalize_identifier_type(identifier_type)
        normalized = profile_selectors.identifier_normalize(
            identifier_type=identifier_type, value=value
        )
        if not kind or normalized is None:
            continue
        identity_key = _identity_key(workspace.pk, blind_index(workspace.pk, kind, normalized))
        entry = cache.get(identity_key)
        if entry is not None:
            profile_id, version = entry
            version_key = consent_cache_version_key(profile_id)
            state_key = _state_key(workspace.pk, profile_id, version)
            found = cache.get_many([version_key, state_key])
            if found.get(version_key) == version:
                answer = found.get(state_key)
                if answer is None:
                    answer = _profile_answer(workspace, profile_id)
                    cache.set(state_key, answer, seconds)
                return answer
        profile = profile_selectors.profile_find_by_identifier(
            workspace=workspace, identifier_type=identifier_type, value=value
        )
        if profile is None:
            continue
        # The version is read before the states, so a write committing in between leaves
        # an answer under a version it has already bumped: stale, never served.
        version = _version_get(profile.pk)
        cache.set(identity_key, (str(profile.pk), version), min(seconds, IDENTITY_CACHE_SECONDS))
        answer = _profile_answer(workspace, profile.pk)
        cache.set(_state_key(workspace.pk, profile.pk, version), answer, seconds)
        return answer
    return IdentityConsent(state={}, needs_reconsent=[])


# --- replaying a profile's consent history (after an unmerge) ---------------------------


@dataclass
class ReplayedState:
    decision: str
    record_id: Any
    updated_at: datetime
    needs_reconsent: bool


def _combine(group: list[ReplayedState]) -> ReplayedState:
    """What consent_states_merge keeps for one purpose of a merge."""
    from consent.services import RESTRICTIVENESS

    winner = max(group, key=lambda s: (RESTRICTIVENESS[s.decision], s.updated_at))
    conflict = len({s.decision for s in group}) > 1 or any(s.needs_reconsent for s in group)
    return ReplayedState(winner.decision, winner.record_id, winner.updated_at, conflict)


def consent_states_replay(*, workspace_id: int, profile_id: Any) -> dict[int, ReplayedState]:
    """An active profile's consent state per purpose, recomputed from its own ledger: the
    records of its identities and the merges still in place among its members, replayed in
    time order with the rules the live path applies (latest record per purpose; a GPC record
    over a grant asks again; a merge keeps the most restrictive decision and flags a
    disagreement; a notice version published asks again for the grants given under an earlier
    version of its notice, and a grant citing a version already superseded is asked again at
    once)."""
    members, merges = profile_selectors.profile_merge_history(profile_id=profile_id)
    origin_of = {
        (kind, index): origin
        for _pid, origin, kind, index in profile_selectors.profile_identity_subjects(
            profile_ids=[profile_id]
        )
    }
    if not origin_of:
        return {}
    records = (
        ConsentRecord.objects.filter(
            workspace_id=workspace_id,
            subject_index__in=sorted({index for _kind, index in origin_of}),
            profile_id__isnull=False,
        )
        .order_by("server_time", "id")
        .values_list(
            "id", "subject_type", "subject_index", "purpose_id", "decision", "method",
            "server_time", "notice_version_id",
        )
    )  # fmt: skip
    # Notice versions as services.consent_states_reconsent_flag and consent_submit read them:
    # id -> (notice, version), and each publication with the purposes it covers.
    purpose_ids = dict(Purpose.objects.filter(workspace_id=workspace_id).values_list("key", "pk"))
    cited: dict[Any, tuple[int, int]] = {}
    publications: list[tuple[datetime, int, int, set[int]]] = []
    for pk, notice_id, number, keys, published_at in NoticeVersion.objects.filter(
        notice__workspace_id=workspace_id
    ).values_list("pk", "notice_id", "version", "purposes", "published_at"):
        cited[pk] = (notice_id, number)
        covered = {purpose_ids[key] for key in keys if key in purpose_ids}
        publications.append((published_at, notice_id, number, covered))
    record_cites: dict[Any, tuple[int, int] | None] = {}

    def superseded(record_id: Any, purpose_id: int, at: datetime) -> bool:
        """Whether the grant `record_id` cites a version that one published by `at` and
        covering `purpose_id` supersedes."""
        version = record_cites.get(record_id)
        return version is not None and any(
            notice_id == version[0] and number > version[1] and purpose_id in covered
            for published_at, notice_id, number, covered in publications
            if published_at <= at
        )

    parent: dict[Any, Any] = {m: m for m in members}

    def find(p: Any) -> Any:
        while parent.get(p, p) != p:
            p = parent[p]
        return p

    states: dict[Any, dict[int, ReplayedState]] = {m: {} for m in members}
    # Merges before records at the same instant: a consent submission resolves (and merges)
    # its subject before it records.
    timeline: list[tuple[datetime, int, Any]] = [(at, 0, (s, a)) for s, a, at in merges]
    for rid, kind, index, purpose_id, decision, method, at, notice_version_id in records:
        origin = origin_of.get((kind, bytes(index)))
        if origin is not None:
            record_cites[rid] = cited.get(notice_version_id)
            timeline.append((at, 1, (rid, origin, purpose_id, decision, method)))
    # A publication after the records of its instant: it flags what stands when it commits.
    timeline += [
        (at, 2, (notice_id, number, covered)) for at, notice_id, number, covered in publications
    ]
    timeline.sort(key=lambda item: (item[0], item[1]))
    for at, kind_of_step, step in timeline:
        if kind_of_step == 2:
            notice_id, number, covered = step
            for current in states.values():
                for purpose_id in covered & set(current):
                    state = current[purpose_id]
                    version = record_cites.get(state.record_id)
                    if (
                        state.decision == Decision.GRANTED
                        and version is not None
                        and version[0] == notice_id
                        and version[1] < number
                    ):
                        state.needs_reconsent = True
            continue
        if kind_of_step == 0:
            survivor, absorbed = find(step[0]), find(step[1])
            if survivor == absorbed:
                continue
            target, gone = states.setdefault(survivor, {}), states.pop(absorbed, {})
            for purpose_id in set(target) | set(gone):
                group = [s[purpose_id] for s in (target, gone) if purpose_id in s]
                target[purpose_id] = _combine(group)
            parent[absorbed] = survivor
            continue
        rid, origin, purpose_id, decision, method = step
        current = states.setdefault(find(origin), {})
        before = current.get(purpose_id)
        reconsent = (
            method == Method.GPC and before is not None and before.decision == Decision.GRANTED
        ) or (decision == Decision.GRANTED and superseded(rid, purpose_id, at))
        current[purpose_id] = ReplayedState(decision, rid, at, reconsent)
    return states.get(find(profile_id), {})
