"""Who is in an audience, as the management API and the admin show it: each member's profile
id with their userId and anonymousId, masked unless revealed.

Those two identifiers are the ones the workspace's own systems assigned (its login id and the
SDK's browser id), so a member list is useful to them; they are still sealed personal data.
Showing whether a member has one needs no decryption (the identity rows say so); showing the
value is a reveal: an ACCESS audit entry per member, with the reason, before any decryption."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db import transaction

from cdp.core.audit import record_access
from profiles import selectors as profile_selectors
from profiles.enums import IdentifierType

MEMBER_IDENTIFIERS = (IdentifierType.USER_ID.value, IdentifierType.ANONYMOUS_ID.value)
MASK = "••••••"


def identifier_types(*, workspace: Any, profile_ids: Iterable[Any]) -> dict[Any, list[str]]:
    """Profile id -> the identifier types it has (sorted), from the identity rows, nothing
    decrypted. Ids of another workspace get no types."""
    ids = list(dict.fromkeys(profile_ids))
    kinds: dict[Any, set[str]] = {pk: set() for pk in ids}
    for profile_id, _origin, kind, _index in profile_selectors.profile_identity_subjects(
        profile_ids=list(
            profile_selectors.profile_ids_in_workspace(workspace=workspace, profile_ids=ids)
        )
    ):
        if profile_id in kinds:
            kinds[profile_id].add(kind)
    return {pk: sorted(found) for pk, found in kinds.items()}


def members_identifiers_masked(
    *, workspace: Any, profile_ids: Iterable[Any]
) -> dict[Any, dict[str, str | None]]:
    """Profile id -> {user_id, anonymous_id}: the mask where the member has one, else None
    (nothing decrypted)."""
    present = identifier_types(workspace=workspace, profile_ids=profile_ids)
    return {
        pk: {kind: (MASK if kind in kinds else None) for kind in MEMBER_IDENTIFIERS}
        for pk, kinds in present.items()
    }


@transaction.atomic
def members_identifiers_reveal(
    *, workspace: Any, profiles: Sequence[Any], actor: Any, reason: str, via: str
) -> dict[Any, dict[str, str | None]]:
    """Profile id -> {user_id, anonymous_id} decrypted (the most recently seen of each type),
    after an ACCESS audit entry for each profile with `reason` (no reason, no reveal)."""
    for profile in profiles:
        record_access(profile, actor=actor, reason=reason, fields=list(MEMBER_IDENTIFIERS), via=via)
    revealed = profile_selectors.profiles_identifiers_revealed(
        workspace=workspace, profile_ids=[p.pk for p in profiles], types=MEMBER_IDENTIFIERS
    )
    answer: dict[Any, dict[str, str | None]] = {}
    for profile in profiles:
        found = revealed.get(profile.pk, {})
        answer[profile.pk] = {
            kind: found[kind][0] if found.get(kind) else None for kind in MEMBER_IDENTIFIERS
        }
    return answer


def audience_preview_sample(*, workspace: Any, rules: Any, sample: int = 10) -> dict[str, Any]:
    """What the audience builder shows (API and admin): how many profiles `rules` match now
    and a few of them, newest first, as profile id, first/last seen, plain attributes and
    identifier types with masked values; no identifier value is decrypted. Raises RuleError."""
    from activation.audiences import audience_preview

    preview = audience_preview(workspace=workspace, rules=rules, sample=sample)
    profiles = {
        p.pk: p
        for p in profile_selectors.profile_list(workspace=workspace).filter(
            pk__in=preview.sample_profile_ids
        )
    }
    types = identifier_types(workspace=workspace, profile_ids=preview.sample_profile_ids)
    return {
        "count": preview.count,
        "sample": [
            {
                "id": pk,
                "first_seen_at": profiles[pk].first_seen_at,
                "last_seen_at": profiles[pk].last_seen_at,
                "attributes": profiles[pk].attributes or {},
                "identities": [{"type": kind, "value": MASK} for kind in types.get(pk, [])],
            }
            for pk in preview.sample_profile_ids
            if pk in profiles
        ],
    }
