"""Writes for workspaces, roles, API tokens, profiles and data keys."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from cdp.core import hooks
from cdp.core.audit import record_access
from cdp.core.crypto import CryptoError, envelope
from cdp.core.crypto.keyring import WrappedKey, get_keyring
from cdp.core.exceptions import Conflict, InvalidInput
from profiles import ingest
from profiles.contracts import InboundMessage, IngestOutcome
from profiles.enums import DataKeyPurpose, SourceKind, TraitClass, WorkspaceRole
from profiles.exceptions import (
    IdentityVerificationOff,
    IdentityVerificationOn,
    UnknownPermission,
    WorkspaceExists,
)
from profiles.identifiers import DEFAULT_RULES
from profiles.models import (
    ApiToken,
    DataKey,
    Identity,
    IdentityPolicy,
    IdentityRule,
    Profile,
    Source,
    SourceSecret,
    Suppression,
    TraitSchema,
    Workspace,
)
from profiles.views_model import IdentityView, TraitView

TOKEN_PREFIX = "cdp_"  # noqa: S105 — a public marker that makes leaked tokens greppable
SOURCE_SECRET_PREFIX = "cdp_iv_"  # noqa: S105 — likewise, for identity-verification secrets

# Seeded for every new workspace; stewards reclassify in the admin. Anything not listed is
# "unclassified" and treated as personal data until a steward decides.
PII_TRAITS = (
    "email", "phone", "name", "first_name", "last_name", "firstName", "lastName",
    "username", "address", "birthday", "avatar", "title",
)  # fmt: skip
ATTRIBUTE_TRAITS = (
    "plan", "country", "language", "loyalty_tier", "lifetime_value", "orders_count",
    "created_at", "createdAt", "industry", "company_size",
)  # fmt: skip
DEFAULT_TRAIT_CLASSES = {
    **dict.fromkeys(PII_TRAITS, TraitClass.PII),
    **dict.fromkeys(ATTRIBUTE_TRAITS, TraitClass.ATTRIBUTE),
}


@transaction.atomic
def workspace_create(*, slug: str, name: str) -> Workspace:
    """Create a workspace with the default identity rules and trait classifications."""
    if Workspace.objects.filter(slug=slug).exists():
        raise WorkspaceExists()
    workspace = Workspace.objects.create(slug=slug, name=name)
    IdentityPolicy.objects.create(workspace=workspace)
    for spec in DEFAULT_RULES:
        IdentityRule.objects.create(
            workspace=workspace,
            identifier_type=spec.identifier_type,
            priority=spec.priority,
            max_per_profile=spec.max_per_profile,
            window_days=spec.window_days,
            merge=spec.merge,
            blocked_values=spec.blocked_values,
            blocked_patterns=spec.blocked_patterns,
        )
    TraitSchema.objects.bulk_create(
        [
            TraitSchema(workspace=workspace, key=key, classification=classification)
            for key, classification in DEFAULT_TRAIT_CLASSES.items()
        ]
    )
    hooks.run_workspace_created_hooks(workspace)
    return workspace


def ingest_messages(
    *, source: Source, messages: list[InboundMessage], postpone_contended: bool = False
) -> IngestOutcome:
    """Store validated messages: dedup by messageId, resolve identities (merging under the
    workspace's rules), store traits and events encrypted under each profile's data key.
    With `postpone_contended`, messages whose identifiers another transaction holds are not
    waited for but handed back (`IngestOutcome.postponed`) for a later batch."""
    return ingest.ingest_messages(
        source=source, messages=messages, postpone_contended=postpone_contended
    )


def messages_suppressed(*, workspace: Workspace, messages: list[InboundMessage]) -> list[bool]:
    """Whether each message carries an identifier on the workspace's suppression list."""
    return ingest.messages_suppressed(workspace=workspace, messages=messages)


def _check_roles(roles: Iterable[str]) -> list[str]:
    roles = list(dict.fromkeys(roles))
    unknown = sorted(set(roles) - set(WorkspaceRole.values))
    if unknown:
        raise UnknownPermission(
            f"Unknown permission(s): {', '.join(unknown)}. "
            f"Choose from: {', '.join(WorkspaceRole.values)}."
        )
    return roles


@transaction.atomic
def steward_grant_roles(
    *, workspace: Workspace, user: AbstractBaseUser, roles: Iterable[str]
) -> None:
    """Give a steward roles on one workspace (object permissions)."""
    for role in _check_roles(roles):
        assign_perm(f"profiles.{role}", user, workspace)


@transaction.atomic
def steward_revoke_roles(
    *, workspace: Workspace, user: AbstractBaseUser, roles: Iterable[str]
) -> None:
    for role in _check_roles(roles):
        remove_perm(f"profiles.{role}", user, workspace)


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # shown once, never stored


@transaction.atomic
def api_token_create(
    *,
    workspace: Workspace,
    name: str,
    permissions: Iterable[str],
    created_by: Any = None,
) -> IssuedToken:
    """Issue a management-API token; the secret is returned once and only its hash is kept."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        workspace=workspace,
        name=name,
        prefix=secret[:12],
        token_hash=hash_token(secret),
        permissions=_check_roles(permissions),
        created_by=created_by,
    )
    return IssuedToken(token=token, secret=secret)


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    return token


def api_token_touch(*, token: ApiToken) -> None:
    """Record use, at most once a minute (a write per request would be wasteful)."""
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now


def data_key_create(*, profile: Profile) -> DataKey:
    """Generate a data key owned by `profile` (the plaintext key never leaves the crypto layer)."""
    new = envelope.generate_data_key()
    return DataKey.objects.create(
        id=new.id,
        workspace_id=profile.workspace_id,
        profile=profile,
        kek_id=new.wrapped.kek_id,
        wrapped=new.wrapped.blob,
    )


@transaction.atomic
def profile_create(*, workspace: Workspace) -> tuple[Profile, DataKey]:
    """A new profile with its first data key."""
    profile = Profile.objects.create(workspace=workspace)
    return profile, data_key_create(profile=profile)


@transaction.atomic
def data_keys_destroy(*, key_ids: Iterable[uuid.UUID]) -> int:
    """Crypto-shred: wipe the wrapped keys so every value sealed under them is unreadable."""
    ids = list(key_ids)
    count = DataKey.objects.filter(pk__in=ids, destroyed_at__isnull=True).update(
        wrapped=None, destroyed_at=timezone.now()
    )

    def forget() -> None:
        for key_id in ids:
            envelope.forget_data_key(key_id)

    forget()
    transaction.on_commit(forget)  # and again, in case a read re-cached one before commit
    return count


@dataclass(frozen=True)
class RewrapResult:
    rewrapped: int
    already_current: int
    primary_kek_id: str


def data_keys_rewrap(*, batch_size: int = 1000) -> RewrapResult:
    """Re-wrap every live data key still under an older master key with the primary one.

    Works in batches, each in its own transaction, so a long rotation can be interrupted and
    resumed: running it again only touches keys not yet on the primary KEK (idempotent). Data
    ciphertexts are not touched."""
    primary = get_keyring().primary_id
    done = 0
    while True:
        with transaction.atomic():
            batch = list(
                DataKey.objects.select_for_update(skip_locked=True)
                .filter(destroyed_at__isnull=True)
                .exclude(kek_id=primary)
                .order_by("pk")[:batch_size]
            )
            if not batch:
                break
            now = timezone.now()
            for key in batch:
                assert key.wrapped is not None  # live keys only (filtered above)
                rewrapped = envelope.rewrap_data_key(
                    key.id, WrappedKey(kek_id=key.kek_id, blob=bytes(key.wrapped))
                )
                key.kek_id, key.wrapped, key.rewrapped_at = (
                    rewrapped.kek_id,
                    rewrapped.blob,
                    now,
                )
            DataKey.objects.bulk_update(batch, ["kek_id", "wrapped", "rewrapped_at"])
            done += len(batch)
    current = DataKey.objects.filter(destroyed_at__isnull=True, kek_id=primary).count()
    return RewrapResult(rewrapped=done, already_current=current - done, primary_kek_id=primary)


# --- sources ---------------------------------------------------------------------------------

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _normalize_origin(raw: str) -> str:
    """`https://Shop.example.com:443/` -> `https://shop.example.com`: the form browsers send in
    the Origin header (scheme and host lower-case, no default port, no path)."""
    parts = urlsplit(str(raw).strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        scheme not in _DEFAULT_PORTS
        or not parts.hostname
        or port == -1
        or parts.username is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise InvalidInput(
            "An allowed origin is scheme://host[:port], e.g. https://shop.example.com.",
            code="invalid_origin",
        )
    host = parts.hostname
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}:{port}"
    return f"{scheme}://{host}"


@transaction.atomic
def source_create(
    *,
    workspace: Workspace,
    name: str,
    kind: str = SourceKind.WEBSITE,
    allowed_origins: Iterable[str] = (),
    rate_limit_per_minute: int | None = None,
) -> Source:
    """Create a source with a fresh write key. Write keys are public by design (they ship in
    browser JavaScript); origins, the rate limit and the enabled flag bound what one may do."""
    if kind not in SourceKind.values:
        raise InvalidInput(
            f"Unknown source kind. Choose from: {', '.join(SourceKind.values)}.",
            code="invalid_source_kind",
        )
    if Source.objects.filter(workspace=workspace, name=name).exists():
        raise Conflict("A source with that name exists in this workspace.", code="source_exists")
    origins = list(dict.fromkeys(_normalize_origin(origin) for origin in allowed_origins))
    source = Source(
        workspace=workspace,
        name=name,
        kind=kind,
        write_key=secrets.token_urlsafe(24),
        allowed_origins=origins,
    )
    if rate_limit_per_minute is not None:
        source.rate_limit_per_minute = rate_limit_per_minute
    source.save()
    return source


def source_set_enabled(*, source: Source, enabled: bool) -> Source:
    """Enable or disable a source; a disabled source's write key is refused at collection."""
    source.enabled = enabled
    source.save(update_fields=["enabled"])
    return source


@dataclass(frozen=True)
class IssuedSourceSecret:
    source: Source
    secret: str  # shown once; stored sealed


def _source_locked(source: Source) -> Source:
    return Source.objects.select_for_update().select_related("workspace").get(pk=source.pk)


def _source_secret_issue(source: Source) -> str:
    """A new secret for a locked source, sealed under a new data key; the key that sealed the
    one it replaces is destroyed, so the old secret cannot be read back from the database."""
    secret = SOURCE_SECRET_PREFIX + secrets.token_urlsafe(32)
    key_id = data_key_create_unowned(
        workspace_id=source.workspace_id, purpose=DataKeyPurpose.SOURCE
    )
    stored = SourceSecret.objects.filter(source=source).first()
    if stored is None:
        stored = SourceSecret(workspace_id=source.workspace_id, source=source, data_key_id=key_id)
        stored.secret = secret
        stored.save(force_insert=True)
        return secret
    replaced = stored.data_key_id
    stored.data_key_id = key_id
    stored.secret = secret
    stored.rotated_at = timezone.now()
    stored.save(update_fields=["data_key", "secret", "rotated_at"])
    data_keys_destroy(key_ids=[replaced])
    return secret


@transaction.atomic
def source_identity_verification_enable(*, source: Source) -> IssuedSourceSecret:
    """Require a userHash wherever a browser names a userId to this source (the consent API,
    personalize, and collected messages, which otherwise cannot claim an identity), and issue
    the secret the site's server computes it with (returned once). A source that has it on
    already is refused (IdentityVerificationOn), decided under the source's lock: a second
    click or a second steward would otherwise replace the secret just shown, and the site
    would deploy one that no longer works. Rotating is its own service."""
    locked = _source_locked(source)
    if locked.identity_verification:
        raise IdentityVerificationOn()
    secret = _source_secret_issue(locked)
    locked.identity_verification = True
    locked.save(update_fields=["identity_verification"])
    source.identity_verification = True
    return IssuedSourceSecret(source=locked, secret=secret)


@transaction.atomic
def source_identity_secret_rotate(*, source: Source) -> IssuedSourceSecret:
    """Replace the identity-verification secret (returned once); hashes made with the old
    one are refused from now on."""
    locked = _source_locked(source)
    if not locked.identity_verification:
        raise IdentityVerificationOff()
    return IssuedSourceSecret(source=locked, secret=_source_secret_issue(locked))


@transaction.atomic
def source_identity_verification_disable(*, source: Source) -> Source:
    """Accept a userId without a userHash again, and destroy the secret: enabling later
    issues a new one."""
    locked = _source_locked(source)
    stored = SourceSecret.objects.filter(source=locked).first()
    if stored is not None:
        key_id = stored.data_key_id
        stored.delete()
        data_keys_destroy(key_ids=[key_id])
    if locked.identity_verification:
        locked.identity_verification = False
        locked.save(update_fields=["identity_verification"])
    source.identity_verification = False
    return locked


@dataclass(frozen=True)
class RevealedProfile:
    identities: list[IdentityView]
    traits: list[TraitView]


def profile_reveal(
    *, workspace: Workspace, profile: Profile, actor: Any, reason: str, via: str
) -> RevealedProfile:
    """Decrypt a profile's identities and PII traits for a person, writing an ACCESS audit
    entry with the reason first (no reason, no reveal)."""
    from profiles import selectors

    record_access(
        profile,
        actor=actor,
        reason=reason,
        fields=["identities", "traits"],
        via=via,
    )
    return RevealedProfile(
        identities=selectors.profile_identities(workspace=workspace, profile=profile, reveal=True),
        traits=selectors.profile_traits(workspace=workspace, profile=profile, reveal=True),
    )


# --- merge conflicts -------------------------------------------------------------------------


@transaction.atomic
def merge_conflict_resolve(*, conflict: Any, actor: Any) -> Any:
    """Mark a refused merge (a MergeConflict) as reviewed by `actor`; the profiles are not
    changed. Idempotent: resolving a resolved conflict changes nothing and logs nothing."""
    # Imported here because this section was appended after the module's import block.
    from auditlog import get_logentry_model

    from profiles.models import MergeConflict

    now = timezone.now()
    # A conditional update rather than save(): two stewards resolving at once log it once,
    # and the audit entry below names the actor even outside a request (auditlog's middleware
    # only knows the user inside one).
    updated = MergeConflict.objects.filter(pk=conflict.pk, resolved_at__isnull=True).update(
        resolved_at=now
    )
    if not updated:
        conflict.refresh_from_db(fields=["resolved_at"])
        return conflict
    conflict.resolved_at = now
    entry_model = get_logentry_model()
    entry_model.objects.log_create(
        conflict,
        force_log=True,
        action=entry_model.Action.UPDATE,
        changes={"resolved_at": ["None", str(now)]},
        actor=actor,
    )
    return conflict


def identities_rebuild(*, workspace: Workspace, apply: bool) -> Any:
    """Recompute identity clusters under the current rules (see profiles.rebuild)."""
    from profiles.rebuild import identities_rebuild as rebuild

    return rebuild(workspace=workspace, apply=apply)


INTAKE_KEY_LIFETIME = timedelta(hours=1)


def intake_key_current(*, workspace_id: int) -> uuid.UUID:
    """The data key that seals a workspace's not-yet-processed collection batches: one per
    hour, owned by no profile, destroyed once the batches under it are drained."""
    now = timezone.now()
    cached = _intake_keys.get(workspace_id)
    if cached is not None and cached[1] > now:
        return cached[0]
    key_id = (
        DataKey.objects.filter(
            workspace_id=workspace_id,
            purpose=DataKeyPurpose.INTAKE,
            destroyed_at__isnull=True,
            created_at__gt=now - INTAKE_KEY_LIFETIME,
        )
        .order_by("-created_at")
        .values_list("pk", flat=True)
        .first()
    )
    if key_id is None:
        new = envelope.generate_data_key()
        DataKey.objects.create(
            id=new.id,
            workspace_id=workspace_id,
            purpose=DataKeyPurpose.INTAKE,
            kek_id=new.wrapped.kek_id,
            wrapped=new.wrapped.blob,
        )
        key_id, created = new.id, now
    else:
        created = DataKey.objects.get(pk=key_id).created_at
    entry = (key_id, created + INTAKE_KEY_LIFETIME - timedelta(minutes=5))
    # Remembered only once the key's row is committed: a rolled-back request must not leave
    # this process sealing under a key that does not exist.
    transaction.on_commit(lambda: _intake_keys.__setitem__(workspace_id, entry))
    return key_id


_intake_keys: dict[int, tuple[uuid.UUID, Any]] = {}


def intake_keys_shred(*, in_use: set[uuid.UUID]) -> int:
    """Destroy intake keys older than their lifetime that seal no pending batch."""
    cutoff = timezone.now() - INTAKE_KEY_LIFETIME
    stale = DataKey.objects.filter(
        purpose=DataKeyPurpose.INTAKE, destroyed_at__isnull=True, created_at__lt=cutoff
    ).exclude(pk__in=in_use)
    return data_keys_destroy(key_ids=list(stale.values_list("pk", flat=True)))


def data_key_create_unowned(*, workspace_id: int, purpose: str) -> uuid.UUID:
    """A data key owned by no profile (the intake buffer, a workspace's signing key)."""
    new = envelope.generate_data_key()
    DataKey.objects.create(
        id=new.id,
        workspace_id=workspace_id,
        purpose=purpose,
        kek_id=new.wrapped.kek_id,
        wrapped=new.wrapped.blob,
    )
    return new.id


# --- suppression -----------------------------------------------------------------------------


@transaction.atomic
def suppression_add(
    *, workspace: Workspace, identifiers: Iterable[tuple[str, str]], reason: str
) -> int:
    """Suppress identifiers ((type, normalized value)): ingestion drops every later message
    that carries one. Identifiers suppressed already are skipped; returns how many were new."""
    hashes = {
        (kind, ingest.suppression_hash(workspace.pk, kind, value)) for kind, value in identifiers
    }
    if not hashes:
        return 0
    existing = {
        (kind, bytes(digest))
        for kind, digest in Suppression.objects.filter(
            workspace=workspace, keyed_hash__in=[digest for _, digest in hashes]
        ).values_list("identifier_type", "keyed_hash")
    }
    new = sorted(hashes - existing)
    Suppression.objects.bulk_create(
        [
            Suppression(workspace=workspace, identifier_type=kind, keyed_hash=digest, reason=reason)
            for kind, digest in new
        ],
        ignore_conflicts=True,  # suppressed at the same moment by a concurrent erasure
    )
    return len(new)


@transaction.atomic
def profile_restrict(
    *, profile: Profile, restricted: bool, merged: Iterable[uuid.UUID] = ()
) -> Profile:
    """Set or lift the restriction of processing (GDPR Art. 18) on a profile: the consent
    gate, audiences and activation skip a restricted profile. `merged`: profiles merged into
    it (the same person) set alike, without the hooks: they are in no audience or destination,
    but an unmerge brings them back as they are."""
    merged = list(merged)
    if merged:
        # Saved one by one (a person has a few): each change gets its audit entry.
        for other in Profile.objects.filter(pk__in=merged, merged_into=profile).exclude(
            restricted=restricted
        ):
            other.restricted = restricted
            other.save(update_fields=["restricted", "updated_at"])
    if profile.restricted != restricted:
        profile.restricted = restricted
        profile.save(update_fields=["restricted", "updated_at"])
        # Activation takes the person back from destinations, or (lifted) makes them a member
        # again and marks them to be sent again, in this transaction.
        if restricted:
            hooks.run_restriction_hooks(profile.workspace_id, [profile.pk])
        else:
            hooks.run_restriction_lifted_hooks(profile.workspace_id, [profile.pk])
    return profile


def profile_lock(*, profile: Profile) -> Profile:
    """Re-read `profile` under row locks on it and on every profile merged into it (the
    person), held until the caller's transaction ends, so that two stewards acting on it at
    once (lifting its restriction, say) see each other's change. In primary-key order, the
    order an unmerge locks them in, so the two do not deadlock over these rows."""
    people = [profile.pk, *Profile.objects.filter(merged_into=profile).values_list("pk", flat=True)]
    list(
        Profile.objects.select_for_update()
        .filter(pk__in=people)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    profile.refresh_from_db()
    return profile


@dataclass(frozen=True)
class PersonSuppressed:
    """What `profile_suppress` found and did."""

    profile_ids: list[uuid.UUID]  # the profile and every profile merged into it
    data_key_ids: list[uuid.UUID]  # every data key those profiles own
    suppressed: dict[str, int]  # identifiers put on the list, per type (new or not)
    unreadable: int  # identities whose value could not be opened (key destroyed already)


@transaction.atomic
def profile_suppress(
    *, profile: Profile, reason: str, also: Iterable[tuple[str, str]] = ()
) -> PersonSuppressed:
    """Suppress every identifier of the person: the identities of `profile` and of every
    profile merged into it (decrypted in memory only), plus `also` ((type, normalized value));
    done before an erasure, while the keys can still open them."""
    people = [profile.pk]
    frontier = [profile.pk]
    while frontier:
        frontier = list(
            Profile.objects.filter(merged_into_id__in=frontier)
            .exclude(pk__in=people)
            .values_list("pk", flat=True)
        )
        people += frontier
    identifiers = set(also)
    unreadable = 0
    for identity in Identity.objects.filter(profile_id__in=people).order_by("pk"):
        try:
            identifiers.add((identity.identifier_type, identity.value))
        except CryptoError:
            unreadable += 1
    suppression_add(workspace=profile.workspace, identifiers=identifiers, reason=reason)
    counts: dict[str, int] = {}
    for kind, _value in identifiers:
        counts[kind] = counts.get(kind, 0) + 1
    key_ids = list(
        DataKey.objects.filter(profile_id__in=people)
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)
    )
    return PersonSuppressed(
        profile_ids=people,
        data_key_ids=key_ids,
        suppressed=dict(sorted(counts.items())),
        unreadable=unreadable,
    )


# --- merges and unmerges outside ingestion -------------------------------------------------


def profiles_merge(
    *,
    workspace: Workspace,
    profile_ids: tuple[uuid.UUID, uuid.UUID],
    rule: str,
    actor: Any | None,
    evidence: dict[str, Any],
) -> Any:
    """Merge two active profiles of `workspace` outside ingestion (a steward accepted a match,
    an admin merged them): the older survives, rows move as in ingestion, merge hooks run,
    caps and identifier limits hold (MergeRefused), the ledger keeps `rule` and `evidence`,
    audited with `actor`. Returns the Merge row (see profiles.merging)."""
    from profiles import merging

    return merging.profiles_merge(
        workspace=workspace, profile_ids=profile_ids, rule=rule, actor=actor, evidence=evidence
    )


def profile_unmerge(
    *, workspace: Workspace, merge: Any, actor: Any, reason: str = "", via: str = ""
) -> Any:
    """Undo `merge` (most recent first): the absorbed side gets back its identities, traits,
    events and data keys, consent and derived data are recomputed through the unmerge hooks,
    audited with `actor`. Returns a profiles.merging.Unmerged (ADR 0007)."""
    from profiles import merging

    return merging.profile_unmerge(
        workspace=workspace, merge=merge, actor=actor, reason=reason, via=via
    )


# --- retention (called by governance's sweep) ------------------------------------------------
#
# Set-wise and batched: each batch is one transaction, so a long purge holds no lock for long
# and an interrupted run resumes where it stopped. Rows go with a raw DELETE, without one audit
# entry per row (events are not audited anyway; for traits the record is the retention run's
# own audit entry, written by governance with the counts).

RETENTION_BATCH = 5000


def _delete_in_batches(queryset: Any, batch_size: int) -> int:
    model = queryset.model
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(queryset.order_by().values_list("pk", flat=True)[:batch_size])
            if ids:
                deleted += model.objects.filter(pk__in=ids)._raw_delete(model.objects.db)
        if len(ids) < batch_size:
            return deleted


def events_purge(
    *,
    workspace: Workspace,
    before: Any,
    event_names: Iterable[str] | None = None,
    profile_ids: Iterable[Any] | None = None,
    batch_size: int = RETENTION_BATCH,
) -> int:
    """Delete the workspace's events that happened before `before` (only `event_names` and
    `profile_ids` when given), in batches; returns how many were deleted."""
    from profiles import selectors

    expired = selectors.events_expired(
        workspace=workspace, before=before, event_names=event_names, profile_ids=profile_ids
    )
    return _delete_in_batches(expired, batch_size)


@dataclass(frozen=True)
class IpCleared:
    scanned: int  # events holding sealed data that were opened
    cleared: int  # events whose full IP address was removed
    unreadable: int  # events whose data key is destroyed (nothing readable is left)


def events_clear_sealed_ip(
    *,
    workspace: Workspace,
    before: Any,
    since: Any = None,
    batch_size: int = 1000,
) -> IpCleared:
    """Remove the full IP address from the sealed data of the workspace's events received
    before `before` (and at or after `since`); the truncated address in the plain context
    stays. The rest of the sealed data is sealed again under the same key, or the column is
    cleared when nothing is left. Batched by primary key, one transaction per batch."""
    from cdp.core.crypto.fields import EncryptedField
    from profiles import bulk, selectors
    from profiles.models import Event

    field = Event._meta.get_field("sealed")
    assert isinstance(field, EncryptedField)
    scanned = cleared = unreadable = 0
    last: Any = None
    while True:
        with transaction.atomic():
            batch = selectors.events_sealed_received(
                workspace=workspace, before=before, since=since
            ).order_by("pk")
            if last is not None:
                batch = batch.filter(pk__gt=last)
            rows = list(batch.select_for_update().only("id", "data_key_id", "sealed")[:batch_size])
            updates = []
            for event in rows:
                try:
                    sealed = event.sealed
                except CryptoError:
                    unreadable += 1
                    continue
                scanned += 1
                if not isinstance(sealed, dict):
                    continue
                context = sealed.get("context")
                if not isinstance(context, dict) or "ip" not in context:
                    continue
                remaining = {k: v for k, v in sealed.items() if k != "context"}
                rest = {k: v for k, v in context.items() if k != "ip"}
                if rest:
                    remaining["context"] = rest
                value = (
                    field.seal_value(key_id=event.data_key_id, row_id=event.pk, value=remaining)
                    if remaining
                    else None
                )
                updates.append((event.pk, value))
            bulk.update_from_values(
                Event, key="id", names=["sealed"], rows=updates, assignments=["sealed = v.column2"]
            )
            cleared += len(updates)
        if len(rows) < batch_size:
            return IpCleared(scanned=scanned, cleared=cleared, unreadable=unreadable)
        last = rows[-1].pk


def traits_purge(
    *,
    workspace: Workspace,
    keys: Iterable[str],
    before: Any,
    profile_ids: Iterable[Any] | None = None,
    batch_size: int = RETENTION_BATCH,
) -> int:
    """Delete the trait values of `keys` last set before `before` (only of `profile_ids` when
    given), in batches; the surviving attributes of the profiles that lost an attribute trait
    are recomputed from the values left. Returns how many values were deleted."""
    from profiles import bulk, selectors
    from profiles.models import Trait

    expired = selectors.traits_expired(
        workspace=workspace, keys=keys, before=before, profile_ids=profile_ids
    )
    deleted = 0
    while True:
        with transaction.atomic():
            rows = list(expired.order_by().values_list("pk", "profile_id", "is_pii")[:batch_size])
            if rows:
                deleted += Trait.objects.filter(pk__in=[pk for pk, _, _ in rows])._raw_delete(
                    Trait.objects.db
                )
                # The profiles changed: an incremental matching run looks at them again.
                Profile.objects.filter(pk__in={pid for _, pid, _ in rows}).update(
                    updated_at=timezone.now()
                )
                touched = {pid for _, pid, is_pii in rows if not is_pii}
                if touched:
                    attributes = ingest.profile_attributes(touched)
                    bulk.update_from_values(
                        Profile,
                        key="id",
                        names=["attributes"],
                        rows=[(pid, attributes.get(pid, {})) for pid in sorted(touched)],
                        assignments=["attributes = v.column2"],
                    )
        if len(rows) < batch_size:
            return deleted


@dataclass(frozen=True)
class Resealed:
    traits: int  # values moved from plain to sealed
    profiles: int  # profiles whose plain attributes lost those keys
    events: int  # events whose plain properties gave something up
    unreadable: int  # rows whose data key is shredded (the person erased meanwhile): skipped


@transaction.atomic
def trait_schemas_classify(*, schemas: Iterable[TraitSchema], classification: str) -> int:
    """Classify trait keys, one audited save each; returns how many changed. What was stored
    in plain under a key that is no longer an attribute is sealed after commit, one run per
    workspace for all its keys (each run reads every event of the workspace once)."""
    changed = 0
    unsealed: dict[int, list[str]] = {}
    for schema in schemas:
        if schema.classification == classification:
            continue
        if schema.classification == TraitClass.ATTRIBUTE:
            unsealed.setdefault(schema.workspace_id, []).append(schema.key)
        schema.classification = classification
        schema.save(update_fields=["classification"])
        changed += 1
    for workspace_id, keys in unsealed.items():
        _keys_became_personal(workspace_id, keys)
    return changed


def trait_schema_reclassified(*, schema: TraitSchema, was: str | None) -> bool:
    """After a key's classification was changed (saved) from `was` some other way (the admin's
    change form): seal what was stored in plain while it was an attribute. Returns whether a
    reseal was queued."""
    if was != TraitClass.ATTRIBUTE or schema.classification == TraitClass.ATTRIBUTE:
        return False
    _keys_became_personal(schema.workspace_id, [schema.key])
    return True


def _keys_became_personal(workspace_id: int, keys: list[str]) -> None:
    """Keys that were plain attributes are personal data now: higher apps drop what they
    derived in plain from them (in this transaction), and what was stored in plain under
    them is sealed after commit."""
    hooks.run_keys_personal_hooks(workspace_id, sorted(set(keys)))
    personal_data_reseal_queue(workspace_id=workspace_id, keys=keys)


def personal_data_reseal_queue(*, workspace_id: int, keys: Iterable[str]) -> None:
    """After the current transaction commits, seal what was stored in plain under `keys`
    (trait keys no longer classified as plain attributes): at once, and once more when every
    process's cached classifications have expired (CDP_WORKSPACE_CONFIG_SECONDS), for what
    ingestion wrote in plain meanwhile. Ids and key names go to the task, nothing else."""
    from django.conf import settings

    from profiles import tasks

    keys = sorted(set(keys))
    if not keys:
        return
    later = float(getattr(settings, "CDP_WORKSPACE_CONFIG_SECONDS", 10)) + 5

    def enqueue() -> None:
        tasks.personal_data_reseal.delay(workspace_id, keys)
        tasks.personal_data_reseal.apply_async((workspace_id, keys), countdown=later)

    transaction.on_commit(enqueue)


def personal_data_reseal(
    *, workspace: Workspace, keys: Iterable[str], batch_size: int = RETENTION_BATCH
) -> Resealed:
    """Seal what was stored in plain under trait keys a steward has since classified as
    personal data: the trait values (and the profiles' plain attributes built from them), and
    event properties under those keys at any depth, however spelt (profiles.sealing). Without
    it, values collected before the classification stayed readable in plain.

    Traits are found by key; events by reading every event's plain properties once, in pages
    of primary keys (a key can hide at any depth, spelt any way: no index finds it), and only
    those that hold one are locked, opened, put back together and split again as ingestion
    now would. One transaction per page; no audit entry per row (an entry would copy the
    plain value it replaces into the trail): the classification itself is audited. Safe to
    run again: what is sealed already is left as it is."""
    from profiles import bulk, sealing, selectors
    from profiles.models import Event, Trait

    every = selectors.event_property_keys_sealed(workspace=workspace)
    # A key made an attribute again since (before a delayed run) is left as it is.
    keys = sorted({key for key in keys if key in every})
    if not keys:
        return Resealed(traits=0, profiles=0, events=0, unreadable=0)
    now = timezone.now()
    seal_trait = ingest._sealer(Trait, "value_pii")
    traits = profiles = events = unreadable = 0
    last: Any = None
    while True:
        with transaction.atomic():
            pending = Trait.objects.filter(workspace=workspace, key__in=keys, is_pii=False)
            if last is not None:
                pending = pending.filter(pk__gt=last)
            rows = list(
                pending.select_for_update()
                .order_by("pk")
                .values_list("pk", "profile_id", "data_key_id", "value_attribute")[:batch_size]
            )
            ingest._preload_keys({key_id for _, _, key_id, _ in rows})
            updates = []
            touched = set()
            for pk, profile_id, key_id, value in rows:
                try:
                    sealed = seal_trait(key_id=key_id, row_id=pk, value=value)
                except CryptoError:
                    unreadable += 1
                    continue
                updates.append((pk, True, None, sealed))
                touched.add(profile_id)
            bulk.update_from_values(
                Trait,
                key="id",
                names=["is_pii", "value_attribute", "value_pii"],
                rows=updates,
                assignments=[
                    "is_pii = v.column2",
                    "value_attribute = v.column3",
                    "value_pii = v.column4",
                ],
            )
            if touched:
                locked = list(
                    Profile.objects.filter(pk__in=touched)
                    .select_for_update()
                    .order_by("pk")
                    .values_list("pk", flat=True)
                )
                attributes = ingest.profile_attributes(locked)
                bulk.update_from_values(
                    Profile,
                    key="id",
                    names=["attributes", "updated_at"],
                    rows=[(pid, attributes.get(pid, {}), now) for pid in locked],
                    assignments=["attributes = v.column2", "updated_at = v.column3"],
                )
            traits += len(updates)
            profiles += len(touched)
        if len(rows) < batch_size:
            break
        last = rows[-1][0]

    wanted = sealing.SealedKeys(keys)
    seal_event = ingest._sealer(Event, "sealed")
    last = None
    while True:
        page_query = Event.objects.filter(workspace=workspace).order_by("pk")
        if last is not None:
            page_query = page_query.filter(pk__gt=last)
        page = list(page_query.values_list("pk", "properties")[:batch_size])
        holding = [pk for pk, plain in page if sealing.split_properties(plain or {}, wanted)[1]]
        if holding:
            with transaction.atomic():
                found = list(
                    Event.objects.filter(pk__in=holding)
                    .select_for_update()
                    .order_by("pk")
                    .only("id", "data_key_id", "properties", "sealed")
                )
                ingest._preload_keys({event.data_key_id for event in found})
                changed: list[tuple[Any, dict[str, Any], Any]] = []
                for event in found:
                    try:
                        opened = dict(event.sealed or {})
                        # As sent, then split as ingestion now would (a URL's query, sealed
                        # before, stays whole: splitting only the plain part would lose it).
                        sent = sealing.merge_sealed(
                            event.properties or {}, opened.get("properties")
                        )
                        plain, taken = sealing.split_properties(sent, every)
                        if plain == event.properties:
                            continue
                        opened["properties"] = taken
                        value = seal_event(key_id=event.data_key_id, row_id=event.pk, value=opened)
                    except CryptoError:
                        unreadable += 1
                        continue
                    changed.append((event.pk, plain, value))
                bulk.update_from_values(
                    Event,
                    key="id",
                    names=["properties", "sealed"],
                    rows=changed,
                    assignments=["properties = v.column2", "sealed = v.column3"],
                )
                events += len(changed)
        if len(page) < batch_size:
            return Resealed(traits=traits, profiles=profiles, events=events, unreadable=unreadable)
        last = page[-1][0]
