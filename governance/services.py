"""Governance writes and checks: the audit chain (data-subject requests arrive later)."""

from __future__ import annotations

from auditlog import get_logentry_model

from governance import chain


def audit_chain_verify() -> chain.ChainVerification:
    """Recompute the audit chain from the first entry; report the first broken one."""
    return chain.verify(get_logentry_model())
