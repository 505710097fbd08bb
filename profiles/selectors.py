"""Reads for workspaces, tokens, profiles and data keys; always scoped by workspace."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.db.models.signals import post_delete, post_save
from guardian.shortcuts import get_objects_for_user

from cdp.core.crypto import DecryptionError, blind_index
from cdp.core.ids import integer_id
from profiles.enums import (
    DEFAULT_SOURCE_PRIORITY,
    IdentifierType,
    ProfileStatus,
    Survivorship,
    WorkspaceRole,
)
from profiles.exceptions import (
    IdentityVerificationFailed,
    IdentityVerificationRequired,
    IdentityVerificationUserIdInvalid,
    ProfileNotFound,
    WorkspaceNotFound,
)
from profiles.identifiers import (
    FALLBACK_PRIORITY,
    normalize_identifier,
    normalize_identifier_type,
)
from profiles.ingest import pick_surviving_value
from profiles.models import (
    ApiToken,
    DataKey,
    Event,
    Identity,
    IdentityPolicy,
    IdentityRule,
    Merge,
    MergeConflict,
    Profile,
    Source,
    SourceSecret,
    Trait,
    TraitSchema,
    Workspace,
)
from profiles.sealing import SealedKeys
from profiles.views_model import MASK, IdentityView, TraitView

ROLE_PERMS = [f"profiles.{role}" for role in WorkspaceRole.values]


def workspace_get(*, slug: str) -> Workspace:
    try:
        return Workspace.objects.get(slug=slug)
    except Workspace.DoesNotExist:
        raise WorkspaceNotFound() from None


def workspace_list_for_user(
    *, user: AbstractBaseUser | AnonymousUser, role: str | None = None
) -> QuerySet[Workspace]:
    """Workspaces the user holds any role on (or `role`); superusers see all."""
    if not user.is_authenticated or not user.is_active:
        return Workspace.objects.none()
    if getattr(user, "is_superuser", False):
        return Workspace.objects.all()
    perms = [f"profiles.{role}"] if role else ROLE_PERMS
    return get_objects_for_user(
        user, perms, klass=Workspace, any_perm=True, accept_global_perms=False
    )


def user_has_role(*, user: Any, workspace: Workspace, role: str) -> bool:
    if not user.is_authenticated or not user.is_active:
        return False
    return bool(user.has_perm(f"profiles.{role}", workspace))


def api_token_get_active(*, token_hash: str) -> ApiToken | None:
    return (
        ApiToken.objects.select_related("workspace")
        .filter(token_hash=token_hash, revoked_at__isnull=True)
        .first()
    )


def profile_get(*, workspace: Workspace, profile_id: Any) -> Profile:
    """A profile of the workspace; an id absorbed by a merge answers with the survivor."""
    try:
        profile = Profile.objects.get(workspace=workspace, pk=profile_id)
    except (Profile.DoesNotExist, ValueError, DjangoValidationError):
        raise ProfileNotFound() from None
    hops = 0
    while profile.status == ProfileStatus.MERGED and profile.merged_into_id and hops < 100:
        profile = Profile.objects.get(pk=profile.merged_into_id)
        hops += 1
    return profile


def profile_find_by_identifier(
    *, workspace: Workspace, identifier_type: str, value: str
) -> Profile | None:
    """Look a profile up by an identifier value, through its blind index (no decryption)."""
    kind = normalize_identifier_type(identifier_type)
    normalized = normalize_identifier(kind, value)
    if not kind or normalized is None:
        return None
    index = blind_index(workspace.pk, kind, normalized)
    identity = (
        Identity.objects.filter(workspace=workspace, identifier_type=kind, blind_index=index)
        .select_related("profile")
        .first()
    )
    return identity.profile if identity else None


def identifier_type_known(*, workspace: Workspace, identifier_type: str) -> bool:
    """Whether the workspace has identifiers of this type, or may have: a built-in type, one
    its identity rules or trait mappings declare, or one it holds identities of (types sent
    as `context.externalIds` are declared nowhere). Ask after a lookup found nothing: for an
    undeclared type the last check reads the partial index of the workspace's own types."""
    kind = normalize_identifier_type(identifier_type)
    if not kind:
        return False
    if kind in IdentifierType.values:
        return True
    if IdentityRule.objects.filter(workspace=workspace, identifier_type=kind).exists():
        return True
    mappings = (
        IdentityPolicy.objects.filter(workspace=workspace)
        .values_list("trait_identifiers", flat=True)
        .first()
    )
    if isinstance(mappings, dict) and kind in {
        normalize_identifier_type(str(v)) for v in mappings.values()
    }:
        return True
    return Identity.objects.filter(workspace=workspace, identifier_type=kind).exists()


LOOKUP_TYPES = tuple(IdentifierType.values)


def profile_list(*, workspace: Workspace) -> QuerySet[Profile]:
    return Profile.objects.filter(workspace=workspace, status=ProfileStatus.ACTIVE).order_by(
        "-created_at"
    )


def profile_identity_indexes(*, workspace: Workspace, profile_id: Any) -> list[tuple[str, bytes]]:
    """(type, blind index) of every identity linked to the profile (those of profiles merged
    into it included: they point at it), without opening any value."""
    return [
        (kind, bytes(index))
        for kind, index in Identity.objects.filter(workspace=workspace, profile_id=profile_id)
        .order_by("identifier_type", "first_seen_at", "pk")
        .values_list("identifier_type", "blind_index")
    ]


def profile_identities(
    *, workspace: Workspace, profile: Profile, reveal: bool = False
) -> list[IdentityView]:
    """A profile's identities; values masked unless `reveal` (callers audit reveals)."""
    rows = (
        Identity.objects.filter(workspace=workspace, profile=profile)
        .select_related("source")
        .order_by("identifier_type", "first_seen_at")
    )
    return [
        IdentityView(
            id=i.pk,
            type=i.identifier_type,
            value=i.value if reveal else MASK,
            source=i.source.name if i.source else None,
            first_seen_at=i.first_seen_at,
            last_seen_at=i.last_seen_at,
        )
        for i in rows
    ]


def profile_traits(
    *, workspace: Workspace, profile: Profile, reveal: bool = False
) -> list[TraitView]:
    """A profile's traits after survivorship. PII values are decrypted only when `reveal`."""
    policies = dict(
        TraitSchema.objects.filter(workspace=workspace).values_list("key", "survivorship")
    )
    grouped: dict[str, list[Trait]] = {}
    for trait in (
        Trait.objects.filter(workspace=workspace, profile=profile)
        .select_related("source")
        .defer("value_pii")
    ):
        grouped.setdefault(trait.key, []).append(trait)
    views = []
    for key in sorted(grouped):
        rows = grouped[key]
        policy = policies.get(key, Survivorship.LATEST)
        chosen = pick_surviving_value(
            policy,
            [(t, t.observed_at, t.first_observed_at, t.source.priority) for t in rows],
        )
        value = chosen.value_attribute
        if chosen.is_pii:
            value = chosen.value_pii if reveal else MASK
        views.append(
            TraitView(
                key=key,
                is_pii=chosen.is_pii,
                value=value,
                source=chosen.source.name,
                observed_at=chosen.observed_at,
                candidates=len(rows),
            )
        )
    return views


def profile_events(*, workspace: Workspace, profile: Profile) -> QuerySet[Event]:
    """A profile's event timeline, newest first (sealed PII stays sealed)."""
    return (
        Event.objects.filter(workspace=workspace, profile=profile)
        .select_related("source")
        .defer("sealed")
        .order_by("-timestamp")
    )


def profile_merges(*, workspace: Workspace, profile: Profile) -> QuerySet[Merge]:
    return Merge.objects.filter(workspace=workspace, survivor=profile).order_by("-created_at")


def profile_conflicts(*, workspace: Workspace, profile: Profile) -> QuerySet[MergeConflict]:
    return MergeConflict.objects.filter(workspace=workspace, profile=profile).order_by(
        "-created_at"
    )


def data_key_ids_for_profile(*, workspace: Workspace, profile_id: Any) -> list[Any]:
    return list(
        DataKey.objects.filter(workspace=workspace, profile_id=profile_id).values_list(
            "pk", flat=True
        )
    )


# Every collection, consent and personalization request looks its source up by write key: each
# process keeps the sources it found for CDP_SOURCE_CACHE_SECONDS (0: not at all). A change
# saved in this process (services, admin) evicts the source at once (`_forget_source`, on
# Source's post_save and post_delete); other processes see it within that time. Unknown keys
# are not kept: a source created elsewhere works at once.
_source_cache: dict[str, tuple[float, Source]] = {}
_SOURCE_CACHE_MAX = 10_000


def source_get_by_write_key(*, write_key: str) -> Source | None:
    """The source a write key belongs to (enabled or not), with its workspace; None if unknown.
    Not scoped by workspace: the write key is what tells collection which workspace it is."""
    if not write_key:
        return None
    ttl = float(getattr(settings, "CDP_SOURCE_CACHE_SECONDS", 5))
    now = time.monotonic()
    hit = _source_cache.get(write_key)
    if hit is not None and hit[0] > now:
        return hit[1]
    source = Source.objects.select_related("workspace").filter(write_key=write_key).first()
    if source is not None and ttl > 0:
        if len(_source_cache) >= _SOURCE_CACHE_MAX:
            _source_cache.clear()
        _source_cache[write_key] = (now + ttl, source)
    return source


def _forget_source(sender: Any, instance: Source, **kwargs: Any) -> None:
    """Evict a saved or deleted source (under any of its keys, in case the key changed)."""
    for key, (_expires, cached) in list(_source_cache.items()):
        if cached.pk == instance.pk or key == instance.write_key:
            _source_cache.pop(key, None)


post_save.connect(_forget_source, sender=Source, dispatch_uid="profiles-source-cache")
post_delete.connect(_forget_source, sender=Source, dispatch_uid="profiles-source-cache-delete")


def source_identity_secret_issued_at(*, source: Source) -> Any:
    """When the source's identity-verification secret was issued or last rotated; None if it
    has none. The secret itself is never read here."""
    row = (
        SourceSecret.objects.filter(source_id=source.pk)
        .values_list("created_at", "rotated_at")
        .first()
    )
    return None if row is None else (row[1] or row[0])


def user_hash_for(*, secret: str, user_id: str) -> str:
    """What a site's server computes for its signed-in user: the hex HMAC-SHA256 of the userId
    (UTF-8, exactly as it is sent) under the source's identity-verification secret (UTF-8)."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def _source_secret_read(source: Source) -> str | None:
    """The source's identity-verification secret, or None where it has none or it cannot be
    opened: a rotation or a turn-off that commits between the read of the row and its
    opening destroys the key that sealed it, and nothing the request sent can match then."""
    stored = SourceSecret.objects.filter(source_id=source.pk).first()
    if stored is None:  # switched on without a secret (by hand), or just turned off
        return None
    try:
        return stored.secret
    except DecryptionError:
        return None


def _user_hash_matches(secret: str | None, user_id: str, user_hash: object) -> bool:
    if secret is None or not isinstance(user_hash, str):
        return False
    expected = user_hash_for(secret=secret, user_id=user_id).encode()
    return hmac.compare_digest(expected, user_hash.strip().lower().encode())


def _user_id_as_indexed(user_id: str) -> bool:
    """Whether a userId is found by exactly the string its userHash covers: profiles index
    the normalized form (whitespace stripped), so a hash of " ada" must not vouch for "ada"."""
    return normalize_identifier(IdentifierType.USER_ID, user_id) == user_id


def source_user_hash_verify(*, source: Source, user_id: str | None, user_hash: str | None) -> None:
    """Whether a public write-key request may name this userId. Nothing to prove where the
    source does not verify identities, or no userId is named (an anonymousId is random per
    browser); otherwise the userHash must be the userId's HMAC under the source's own secret,
    compared in constant time. Raises IdentityVerificationUserIdInvalid (a userId not in its
    normalized form), IdentityVerificationRequired / IdentityVerificationFailed."""
    if not source.identity_verification or not user_id:
        return
    if not _user_id_as_indexed(user_id):
        raise IdentityVerificationUserIdInvalid()
    if not user_hash:
        raise IdentityVerificationRequired()
    if not _user_hash_matches(_source_secret_read(source), user_id, user_hash):
        raise IdentityVerificationFailed()


UserHashCheck = Callable[[str, object], bool]


def source_user_hash_checker(*, source: Source) -> UserHashCheck | None:
    """For a request of many messages (collection): None where the source does not verify
    identities, else a check `(userId as sent, userHash) -> bool` with the secret read once.
    False for a userId not in its normalized form, a missing or wrong hash, or a source whose
    secret is gone; the comparison is constant-time."""
    if not source.identity_verification:
        return None
    secret = _source_secret_read(source)

    def check(user_id: str, user_hash: object) -> bool:
        return _user_id_as_indexed(user_id) and _user_hash_matches(secret, user_id, user_hash)

    return check


def source_allowed_origins_enabled() -> frozenset[str]:
    """Every origin some enabled source accepts, across workspaces. CORS preflights carry no
    credentials, so they can only be answered against this union; the actual request is then
    checked against its own source's origins."""
    origins: set[str] = set()
    for allowed in Source.objects.filter(enabled=True).values_list("allowed_origins", flat=True):
        origins.update(str(origin) for origin in allowed or ())
    return frozenset(origins)


def source_list(*, workspace: Workspace) -> QuerySet[Source]:
    return Source.objects.filter(workspace=workspace).order_by("name")


def api_token_exists(*, workspace: Workspace, name: str) -> bool:
    return ApiToken.objects.filter(workspace=workspace, name=name, revoked_at__isnull=True).exists()


def workspace_has_events(*, workspace: Workspace) -> bool:
    return Event.objects.filter(workspace=workspace).exists()


def source_get(*, source_id: int) -> Source:
    return Source.objects.select_related("workspace").get(pk=source_id)


def profile_absorbed_ids(*, profile: Profile) -> list[Any]:
    """Ids of the profiles merged into `profile` (they point straight at it)."""
    return list(Profile.objects.filter(merged_into=profile).values_list("pk", flat=True))


def workspace_get_by_id(*, workspace_id: Any) -> Workspace:
    """The workspace with this primary key (ids come from signed tokens, never from input)."""
    try:
        return Workspace.objects.get(pk=workspace_id)
    except (Workspace.DoesNotExist, ValueError, TypeError):
        raise WorkspaceNotFound() from None


def profile_primary_identity(*, workspace: Workspace, profile: Profile) -> tuple[str, str] | None:
    """The profile's strongest identifier as (type, value): lowest identity-rule priority,
    then the earliest seen. Only that one value is decrypted; None if it has none."""
    priority = dict(
        IdentityRule.objects.filter(workspace=workspace).values_list("identifier_type", "priority")
    )
    candidates = Identity.objects.filter(workspace=workspace, profile=profile).defer("value")
    strongest = min(
        candidates,
        key=lambda i: (
            priority.get(i.identifier_type, FALLBACK_PRIORITY),
            i.first_seen_at,
            str(i.pk),
        ),
        default=None,
    )
    if strongest is None:
        return None
    return strongest.identifier_type, str(strongest.value)


def identifier_normalize(*, identifier_type: str, value: object) -> str | None:
    """The canonical form of an identifier value, as ingestion and lookups use it (None when
    not usable), for apps that key records of their own by an identity (the consent ledger)."""
    kind = normalize_identifier_type(identifier_type)
    return normalize_identifier(kind, value) if kind else None


# --- retention and the records of processing (read by governance) ---------------------------
# Imported here because this section was appended after the module's import block.
import json  # noqa: E402
from collections.abc import Iterable as _Iterable  # noqa: E402
from datetime import datetime as _datetime  # noqa: E402

from django.db import connection as _connection  # noqa: E402
from django.db.models import Count as _Count  # noqa: E402
from django.db.models.functions import Coalesce as _Coalesce  # noqa: E402


def events_expired(
    *,
    workspace: Workspace,
    before: _datetime,
    event_names: _Iterable[str] | None = None,
    profile_ids: _Iterable[Any] | None = None,
) -> QuerySet[Event]:
    """Events of the workspace that happened (`timestamp`) before `before`; only those named
    `event_names` and of `profile_ids` when given."""
    qs = Event.objects.filter(workspace=workspace, timestamp__lt=before)
    if event_names:
        qs = qs.filter(name__in=list(event_names))
    if profile_ids is not None:
        qs = qs.filter(profile_id__in=list(profile_ids))
    return qs


def events_sealed_received(
    *, workspace: Workspace, before: _datetime, since: _datetime | None = None
) -> QuerySet[Event]:
    """Events received before `before` (and at or after `since`) that hold sealed data, where
    the full IP address of the request that carried them is kept."""
    qs = Event.objects.filter(workspace=workspace, received_at__lt=before, sealed__isnull=False)
    if since is not None:
        qs = qs.filter(received_at__gte=since)
    return qs


def traits_expired(
    *,
    workspace: Workspace,
    keys: _Iterable[str],
    before: _datetime,
    profile_ids: _Iterable[Any] | None = None,
) -> QuerySet[Trait]:
    """Trait values of these keys last set (`observed_at`) before `before`."""
    qs = Trait.objects.filter(workspace=workspace, key__in=list(keys), observed_at__lt=before)
    if profile_ids is not None:
        qs = qs.filter(profile_id__in=list(profile_ids))
    return qs


def profiles_inactive(
    *, workspace: Workspace, before: _datetime, include_restricted: bool = False
) -> QuerySet[Profile]:
    """Active profiles (not merged away) last seen before `before`, or never seen and created
    before it. Restricted profiles (GDPR Art. 18: kept, not processed) only when asked."""
    qs = (
        Profile.objects.filter(workspace=workspace, status=ProfileStatus.ACTIVE)
        .annotate(active_at=_Coalesce("last_seen_at", "created_at"))
        .filter(active_at__lt=before)
    )
    if not include_restricted:
        qs = qs.filter(restricted=False)
    return qs


def profile_person_data_key_ids(*, workspace: Workspace, profile: Profile) -> list[Any]:
    """Every data key of the person: the profile's and those of the profiles merged into it."""
    people = [profile.pk, *profile_absorbed_ids(profile=profile)]
    return list(
        DataKey.objects.filter(workspace=workspace, profile_id__in=people)
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)
    )


def trait_schema_list(*, workspace: Workspace) -> QuerySet[TraitSchema]:
    """The workspace's trait keys and their classification (personal data or attribute)."""
    return TraitSchema.objects.filter(workspace=workspace).order_by("classification", "key")


def event_categories(*, workspace: Workspace) -> list[tuple[str, str, int]]:
    """(event type, event name, how many are stored) for every kind of event collected."""
    return list(
        Event.objects.filter(workspace=workspace)
        .values_list("type", "name")
        .annotate(n=_Count("id"))
        .order_by("type", "name")
        .values_list("type", "name", "n")
    )


def identifier_type_counts(*, workspace: Workspace) -> dict[str, int]:
    """How many identities of each identifier type the workspace holds."""
    return dict(
        Identity.objects.filter(workspace=workspace)
        .values_list("identifier_type")
        .annotate(n=_Count("id"))
        .order_by("identifier_type")
        .values_list("identifier_type", "n")
    )


# --- bulk import (collect.imports) -----------------------------------------------------------


def identifier_checker(*, workspace: Workspace) -> Any:
    """A function `(identifier_type, raw, default_region=None) -> normalized | None` that says
    whether ingestion would use a value as an identifier of that type in `workspace`: None
    when it does not normalize (a bad email or phone) or the workspace's rules block it (a
    placeholder such as "n/a"). The rules are read once, when the checker is made."""
    from profiles.identifiers import normalize_phone
    from profiles.ingest import load_rules

    rules = load_rules(workspace)

    def check(identifier_type: str, raw: object, default_region: str | None = None) -> str | None:
        kind = normalize_identifier_type(identifier_type)
        if not kind:
            return None
        if kind == IdentifierType.PHONE and default_region and isinstance(raw, str | int):
            text = str(raw).strip()
            value = normalize_phone(text, default_region) if text else None
        else:
            value = normalize_identifier(kind, raw)
        if value is None or rules.rule(kind).blocks(value):
            return None
        return value

    return check


def trait_keys_attribute(*, workspace: Workspace) -> frozenset[str]:
    """Trait keys the workspace classified as plain attributes (every other key, classified as
    personal data or not yet classified, is stored sealed)."""
    from profiles.enums import TraitClass

    return frozenset(
        TraitSchema.objects.filter(
            workspace=workspace, classification=TraitClass.ATTRIBUTE
        ).values_list("key", flat=True)
    )


def event_property_keys_sealed(*, workspace: Workspace) -> SealedKeys:
    """Event property keys ingestion seals in `workspace` (`key in` the result): the built-in
    personal-data keys and every trait key not classified as a plain attribute, compared as
    profiles.sealing folds them."""
    from profiles.enums import TraitClass

    personal = TraitSchema.objects.filter(workspace=workspace).exclude(
        classification=TraitClass.ATTRIBUTE
    )
    return SealedKeys(personal.values_list("key", flat=True))


def event_message_ids_stored(*, workspace: Workspace, message_ids: list[str]) -> set[str]:
    """Which of `message_ids` are already stored as events of `workspace` (whatever the dedup
    window: the event rows are the lasting record of a message)."""
    if not message_ids:
        return set()
    return set(
        Event.objects.filter(workspace=workspace, message_id__in=message_ids).values_list(
            "message_id", flat=True
        )
    )


def workspace_list() -> QuerySet[Workspace]:
    """Every workspace (for installation-wide jobs such as the retention sweep)."""
    return Workspace.objects.order_by("slug")


def profile_merge_history(*, profile_id: Any) -> tuple[list[Any], list[tuple[Any, Any, Any]]]:
    """An active profile's members (itself and every profile merged into it) and the merges
    still in place among them, oldest first, as (survivor id, absorbed id, created_at): what a
    replay of the profile's history (consent after an unmerge) needs."""
    members = [profile_id, *Profile.objects.filter(merged_into_id=profile_id).values_list(
        "pk", flat=True
    )]  # fmt: skip
    merges = list(
        Merge.objects.filter(
            survivor_id__in=members, absorbed_id__in=members, unmerged_at__isnull=True
        )
        .order_by("pk")
        .values_list("survivor_id", "absorbed_id", "created_at")
    )
    return members, merges


def profile_identity_subjects(*, profile_ids: list[Any]) -> list[tuple[Any, Any, str, bytes]]:
    """(profile id, origin profile id, identifier type, blind index) of every identity of these
    profiles: how records kept by identity (consent) are matched to the profile they belong to."""
    return [
        (profile_id, origin_id, kind, bytes(index))
        for profile_id, origin_id, kind, index in Identity.objects.filter(
            profile_id__in=profile_ids
        ).values_list("profile_id", "origin_profile_id", "identifier_type", "blind_index")
    ]


# --- activation: identifier values and traits for destination payloads -----------------------

# At most this many profiles per call: a worker holds one batch of decrypted values at a time.
REVEAL_BATCH_MAX = 1000


def _reveal_ids(profile_ids: _Iterable[Any]) -> list[Any]:
    ids = list(dict.fromkeys(profile_ids))
    if len(ids) > REVEAL_BATCH_MAX:
        raise ValueError(f"at most {REVEAL_BATCH_MAX} profiles per call, got {len(ids)}")
    return ids


def profiles_identifiers_revealed(
    *, workspace: Workspace, profile_ids: _Iterable[Any], types: _Iterable[str]
) -> dict[Any, dict[str, list[str]]]:
    """Decrypted identifier values of `types` for each of `profile_ids` (at most
    REVEAL_BATCH_MAX): profile id -> type -> values, most recently seen first. For a machine
    that passes them on (activation payloads, removal requests) from a worker's memory, not a
    reveal to a person (so no ACCESS entry): callers never log or store them in plaintext.
    Values under a destroyed key are left out."""
    from cdp.core.crypto import CryptoError

    ids = _reveal_ids(profile_ids)
    kinds = sorted(set(types))
    revealed: dict[Any, dict[str, list[str]]] = {}
    if not ids or not kinds:
        return revealed
    rows = Identity.objects.filter(
        workspace=workspace, profile_id__in=ids, identifier_type__in=kinds
    ).order_by("profile_id", "identifier_type", "-last_seen_at", "pk")
    for identity in rows:
        try:
            value = str(identity.value)
        except CryptoError:
            continue
        revealed.setdefault(identity.profile_id, {}).setdefault(
            identity.identifier_type, []
        ).append(value)
    return revealed


def profiles_traits_revealed(
    *, workspace: Workspace, profile_ids: _Iterable[Any], keys: _Iterable[str]
) -> dict[Any, dict[str, Any]]:
    """Each profile's value of each trait key in `keys` after survivorship (as
    `profile_traits` chooses it), personal-data values decrypted: profile id -> key -> value.
    At most REVEAL_BATCH_MAX profiles; the same rules as `profiles_identifiers_revealed`."""
    from cdp.core.crypto import CryptoError

    ids = _reveal_ids(profile_ids)
    wanted = sorted(set(keys))
    if not ids or not wanted:
        return {}
    policies = dict(
        TraitSchema.objects.filter(workspace=workspace, key__in=wanted).values_list(
            "key", "survivorship"
        )
    )
    grouped: dict[tuple[Any, str], list[Trait]] = {}
    for trait in Trait.objects.filter(
        workspace=workspace, profile_id__in=ids, key__in=wanted
    ).select_related("source"):
        grouped.setdefault((trait.profile_id, trait.key), []).append(trait)
    revealed: dict[Any, dict[str, Any]] = {}
    for (profile_id, key), rows in grouped.items():
        chosen = pick_surviving_value(
            policies.get(key, Survivorship.LATEST),
            [(t, t.observed_at, t.first_observed_at, t.source.priority) for t in rows],
        )
        try:
            value = chosen.value_pii if chosen.is_pii else chosen.value_attribute
        except CryptoError:
            continue
        revealed.setdefault(profile_id, {})[key] = value
    return revealed


def profile_ids_in_workspace(*, workspace: Workspace, profile_ids: Any) -> set[str]:
    """Which of `profile_ids` (as text) are profiles of the workspace, merged ones included."""
    import uuid

    wanted = []
    for value in profile_ids:
        try:
            wanted.append(uuid.UUID(str(value)))
        except ValueError:
            continue
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        found.update(
            str(pk)
            for pk in Profile.objects.filter(
                workspace=workspace, pk__in=wanted[start : start + 500]
            ).values_list("pk", flat=True)
        )
    return found


def event_list(*, workspace: Workspace) -> QuerySet[Event]:
    """Every event of the workspace, unordered, sealed columns deferred: the base that audience
    rules and computed traits filter and aggregate (plain properties only)."""
    return Event.objects.filter(workspace=workspace).defer("sealed", "context").order_by()


def source_list_for_workspaces(*, workspaces: QuerySet[Workspace]) -> QuerySet[Source]:
    """Enabled sources of the given workspaces (a steward's), by workspace and name."""
    return (
        Source.objects.filter(workspace__in=workspaces, enabled=True)
        .select_related("workspace")
        .order_by("workspace__slug", "name")
    )


# --- probabilistic matching (matching app) ---------------------------------------------------

MATCH_BATCH_MAX = 5000


def profiles_match_fields(
    *,
    workspace: Workspace,
    profile_ids: _Iterable[Any],
    trait_keys: _Iterable[str],
    identifier_types: _Iterable[str],
) -> dict[Any, tuple[dict[str, Any], dict[str, list[str]]]]:
    """For matching in a worker's memory: each profile's trait values after survivorship and
    its identifier values, personal data decrypted: id -> ({key: value}, {type: [values]}).
    At most MATCH_BATCH_MAX profiles per call (callers hold one batch of plaintext at a time
    and audit the run, not each value); values under a destroyed key are left out.

    Leaner than `profiles_traits_revealed`: rows are read as tuples and only the surviving
    value of each key is decrypted."""
    import orjson

    from cdp.core.crypto import CryptoError
    from cdp.core.crypto.envelope import location_aad, open_sealed
    from cdp.core.crypto.keyring import WrappedKey

    def preload(key_ids: set[Any]) -> None:
        # One query for the batch's data keys instead of one per key on first use.
        from cdp.core.crypto.envelope import StoredDataKey, preload_data_keys

        rows = _by_ids(DataKey, ("id", "kek_id", "wrapped"), list(key_ids))
        preload_data_keys(
            StoredDataKey(
                id=key_id,
                wrapped=None if wrapped is None else WrappedKey(kek_id=kek, blob=bytes(wrapped)),
            )
            for key_id, kek, wrapped in rows
        )

    ids = list(dict.fromkeys(profile_ids))
    if len(ids) > MATCH_BATCH_MAX:
        raise ValueError(f"at most {MATCH_BATCH_MAX} profiles per call, got {len(ids)}")
    keys, kinds = sorted(set(trait_keys)), sorted(set(identifier_types))
    out: dict[Any, tuple[dict[str, Any], dict[str, list[str]]]] = {pk: ({}, {}) for pk in ids}
    if not ids:
        return out
    if keys:
        policies = dict(
            TraitSchema.objects.filter(workspace=workspace, key__in=keys).values_list(
                "key", "survivorship"
            )
        )
        priorities = dict(Source.objects.filter(workspace=workspace).values_list("pk", "priority"))
        grouped: dict[tuple[Any, str], list[tuple[Any, ...]]] = {}
        for row in _match_trait_rows(workspace, ids, keys):
            grouped.setdefault((row[1], row[2]), []).append(row)
        # Survivorship needs the times only where a key has several values: most have one,
        # and loading two timestamps a row was most of the read (psycopg parses them in Python).
        contested = [r[0] for rows in grouped.values() if len(rows) > 1 for r in rows]
        times: dict[Any, tuple[Any, Any]] = {}
        for start in range(0, len(contested), MATCH_BATCH_MAX):
            chunk = contested[start : start + MATCH_BATCH_MAX]
            for trait_id, observed, first in _by_ids(
                Trait, ("id", "observed_at", "first_observed_at"), chunk
            ):
                times[trait_id] = (observed, first)
        preload({r[7] for rows in grouped.values() for r in rows if r[3] and r[5] is not None})
        trait_column = str(Trait._meta.get_field("value_pii").column)
        raw_json = _connection.vendor == "postgresql"  # _match_trait_rows leaves JSON as text
        for (profile_id, key), rows in grouped.items():
            if len(rows) == 1:
                chosen = rows[0]
            else:
                chosen = pick_surviving_value(
                    policies.get(key, Survivorship.LATEST),
                    [
                        (r, *times[r[0]], priorities.get(r[6], DEFAULT_SOURCE_PRIORITY))
                        for r in rows
                    ],
                )
            if not chosen[3]:
                value = chosen[4]
                if raw_json and value is not None:
                    value = json.loads(value)  # as the JSONField would, for this row only
            elif chosen[5] is None:
                continue
            else:
                try:
                    aad = location_aad(Trait._meta.db_table, trait_column, chosen[0])
                    value = orjson.loads(open_sealed(bytes(chosen[5]), aad))
                except CryptoError:
                    continue
            out[profile_id][0][key] = value
    if kinds:
        identity_column = str(Identity._meta.get_field("value").column)
        identities: list[Any]
        if _connection.vendor == "postgresql":
            # As for traits (_match_trait_rows): one array parameter, no per-row converters.
            with _connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT id, profile_id, identifier_type, {identity_column}, data_key_id "  # noqa: S608
                    f"FROM {Identity._meta.db_table} WHERE workspace_id = %s "
                    "AND profile_id = ANY(%s) AND identifier_type = ANY(%s) "
                    "ORDER BY profile_id, identifier_type, last_seen_at DESC, id",
                    [workspace.pk, ids, kinds],
                )
                identities = cursor.fetchall()
        else:
            identities = list(
                Identity.objects.filter(
                    workspace=workspace, profile_id__in=ids, identifier_type__in=kinds
                )
                .order_by("profile_id", "identifier_type", "-last_seen_at", "pk")
                .values_list("id", "profile_id", "identifier_type", "value", "data_key_id")
            )
        preload({row[4] for row in identities})
        for identity_id, profile_id, kind, sealed, _key in identities:
            try:
                aad = location_aad(Identity._meta.db_table, identity_column, identity_id)
                value = open_sealed(bytes(sealed), aad).decode()
            except CryptoError:
                continue
            out[profile_id][1].setdefault(kind, []).append(value)
    return out


def _by_ids(model: Any, columns: tuple[str, ...], ids: list[Any]) -> list[Any]:
    """These columns of the rows of `model` whose id is in `ids`. On PostgreSQL one array
    parameter: psycopg builds an IN list of thousands of ids client-side, slowly, and the
    server parses it (a matching run reads the times of some 38,000 traits, 27,000 keys)."""
    if _connection.vendor == "postgresql":
        names = ", ".join(model._meta.get_field(c).column for c in columns)
        with _connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {names} FROM {model._meta.db_table} WHERE id = ANY(%s)",  # noqa: S608
                [ids],
            )
            return cursor.fetchall()
    return list(model.objects.filter(pk__in=ids).values_list(*columns))


def _match_trait_rows(workspace: Workspace, ids: list[Any], keys: list[str]) -> list[Any]:
    """(id, profile_id, key, is_pii, value_attribute, value_pii, source_id, data_key_id) of
    the profiles' traits of these keys. On PostgreSQL one array-parameter query whose
    attribute values stay JSON text and sealed values raw bytes: the ORM's IN list of 5,000
    ids and its per-row converters (a JSON parse and a wrapper per row) cost more than the
    read, and only the value that survives is used (decoded by the caller)."""
    if _connection.vendor == "postgresql":
        with _connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, profile_id, key, is_pii, value_attribute::text, value_pii, "  # noqa: S608
                f"source_id, data_key_id FROM {Trait._meta.db_table} "
                "WHERE workspace_id = %s AND profile_id = ANY(%s) AND key = ANY(%s)",
                [workspace.pk, ids, keys],
            )
            return cursor.fetchall()
    return list(
        Trait.objects.filter(workspace=workspace, profile_id__in=ids, key__in=keys).values_list(
            "id",
            "profile_id",
            "key",
            "is_pii",
            "value_attribute",
            "value_pii",
            "source_id",
            "data_key_id",
        )
    )


def profile_survivor_ids(*, workspace: Workspace, profile_ids: _Iterable[Any]) -> dict[Any, Any]:
    """Each of `profile_ids` mapped to the active profile it now lives in (itself when active;
    the end of its merged_into chain when merged); ids not in the workspace are left out."""
    wanted = list(dict.fromkeys(profile_ids))
    found: dict[Any, Any] = {}
    pointer: dict[Any, Any] = {}
    frontier = wanted
    while frontier:
        rows = Profile.objects.filter(workspace=workspace, pk__in=frontier).values_list(
            "pk", "status", "merged_into_id"
        )
        frontier = []
        for pk, status, merged_into in rows:
            if status == ProfileStatus.MERGED and merged_into:
                pointer[pk] = merged_into
                if merged_into not in pointer:
                    frontier.append(merged_into)
            else:
                pointer[pk] = pk
    for pk in wanted:
        hops, current = 0, pk
        while current in pointer and pointer[current] != current and hops < 100:
            current, hops = pointer[current], hops + 1
        if current in pointer:
            found[pk] = current
    return found


def profile_merge_get(*, workspace: Workspace, profile: Profile, merge_id: Any) -> Merge:
    """A merge made by `profile` or by a profile it has absorbed since (the merges shown on
    its page); another workspace's merge, or another profile's, is not found."""
    from profiles.exceptions import MergeNotFound

    merge_pk = integer_id(merge_id)
    if merge_pk is None:
        raise MergeNotFound()
    members = [
        profile.pk,
        *Profile.objects.filter(merged_into=profile).values_list("pk", flat=True),
    ]
    try:
        return Merge.objects.get(workspace=workspace, pk=merge_pk, survivor_id__in=members)
    except Merge.DoesNotExist:
        raise MergeNotFound() from None
