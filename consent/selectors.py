"""Consent reads, and the consent gate every activation asks before sending anything."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import OuterRef, Q, QuerySet, Subquery

from consent.enums import Decision, DefaultMode, LegalBasis
from consent.models import ConsentRecord, ConsentState, Purpose, Receipt, SigningKey
from consent.services import GENESIS, record_hash
from profiles import selectors as profile_selectors

ALLOWING = (Decision.GRANTED,)


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
    interests until objected to); never restricted profiles."""
    profiles = profile_selectors.profile_list(workspace=workspace).filter(restricted=False)
    decision = _decision_at(purpose, at)
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
    profiles = profiles.annotate(consent_decision=decision)
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


def receipt_public_keys(*, workspace: Any | None = None) -> list[dict[str, Any]]:
    keys = SigningKey.objects.all()
    if workspace is not None:
        keys = keys.filter(workspace=workspace)

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
