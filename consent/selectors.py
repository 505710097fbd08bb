"""Consent reads, and the consent gate every activation asks before sending anything."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.db.models import OuterRef, Q, QuerySet, Subquery

from cdp.core.crypto import blind_index
from consent.enums import Decision, DefaultMode, LegalBasis
from consent.models import (
    ConsentRecord,
    ConsentState,
    NoticeVersion,
    Purpose,
    Receipt,
    SigningKey,
)
from consent.services import GENESIS, canonical_json, record_hash
from profiles import selectors as profile_selectors

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
    first) that the workspace knows; nothing is said about identities it does not know."""
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
    against published keys (the /.well-known/cdp-receipt-keys.json entries): the Ed25519
    signature over the canonical JSON of the body, by the key the receipt names."""
    kid = receipt.get("kid")
    body = receipt.get("body")
    signature = receipt.get("signature")
    if not isinstance(kid, str) or not isinstance(body, dict) or not isinstance(signature, str):
        return ReceiptCheck(False, str(kid or ""), "not a receipt: id, body, signature and kid")
    if receipt.get("alg", RECEIPT_ALG) != RECEIPT_ALG:
        return ReceiptCheck(False, kid, f"unsupported algorithm {receipt.get('alg')!r}")
    if "id" in receipt and body.get("receiptId") != receipt["id"]:
        return ReceiptCheck(False, kid, "the receipt id does not match its body")
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
