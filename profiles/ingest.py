"""Storing a batch of inbound messages: dedup, identity resolution, merges, traits, events.

The batch is handled set-wise: one dedup insert, one identity lookup, then decisions in memory
(message by message, in order), then a handful of bulk writes. Per message:

1. its identifiers are extracted, normalized, checked against the blocked values of their rule
   and blind-indexed; a message carrying any identifier on the suppression list (an erased
   person's) is dropped there, counted per day, and nothing of it is written;
2. they are taken strongest first (rule priority) into a candidate cluster: a new identifier
   joins if its type stays within its limit; an identifier already on a profile brings that
   whole profile in if every type stays within its limit and the merge caps hold. What would
   break a limit is refused: the identifier is not used to merge, and when it belonged to
   another profile a merge conflict is recorded for stewards;
3. the cluster's profiles merge into the oldest (or a new profile is made), the message's new
   identifiers attach to it, its traits and event are stored under that profile's data key.

Concurrent batches touching the same identifiers are serialized with transaction-scoped
advisory locks taken in sorted order (PostgreSQL); SQLite serializes writers itself.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from cdp.core import audit
from cdp.core.crypto import blind_index, envelope, keyed_hash
from cdp.core.crypto.fields import EncryptedField
from cdp.core.crypto.keyring import WrappedKey
from cdp.core.hooks import run_ingest_hooks, run_merge_hooks, run_restriction_hooks
from cdp.core.ids import uuid7
from profiles import bulk, sealing
from profiles.contracts import InboundMessage, IngestOutcome
from profiles.enums import (
    DataKeyPurpose,
    EventType,
    IdentifierType,
    ProfileStatus,
    Survivorship,
    TraitClass,
)
from profiles.identifiers import (
    DEFAULT_RULES,
    CompiledRule,
    compile_rule,
    fallback_rule,
    normalize_identifier,
    normalize_identifier_type,
)
from profiles.models import (
    DataKey,
    Event,
    Identity,
    IdentityLink,
    IdentityPolicy,
    IdentityRule,
    Merge,
    MergeConflict,
    Profile,
    SeenMessage,
    Source,
    Suppression,
    SuppressionHit,
    Trait,
    TraitSchema,
    Workspace,
)

# --- rules ---------------------------------------------------------------------------------


@dataclass
class WorkspaceRules:
    rules: dict[str, CompiledRule]
    max_merges: int
    max_identities: int
    trait_identifiers: dict[str, str]
    dedup_window: timedelta

    def rule(self, identifier_type: str) -> CompiledRule:
        found = self.rules.get(identifier_type)
        if found is None:
            found = self.rules[identifier_type] = fallback_rule(identifier_type)
        return found


# Rules and trait classifications are read on every batch and change rarely: each process keeps
# them for CDP_WORKSPACE_CONFIG_SECONDS (a steward's change takes effect within that time).
_config_cache: dict[tuple[str, int], tuple[float, Any]] = {}


def _cached(kind: str, workspace_id: int, load: Any) -> Any:
    ttl = float(getattr(settings, "CDP_WORKSPACE_CONFIG_SECONDS", 10))
    now = time.monotonic()
    hit = _config_cache.get((kind, workspace_id))
    if hit is not None and hit[0] > now:
        return hit[1]
    value = load()
    if ttl > 0:
        _config_cache[(kind, workspace_id)] = (now + ttl, value)
    return value


def load_rules(workspace: Workspace) -> WorkspaceRules:
    """The workspace's identity rules, compiled (cached briefly, see _cached)."""
    return _cached("rules", workspace.pk, lambda: _load_rules(workspace))


def _load_rules(workspace: Workspace) -> WorkspaceRules:
    rules = {spec.identifier_type: compile_rule(spec) for spec in DEFAULT_RULES}
    for row in IdentityRule.objects.filter(workspace=workspace):
        rules[row.identifier_type] = CompiledRule(
            identifier_type=row.identifier_type,
            priority=row.priority,
            max_per_profile=row.max_per_profile,
            window_days=row.window_days,
            merge=row.merge,
            blocked_values=frozenset(str(v).lower() for v in row.blocked_values),
            blocked_patterns=tuple(re.compile(p) for p in row.blocked_patterns),
        )
    policy = IdentityPolicy.objects.filter(workspace=workspace).first() or IdentityPolicy(
        workspace=workspace
    )
    return WorkspaceRules(
        rules=rules,
        max_merges=policy.max_merges_per_profile,
        max_identities=policy.max_identities_per_profile,
        trait_identifiers={
            str(k): normalize_identifier_type(str(v))
            for k, v in (policy.trait_identifiers or {}).items()
        },
        dedup_window=timedelta(days=policy.dedup_window_days),
    )


# --- identifiers of a message ----------------------------------------------------------------


@dataclass(frozen=True)
class Ident:
    type: str
    value: str
    index: bytes
    priority: int
    # (type, index), read many times per identifier: a plain attribute (functools'
    # cached_property takes a lock on first access, which showed in the drain's profile).
    key: tuple[str, bytes] = field(init=False, repr=False, compare=False)
    # The advisory-lock key of the identifier (`_lock_identifiers`, `_contended`).
    lock_key: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.type, self.index))
        object.__setattr__(self, "lock_key", int.from_bytes(self.index[:8], "big", signed=True))


def _browser_identifiers(msg: InboundMessage) -> list[tuple[str, object]]:
    """The identifiers a message holds of its browser or device alone, for one that did not
    prove its identity (`InboundMessage.identity_verified`): guessing them finds no one, while
    a userId, email, phone, external id or mapped trait could be anyone's. An alias's
    previousId counts as an anonymousId here, never as an earlier userId."""
    found: list[tuple[str, object]] = []
    if msg.anonymous_id is not None:
        found.append((IdentifierType.ANONYMOUS_ID, msg.anonymous_id))
    if msg.previous_id is not None:
        found.append((IdentifierType.ANONYMOUS_ID, str(msg.previous_id).strip()))
    device = (msg.context or {}).get("device")
    if isinstance(device, dict):
        if device.get("id") is not None:
            found.append((IdentifierType.DEVICE_ID, device["id"]))
        if device.get("advertisingId") is not None:
            found.append((IdentifierType.ADVERTISING_ID, device["advertisingId"]))
    return found


def _raw_identifiers(
    msg: InboundMessage, rules: WorkspaceRules, previous_user_ids: set[str], claimed: bool = False
) -> list[tuple[str, object]]:
    if not (msg.identity_verified or claimed):
        return _browser_identifiers(msg)
    found: list[tuple[str, object]] = []
    if msg.user_id is not None:
        found.append((IdentifierType.USER_ID, msg.user_id))
    if msg.anonymous_id is not None:
        found.append((IdentifierType.ANONYMOUS_ID, msg.anonymous_id))
    if msg.previous_id is not None:
        # alias: previousId is usually an anonymousId, sometimes an earlier userId
        previous = str(msg.previous_id).strip()
        kind: str = (
            IdentifierType.USER_ID if previous in previous_user_ids else IdentifierType.ANONYMOUS_ID
        )
        found.append((kind, previous))
    traits = msg.traits or {}
    if "email" in traits:
        found.append((IdentifierType.EMAIL, traits["email"]))
    if "phone" in traits:
        found.append((IdentifierType.PHONE, traits["phone"]))
    device = (msg.context or {}).get("device")
    if isinstance(device, dict):
        if device.get("id") is not None:
            found.append((IdentifierType.DEVICE_ID, device["id"]))
        if device.get("advertisingId") is not None:
            found.append((IdentifierType.ADVERTISING_ID, device["advertisingId"]))
    external = (msg.context or {}).get("externalIds")
    if isinstance(external, list):
        for item in external:
            if isinstance(item, dict) and item.get("id") is not None and item.get("type"):
                kind = normalize_identifier_type(str(item["type"]))
                if kind:
                    found.append((kind, item["id"]))
    for trait_key, kind in rules.trait_identifiers.items():
        if trait_key in traits:
            found.append((kind, traits[trait_key]))
    return found


class _Indexer:
    """Blind indexes with a per-batch memo (identifiers repeat ~10x per person)."""

    def __init__(self, workspace_id: int) -> None:
        self.workspace_id = workspace_id
        self._memo: dict[tuple[str, str], bytes] = {}

    def __call__(self, kind: str, value: str) -> bytes:
        key = (kind, value)
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = blind_index(self.workspace_id, kind, value)
        return found


def message_identifiers(
    msg: InboundMessage,
    rules: WorkspaceRules,
    indexer: _Indexer,
    previous_user_ids: set[str] = frozenset(),  # type: ignore[assignment]
    claimed: bool = False,
) -> list[Ident]:
    """Normalized, unblocked, de-duplicated identifiers of a message, strongest first: those
    that resolve it, or with `claimed` every one it names, verified or not (what the
    suppression list is checked against)."""
    seen: set[tuple[str, str]] = set()
    result: list[Ident] = []
    for kind, raw in _raw_identifiers(msg, rules, previous_user_ids, claimed):
        value = normalize_identifier(kind, raw)
        if value is None:
            continue
        rule = rules.rule(kind)
        if rule.blocks(value) or (kind, value) in seen:
            continue
        seen.add((kind, value))
        result.append(Ident(kind, value, indexer(kind, value), rule.priority))
    result.sort(key=lambda i: (i.priority, i.type))
    return result


# --- in-memory state of the batch ----------------------------------------------------------


@dataclass
class _ProfileState:
    id: UUID
    created_at: datetime
    counts: Counter[str]  # identities per type within each type's window
    total: int
    merge_count: int
    data_key_id: UUID
    new: bool = False


@dataclass
class _NewIdentity:
    id: UUID
    ident: Ident
    profile_id: UUID
    message_id: str
    seen_at: datetime
    origin_id: UUID  # the profile whose data it is (see _carrier)
    data_key_id: UUID


@dataclass
class _Plan:
    profiles: dict[UUID, _ProfileState] = field(default_factory=dict)
    redirect: dict[UUID, UUID] = field(default_factory=dict)
    identity_profile: dict[tuple[str, bytes], UUID] = field(default_factory=dict)
    identity_id: dict[tuple[str, bytes], UUID] = field(default_factory=dict)
    # Each known identity's origin profile and data key: what a message carried by it is
    # written under (see _carrier).
    identity_origin: dict[tuple[str, bytes], tuple[UUID, UUID]] = field(default_factory=dict)
    message_origin: dict[str, tuple[UUID, UUID]] = field(default_factory=dict)
    new_identities: list[_NewIdentity] = field(default_factory=list)
    seen_identity_ids: set[UUID] = field(default_factory=set)
    merges: list[tuple[UUID, UUID, Ident, str, str]] = field(default_factory=list)
    conflicts: list[tuple[UUID, UUID, Ident, str, str]] = field(default_factory=list)
    links: dict[tuple[UUID, UUID], tuple[str, datetime]] = field(default_factory=dict)
    new_keys: list[envelope.NewDataKey] = field(default_factory=list)
    workspace_id: int = 0
    # Pairs of profiles an unmerge separated (loaded on the batch's first candidate merge).
    separations: list[tuple[UUID, UUID]] | None = None

    def find(self, profile_id: UUID) -> UUID:
        while profile_id in self.redirect:
            profile_id = self.redirect[profile_id]
        return profile_id


def _lock_key(ident: Ident) -> int:
    return ident.lock_key


def _lock_identifiers(idents: Iterable[Ident]) -> None:
    if connection.vendor != "postgresql":
        return
    keys = sorted({i.lock_key for i in idents})
    if keys:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k ORDER BY k",
                [keys],
            )


def _connected(keys_per_message: list[list[Any]], held: set[Any]) -> set[int]:
    """Positions of the messages connected (through shared keys, transitively) to a held key:
    a person's messages are postponed together, in their order."""
    parent = list(range(len(keys_per_message)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[Any, int] = {}  # key -> the first message carrying it
    for position, keys in enumerate(keys_per_message):
        for key in keys:
            other = first.setdefault(key, position)
            if other != position:
                parent[find(position)] = find(other)
    blocked = {find(first[k]) for k in held if k in first}
    return {p for p in range(len(keys_per_message)) if find(p) in blocked}


def _contended(per_message: list[list[Ident]]) -> set[int]:
    """Try to lock every identifier of the batch at once, without waiting (PostgreSQL); return
    the positions of the messages to postpone: those connected to an identifier another
    transaction holds. What is kept is then locked in full."""
    if connection.vendor != "postgresql":
        return set()
    keys = sorted({i.lock_key for idents in per_message for i in idents})
    if not keys:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT k FROM unnest(%s::bigint[]) WITH ORDINALITY AS u(k, n) "
            "WHERE NOT pg_try_advisory_xact_lock(k) ORDER BY n",
            [keys],
        )
        held = {row[0] for row in cursor.fetchall()}
    if not held:
        return set()
    return _connected([[i.lock_key for i in idents] for idents in per_message], held)


def _profiles_busy(plan: _Plan) -> set[UUID]:
    """Row-lock the batch's existing profiles without waiting (PostgreSQL); return those another
    transaction holds. A profile can be reached through identifiers another drain does not
    lock (a person's other device): its row would make one drain wait for the other's commit,
    and a merge there would leave this batch's rows on a profile merged away. The lock is FOR
    NO KEY UPDATE, what the drain's own UPDATEs of the row take: two drains still exclude each
    other, but the foreign-key checks of other writers (FOR KEY SHARE, at their commit: a
    consent record or a preference-centre save for the person) do not wait for the drain, which
    may itself be waiting for their ledger locks."""
    if connection.vendor != "postgresql" or not plan.profiles:
        return set()
    wanted = sorted(plan.profiles, key=str)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {Profile._meta.db_table} WHERE id = ANY(%s) "  # noqa: S608
            "ORDER BY id FOR NO KEY UPDATE SKIP LOCKED",
            [wanted],
        )
        got = {row[0] for row in cursor.fetchall()}
    return set(wanted) - got


def _load_state(
    workspace: Workspace, idents: set[Ident], rules: WorkspaceRules, now: datetime
) -> _Plan:
    plan = _Plan(workspace_id=workspace.pk)
    if not idents:
        return plan
    wanted = {ident.key for ident in idents}
    profile_ids: set[UUID] = set()
    # One lookup for every identifier of the batch (the unique index leads with the blind
    # index after the workspace); blind indexes of different types never coincide in practice,
    # and the (type, index) check below makes sure.
    rows: Iterable[tuple[Any, ...]]
    if connection.vendor == "postgresql":
        # One array parameter: the ORM's IN list prepares every value in Python.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, identifier_type, blind_index, profile_id, origin_profile_id, "  # noqa: S608
                f"data_key_id FROM {Identity._meta.db_table} "
                "WHERE workspace_id = %s AND blind_index = ANY(%s)",
                [workspace.pk, [ident.index for ident in idents]],
            )
            rows = cursor.fetchall()
    else:
        rows = Identity.objects.filter(
            workspace=workspace, blind_index__in=[ident.index for ident in idents]
        ).values_list(
            "id", "identifier_type", "blind_index", "profile_id", "origin_profile_id", "data_key_id"
        )
    for identity_id, kind, index, profile_id, origin_id, key_id in rows:
        key = (kind, bytes(index))
        if key in wanted:
            plan.identity_profile[key] = profile_id
            plan.identity_id[key] = identity_id
            plan.identity_origin[key] = (origin_id, key_id)
            profile_ids.add(profile_id)
    if profile_ids:
        _load_profiles(plan, profile_ids, rules, now)
    return plan


def _load_profiles(
    plan: _Plan, profile_ids: set[UUID], rules: WorkspaceRules, now: datetime
) -> None:
    counts: dict[UUID, Counter[str]] = defaultdict(Counter)
    totals: Counter[UUID] = Counter()
    rows = Identity.objects.filter(profile_id__in=profile_ids).values_list(
        "profile_id", "identifier_type", "last_seen_at"
    )
    for profile_id, kind, last_seen in rows:
        totals[profile_id] += 1
        window = rules.rule(kind).window_days
        if window is None or last_seen >= now - timedelta(days=window):
            counts[profile_id][kind] += 1
    keys: dict[UUID, UUID] = {}
    for key_id, profile_id in (
        DataKey.objects.filter(profile_id__in=profile_ids, destroyed_at__isnull=True)
        .order_by("created_at")
        .values_list("id", "profile_id")
    ):
        keys.setdefault(profile_id, key_id)
    for profile_id, created_at, merge_count in Profile.objects.filter(
        pk__in=profile_ids
    ).values_list("id", "created_at", "merge_count"):
        plan.profiles[profile_id] = _ProfileState(
            id=profile_id,
            created_at=created_at,
            counts=counts[profile_id],
            total=totals[profile_id],
            merge_count=merge_count,
            data_key_id=keys[profile_id],
        )


def _limit(rules: WorkspaceRules, kind: str) -> float:
    limit = rules.rule(kind).max_per_profile
    return float("inf") if limit is None else limit


def _within_limits(counts: Counter[str], rules: WorkspaceRules) -> bool:
    for kind, count in counts.items():
        limit = rules.rule(kind).max_per_profile
        if limit is not None and count > limit:
            return False
    return True


def _resolve(
    plan: _Plan, msg: InboundMessage, idents: list[Ident], rules: WorkspaceRules, now: datetime
) -> UUID:
    """Decide which profile the message belongs to; plan merges, new identities, conflicts."""
    members: list[UUID] = []  # existing profiles joining, strongest identifier first
    counts: Counter[str] = Counter()
    total = merges = 0
    attach: list[Ident] = []
    refused: list[tuple[Ident, UUID, str]] = []
    for ident in idents:
        owner = plan.identity_profile.get(ident.key)
        owner = plan.find(owner) if owner is not None else None
        if owner is None:
            trial = counts.copy()
            trial[ident.type] += 1
            if _within_limits(trial, rules) and total + 1 <= rules.max_identities:
                counts, total = trial, total + 1
                attach.append(ident)
            continue
        if owner in members:
            continue
        state = plan.profiles[owner]
        if members and not rules.rule(ident.type).merge:
            refused.append((ident, owner, f"{ident.type} does not merge profiles"))
            continue
        if members and _separated(plan, owner, members):
            refused.append((ident, owner, "separated by an unmerge"))
            continue
        trial = counts + state.counts
        if not _within_limits(trial, rules):
            broken = sorted(k for k, c in trial.items() if c > _limit(rules, k))
            refused.append((ident, owner, f"limit per profile of {', '.join(broken)}"))
            continue
        trial_merges = merges + state.merge_count + (1 if members else 0)
        if members and trial_merges > rules.max_merges:
            refused.append((ident, owner, "merge cap per profile"))
            continue
        if total + state.total > rules.max_identities:
            refused.append((ident, owner, "identity cap per profile"))
            continue
        members.append(owner)
        counts, total, merges = trial, total + state.total, trial_merges

    if members:
        survivor = min(members, key=lambda p: (plan.profiles[p].created_at, str(p)))
    else:
        survivor = _plan_new_profile(plan, now)
    target = plan.profiles[survivor]
    evidence: dict[UUID, Ident] = {}  # the strongest identifier that brought each profile in
    for ident in idents:
        owner = _owner(plan, ident)
        if owner is not None:
            evidence.setdefault(owner, ident)
    for absorbed in members:
        if absorbed == survivor:
            continue
        ident = evidence[absorbed]
        anchor = next((i for i in idents if evidence.get(survivor) is i), idents[0])
        rule = f"deterministic: {ident.type} seen with {anchor.type} in one message"
        plan.merges.append((survivor, absorbed, ident, msg.message_id, rule))
        plan.redirect[absorbed] = survivor
        gone = plan.profiles[absorbed]
        target.merge_count += gone.merge_count + 1
    target.counts, target.total = counts, total
    origin = _carrier(plan, idents, survivor)
    plan.message_origin[msg.message_id] = origin
    for ident in attach:
        new_id = uuid7()
        plan.identity_profile[ident.key] = survivor
        plan.identity_id[ident.key] = new_id
        plan.identity_origin[ident.key] = origin
        plan.new_identities.append(
            _NewIdentity(new_id, ident, survivor, msg.message_id, msg.timestamp, *origin)
        )
    for ident, owner, reason in refused:
        plan.conflicts.append((survivor, owner, ident, msg.message_id, reason))
    used = [plan.identity_id[i.key] for i in idents if _owner(plan, i) == survivor]
    # Refused links are stored too: they are evidence, and a rebuild under relaxed rules
    # may accept them.
    linked = used + [plan.identity_id[ident.key] for ident, _owner_id, _reason in refused]
    for other in linked[1:]:
        pair = (linked[0], other) if str(linked[0]) < str(other) else (other, linked[0])
        plan.links.setdefault(pair, (msg.message_id, msg.timestamp))
    plan.seen_identity_ids.update(used)
    return survivor


def _carrier(plan: _Plan, idents: list[Ident], survivor: UUID) -> tuple[UUID, UUID]:
    """Whose data a message is: the origin profile (and its data key) of the strongest of its
    identifiers that was known before it and now belongs to `survivor`; else `survivor`'s own.
    Before any merge that is the profile itself; after one, a message carried by an absorbed
    profile's identifier is still written as that profile's data (under its key), so an
    unmerge gives it back with the rest (ADR 0007)."""
    for ident in idents:
        known = plan.identity_origin.get(ident.key)
        if known is not None and _owner(plan, ident) == survivor:
            return known
    return survivor, plan.profiles[survivor].data_key_id


def _separated(plan: _Plan, owner: UUID, members: list[UUID]) -> bool:
    """Whether an unmerge separated `owner`'s profile from one of `members` (ADR 0007): the
    same evidence does not merge them again; a steward's explicit merge still can."""
    if plan.separations is None:
        plan.separations = separated_pairs(
            plan.workspace_id, [p for p, state in plan.profiles.items() if not state.new]
        )
    for left, right in plan.separations:
        a, b = plan.find(left), plan.find(right)
        if (a == owner and b in members) or (b == owner and a in members):
            return True
    return False


def separated_pairs(workspace_id: int, profile_ids: list[UUID] | None) -> list[tuple[UUID, UUID]]:
    """(profile, profile) for every undone merge whose two sides now belong to different
    active profiles, named by those: among the clusters of `profile_ids` (active profiles), or
    across the workspace when None."""
    undone = Merge.objects.filter(workspace_id=workspace_id, unmerged_at__isnull=False)
    if profile_ids is not None:
        if not profile_ids:
            return []
        members = [
            *profile_ids,
            *Profile.objects.filter(merged_into_id__in=profile_ids).values_list("id", flat=True),
        ]
        undone = undone.filter(Q(survivor_id__in=members) | Q(absorbed_id__in=members))
    found = list(undone.values_list("survivor_id", "absorbed_id"))
    if not found:
        return []
    root_of = {
        pid: into if status == ProfileStatus.MERGED else pid
        for pid, status, into in Profile.objects.filter(
            pk__in={p for pair in found for p in pair}
        ).values_list("id", "status", "merged_into_id")
    }
    pairs = {
        (root_of[survivor], root_of[absorbed])
        for survivor, absorbed in found
        if root_of[survivor] != root_of[absorbed]
    }
    return sorted(pairs, key=str)


def _owner(plan: _Plan, ident: Ident) -> UUID | None:
    owner = plan.identity_profile.get(ident.key)
    return plan.find(owner) if owner is not None else None


def _plan_new_profile(plan: _Plan, now: datetime) -> UUID:
    profile_id = uuid7()
    key = envelope.generate_data_key()
    plan.new_keys.append(key)
    plan.profiles[profile_id] = _ProfileState(
        id=profile_id,
        created_at=now,
        counts=Counter(),
        total=0,
        merge_count=0,
        data_key_id=key.id,
        new=True,
    )
    return profile_id


# --- traits and events ---------------------------------------------------------------------


def _trait_classes(workspace: Workspace) -> dict[str, bool]:
    """key -> is personal data, for every classified or seen trait key (cached briefly)."""
    return _cached(
        "traits",
        workspace.pk,
        lambda: {
            key: classification != TraitClass.ATTRIBUTE
            for key, classification in TraitSchema.objects.filter(workspace=workspace).values_list(
                "key", "classification"
            )
        },
    )


def _trait_schema(workspace: Workspace, keys: set[str]) -> dict[str, bool]:
    """key -> is personal data; keys never seen are recorded as unclassified (personal)."""
    known = _trait_classes(workspace)
    missing = keys - known.keys()
    if missing:
        TraitSchema.objects.bulk_create(
            [TraitSchema(workspace=workspace, key=k) for k in sorted(missing)],
            ignore_conflicts=True,
        )
        known = {**known, **dict.fromkeys(missing, True)}
        _config_cache.pop(("traits", workspace.pk), None)
    return known


_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")


def truncate_ip(raw: str) -> str | None:
    """IPv4 to its /24, IPv6 to its /48: enough for geography, not a person."""
    plain = _IPV4.fullmatch(raw.strip())  # the common case, without the ipaddress module
    if plain is not None:
        return f"{plain[1]}.{plain[2]}.{plain[3]}.0"
    return _truncate_ip(raw)


@functools.lru_cache(maxsize=4096)
def _truncate_ip(raw: str) -> str | None:
    try:
        address = ipaddress.ip_address(raw.strip())
    except ValueError:
        return None
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


# --- the entry point -------------------------------------------------------------------------


def _previous_ids_known_as_user_ids(
    workspace: Workspace, messages: list[InboundMessage], indexer: _Indexer
) -> set[str]:
    previous = {str(m.previous_id).strip() for m in messages if m.previous_id is not None}
    if not previous:
        return set()
    by_index = {indexer(IdentifierType.USER_ID, p): p for p in previous}
    found = Identity.objects.filter(
        workspace=workspace, identifier_type=IdentifierType.USER_ID, blind_index__in=list(by_index)
    ).values_list("blind_index", flat=True)
    return {by_index[bytes(i)] for i in found}


def _claim_new_messages(
    workspace: Workspace, messages: list[InboundMessage], now: datetime
) -> list[InboundMessage]:
    """Insert the batch's messageIds into the dedup table; keep the messages that were new."""
    unique: dict[str, InboundMessage] = {}
    for msg in messages:
        unique.setdefault(msg.message_id, msg)
    if not unique:
        return []
    claimed = bulk.insert(
        SeenMessage,
        ["workspace", "message_id", "received_at"],
        [(workspace.pk, message_id, now) for message_id in unique],
        on_conflict="ON CONFLICT (workspace_id, message_id) DO NOTHING",
        returning=["message_id"],
    )
    fresh = {row[0] for row in claimed}
    return [msg for message_id, msg in unique.items() if message_id in fresh]


SUPPRESSION_NAMESPACE = "suppression"


def suppression_hash(workspace_id: int, identifier_type: str, value: str) -> bytes:
    """The keyed hash a suppressed identifier is kept as: under its own derived key, so it is
    neither the blind index nor anything a data key opens (see profiles.models.Suppression)."""
    return keyed_hash(SUPPRESSION_NAMESPACE, workspace_id, identifier_type, value)


def _unique_messages(messages: list[InboundMessage]) -> list[InboundMessage]:
    unique: dict[str, InboundMessage] = {}
    for msg in messages:
        unique.setdefault(msg.message_id, msg)
    return list(unique.values())


def _drop_suppressed(
    workspace: Workspace,
    messages: list[InboundMessage],
    per_message: list[list[Ident]],
    now: datetime,
    claims: list[list[Ident]] | None = None,
) -> tuple[list[InboundMessage], list[list[Ident]], int]:
    """Keep the messages that carry no suppressed identifier (one lookup for the batch); the
    others are counted for the day and not stored at all, not even their messageId. `claims`,
    parallel to `per_message`, are the identifiers to check where they differ (unverified
    messages)."""
    flags = _suppressed_flags(workspace, per_message if claims is None else claims)
    if not any(flags):
        return messages, per_message, 0
    kept: list[InboundMessage] = []
    kept_idents: list[list[Ident]] = []
    for msg, idents, suppressed in zip(messages, per_message, flags, strict=True):
        if not suppressed:
            kept.append(msg)
            kept_idents.append(idents)
    dropped = len(messages) - len(kept)
    with connection.cursor() as cursor:
        table = SuppressionHit._meta.db_table
        cursor.execute(
            f"INSERT INTO {table} (workspace_id, day, count) VALUES (%s, %s, %s) "  # noqa: S608
            f"ON CONFLICT (workspace_id, day) DO UPDATE SET count = {table}.count + excluded.count",
            [workspace.pk, now.date(), dropped],
        )
    return kept, kept_idents, dropped


def _suppressed_flags(workspace: Workspace, per_message: list[list[Ident]]) -> list[bool]:
    """Whether each message (given by its identifiers) carries a suppressed identifier; one
    lookup for all of them."""
    hashes: dict[tuple[str, str], bytes] = {}
    by_type: dict[str, set[bytes]] = defaultdict(set)
    for idents in per_message:
        for ident in idents:
            key = (ident.type, ident.value)
            if key not in hashes:
                hashes[key] = suppression_hash(workspace.pk, ident.type, ident.value)
                by_type[ident.type].add(hashes[key])
    if not by_type:
        return [False] * len(per_message)
    # One condition per type, so each uses the unique index (workspace, type, hash) in full.
    found: Iterable[tuple[str, Any]]
    if connection.vendor == "postgresql":
        # An array per type: the ORM's IN lists prepare every value in Python.
        kinds = sorted(by_type)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT identifier_type, keyed_hash FROM {Suppression._meta.db_table} "  # noqa: S608
                "WHERE workspace_id = %s AND ("
                + " OR ".join(["(identifier_type = %s AND keyed_hash = ANY(%s))"] * len(kinds))
                + ")",
                [workspace.pk, *(v for kind in kinds for v in (kind, list(by_type[kind])))],
            )
            found = cursor.fetchall()
    else:
        condition = Q()
        for kind, digests in by_type.items():
            condition |= Q(identifier_type=kind, keyed_hash__in=list(digests))
        found = Suppression.objects.filter(condition, workspace=workspace).values_list(
            "identifier_type", "keyed_hash"
        )
    suppressed = {(kind, bytes(digest)) for kind, digest in found}
    return [
        any((i.type, hashes[(i.type, i.value)]) in suppressed for i in idents)
        for idents in per_message
    ]


def messages_suppressed(*, workspace: Workspace, messages: list[InboundMessage]) -> list[bool]:
    """Whether each message carries an identifier on the workspace's suppression list (an
    erased or opted-out person's), read as ingestion reads a message's identifiers."""
    rules = load_rules(workspace)
    indexer = _Indexer(workspace.pk)
    previous_user_ids = _previous_ids_known_as_user_ids(workspace, messages, indexer)
    per_message = [
        message_identifiers(m, rules, indexer, previous_user_ids, claimed=True) for m in messages
    ]
    return _suppressed_flags(workspace, per_message)


@transaction.atomic
def ingest_messages(
    *, source: Source, messages: list[InboundMessage], postpone_contended: bool = False
) -> IngestOutcome:
    """Store a batch of validated messages from `source` (see the module docstring). With
    `postpone_contended`, the messages connected to an identifier another transaction holds are
    handed back in `IngestOutcome.postponed` instead of waited for (see `_contended`)."""
    workspace = source.workspace
    now = timezone.now()
    rules = load_rules(workspace)
    indexer = _Indexer(workspace.pk)
    # Identifiers first, over the batch's distinct messageIds: a message carrying an
    # identifier of an erased person is dropped before anything of it is written.
    unique = _unique_messages(messages)
    previous_user_ids = _previous_ids_known_as_user_ids(workspace, unique, indexer)
    per_unique = [message_identifiers(m, rules, indexer, previous_user_ids) for m in unique]
    # A message that proved no identity still names an erased person when it carries their
    # email (say) as a trait: checked against every identifier it names, not only those kept.
    claims = None
    if not all(m.identity_verified for m in unique):
        claims = [
            idents
            if m.identity_verified
            else message_identifiers(m, rules, indexer, previous_user_ids, claimed=True)
            for m, idents in zip(unique, per_unique, strict=True)
        ]
    unique, per_unique, dropped = _drop_suppressed(workspace, unique, per_unique, now, claims)
    postponed: list[InboundMessage] = []
    plan: _Plan | None = None
    if postpone_contended:
        # Locked before the claim: a postponed message must not be marked as seen. First the
        # identifiers, then the profiles they lead to (their state is loaded for that).
        later = _contended(per_unique)
        unique, per_unique = _postpone(later, unique, per_unique, postponed)
        plan = _load_state(workspace, {i for idents in per_unique for i in idents}, rules, now)
        busy = _profiles_busy(plan)
        if busy:
            keys = [
                [("i", *i.key) for i in idents]
                + [
                    ("p", plan.identity_profile[i.key])
                    for i in idents
                    if i.key in plan.identity_profile
                ]
                for idents in per_unique
            ]
            later = _connected(keys, {("p", profile_id) for profile_id in busy})
            unique, per_unique = _postpone(later, unique, per_unique, postponed)
    fresh = _claim_new_messages(workspace, unique, now)
    duplicates = len(messages) - len(fresh) - dropped - len(postponed)
    idents_of = {id(m): idents for m, idents in zip(unique, per_unique, strict=True)}
    per_message = [idents_of[id(m)] for m in fresh]
    all_idents = {i for idents in per_message for i in idents}
    if plan is None:  # otherwise every kept identifier is locked and loaded already
        _lock_identifiers(all_idents)
        plan = _load_state(workspace, all_idents, rules, now)

    resolved: dict[str, UUID] = {}
    for msg, idents in zip(fresh, per_message, strict=True):
        resolved[msg.message_id] = _resolve(plan, msg, idents, rules, now)

    _write(workspace, source, plan, fresh, resolved, now)
    # A repeated messageId (in this batch or an earlier one) was not stored again, nor was a
    # message of a suppressed person: None.
    stored = {id(m) for m in fresh}
    profile_ids = [plan.find(resolved[m.message_id]) if id(m) in stored else None for m in messages]
    # Higher apps (activation) derive data from what was stored, once it is committed.
    touched = sorted({pid for pid in profile_ids if pid is not None}, key=str)
    if touched:
        transaction.on_commit(partial(run_ingest_hooks, workspace.pk, touched))
    return IngestOutcome(
        profile_ids=profile_ids,
        stored=len(fresh),
        duplicates=duplicates,
        profiles_created=sum(1 for p in plan.profiles.values() if p.new),
        merges=len(plan.merges),
        conflicts=len(plan.conflicts),
        dropped=dropped,
        postponed=postponed,
    )


def _preload_keys(key_ids: set[UUID]) -> None:
    """Unwrap, with one query, the data keys the batch seals under that this process does not
    hold (a key made by another worker, or expired from the cache): one query per key else."""
    missing = envelope.data_keys_missing(key_ids)
    if not missing:
        return
    envelope.preload_data_keys(
        envelope.StoredDataKey(
            id=key_id,
            wrapped=None if wrapped is None else WrappedKey(kek_id=kek_id, blob=bytes(wrapped)),
        )
        for key_id, kek_id, wrapped in DataKey.objects.filter(pk__in=missing).values_list(
            "id", "kek_id", "wrapped"
        )
    )


def _postpone(
    later: set[int],
    unique: list[InboundMessage],
    per_unique: list[list[Ident]],
    postponed: list[InboundMessage],
) -> tuple[list[InboundMessage], list[list[Ident]]]:
    """Move the messages at positions `later` to `postponed`; the rest, with their idents."""
    if not later:
        return unique, per_unique
    postponed.extend(m for p, m in enumerate(unique) if p in later)
    return (
        [m for p, m in enumerate(unique) if p not in later],
        [idents for p, idents in enumerate(per_unique) if p not in later],
    )


def _sealer(model: type[Any], name: str) -> Any:
    field = model._meta.get_field(name)
    assert isinstance(field, EncryptedField)
    return field.seal_value


def _write(
    workspace: Workspace,
    source: Source,
    plan: _Plan,
    messages: list[InboundMessage],
    resolved: dict[str, UUID],
    now: datetime,
) -> None:
    _preload_keys(
        {key_id for _origin, key_id in plan.message_origin.values()}
        | {new.data_key_id for new in plan.new_identities}
    )
    new_profiles = [p for p in plan.profiles.values() if p.new]
    bulk.insert(
        Profile,
        ["id", "workspace", "status", "attributes", "merge_count", "created_at", "updated_at"],
        [(p.id, workspace.pk, ProfileStatus.ACTIVE, {}, 0, now, now) for p in new_profiles],
    )
    owner_of_key = {p.data_key_id: p.id for p in new_profiles}
    bulk.insert(
        DataKey,
        ["id", "workspace", "profile", "purpose", "kek_id", "wrapped", "created_at"],
        [
            (
                k.id,
                workspace.pk,
                owner_of_key[k.id],
                DataKeyPurpose.PROFILE,
                k.wrapped.kek_id,
                k.wrapped.blob,
                now,
            )
            for k in plan.new_keys
        ],
    )
    _apply_merges(workspace, plan, now)
    _write_identities(workspace, source, plan, now)
    attribute_changes = _write_traits(workspace, source, plan, messages, resolved, now)
    _write_events(workspace, source, plan, messages, resolved)
    merged_into = {plan.find(s) for s, *_ in plan.merges}
    _refresh_profiles(plan, messages, resolved, attribute_changes | merged_into, now)
    bulk.insert(
        MergeConflict,
        [
            "workspace",
            "profile",
            "other_profile",
            "identifier_type",
            "identity",
            "message_id",
            "reason",
            "created_at",
        ],
        [
            (
                workspace.pk,
                plan.find(profile_id),
                plan.find(other_id),
                ident.type,
                plan.identity_id.get(ident.key),
                message_id[:128],
                reason,
                now,
            )
            for profile_id, other_id, ident, message_id, reason in plan.conflicts
        ],
    )


@dataclass(frozen=True)
class MergeStep:
    """One profile absorbed by another, with its evidence, as the merge ledger records it."""

    survivor: UUID
    absorbed: UUID
    identifier_type: str
    identity_id: UUID | None
    message_id: str
    rule: str
    evidence: dict[str, Any] = field(default_factory=dict)


def _apply_merges(workspace: Workspace, plan: _Plan, now: datetime) -> None:
    """The merges ingestion (or a rebuild) planned, applied through `apply_merges`."""
    steps = [
        MergeStep(
            survivor=survivor,
            absorbed=absorbed,
            identifier_type=ident.type,
            identity_id=plan.identity_id.get(ident.key),
            message_id=message_id,
            rule=rule,
        )
        for survivor, absorbed, ident, message_id, rule in plan.merges
    ]
    merge_counts = {s.survivor: plan.profiles[s.survivor].merge_count for s in steps}
    apply_merges(workspace, steps, find=plan.find, merge_counts=merge_counts, now=now)


def apply_merges(
    workspace: Workspace,
    steps: list[MergeStep],
    *,
    find: Any,
    merge_counts: dict[UUID, int],
    now: datetime,
) -> None:
    """Move every row of each absorbed profile to its final survivor (`find`), set-wise; run
    the merge hooks; write the ledger. The only implementation of a merge: ingestion, the
    rebuild and `profiles.services.profiles_merge` all come here.

    `merge_counts` is the merge count of every survivor after the steps (intermediate ones
    too, so that an unmerge of a later step finds the count the profile had). Rows keep their
    `origin_profile_id` and `data_key`, and the absorbed profile's data keys move with them
    (ADR 0004): that is what an unmerge reads (ADR 0007)."""
    if not steps:
        return
    final = {step.absorbed: find(step.absorbed) for step in steps}
    pairs = list(final.items())
    key_ids: dict[UUID, list[str]] = defaultdict(list)
    for key_id, owner in (
        DataKey.objects.filter(profile_id__in=list(final))
        .order_by("created_at", "id")
        .values_list("id", "profile_id")
    ):
        key_ids[owner].append(str(key_id))
    for model in (Identity, Trait, Event, DataKey):
        bulk.update_from_values(
            model, key="profile", names=["profile"], rows=pairs,
            assignments=["profile_id = v.column2"],
        )  # fmt: skip
    # Profiles absorbed earlier by a profile absorbed now point straight at the survivor.
    bulk.update_from_values(
        Profile, key="merged_into", names=["merged_into"], rows=pairs,
        assignments=["merged_into_id = v.column2"],
    )  # fmt: skip
    bulk.update_from_values(
        Profile, key="id", names=["merged_into", "updated_at"],
        rows=[(a, s, now) for a, s in pairs],
        assignments=["status = 'merged'", "merged_into_id = v.column2", "updated_at = v.column3"],
    )  # fmt: skip
    run_merge_hooks(workspace.pk, [(survivor, absorbed) for absorbed, survivor in pairs])
    # The survivors changed too (they hold the absorbed rows now): whatever reads
    # `updated_at` to find changed profiles (incremental matching) must see them.
    bulk.update_from_values(
        Profile, key="id", names=["merge_count", "updated_at"],
        rows=[(pid, count, now) for pid, count in sorted(merge_counts.items())],
        assignments=["merge_count = v.column2", "updated_at = v.column3"],
    )  # fmt: skip
    # The survivor was first seen when the first of them was, last seen when the last was.
    seen = Profile.objects.filter(pk__in=list(final)).values_list(
        "id", "first_seen_at", "last_seen_at", "merged_into_id", "restricted"
    )
    span: dict[UUID, tuple[datetime | None, datetime | None]] = {}
    restricted: dict[UUID, list[UUID]] = defaultdict(list)  # survivor -> restricted absorbed
    for absorbed, first, last, survivor, was_restricted in seen:
        lo, hi = span.get(survivor, (None, None))
        span[survivor] = (_earliest(lo, first), _latest(hi, last))
        if was_restricted:
            restricted[survivor].append(absorbed)
    _restrict_survivors(workspace, restricted, now)
    bulk.update_from_values(
        Profile, key="id", names=["first_seen_at", "last_seen_at"],
        rows=[(pid, lo, hi) for pid, (lo, hi) in span.items() if lo is not None],
        assignments=[
            "first_seen_at = CASE WHEN t.first_seen_at IS NULL OR v.column2 < t.first_seen_at"
            " THEN v.column2 ELSE t.first_seen_at END",
            "last_seen_at = CASE WHEN t.last_seen_at IS NULL OR v.column3 > t.last_seen_at"
            " THEN v.column3 ELSE t.last_seen_at END",
        ],
    )  # fmt: skip
    bulk.insert(
        Merge,
        [
            "workspace", "survivor", "absorbed", "identifier_type", "identity", "message_id",
            "rule", "evidence", "data_key_ids", "created_at",
        ],
        [
            (
                workspace.pk, step.survivor, step.absorbed, step.identifier_type[:64],
                step.identity_id, step.message_id[:128], step.rule[:200], step.evidence,
                key_ids.get(step.absorbed, []), now,
            )
            for step in steps
        ],
    )  # fmt: skip


def _restrict_survivors(
    workspace: Workspace, absorbed_by: dict[UUID, list[UUID]], now: datetime
) -> None:
    """A restriction of processing (GDPR Art. 18) follows the person: a survivor that absorbed
    a restricted profile is restricted too, with an audit entry saying why, and the
    restriction hooks take it out of audiences and destinations, as `profile_restrict` does.
    Left as it is, the merge lifted the restriction without a steward, a reason or the subject
    being told. An unmerge leaves the survivor restricted: only a steward lifts a restriction
    (governance.services)."""
    if not absorbed_by:
        return
    newly = list(Profile.objects.filter(pk__in=list(absorbed_by), restricted=False).order_by("pk"))
    if not newly:
        return
    Profile.objects.filter(pk__in=[p.pk for p in newly]).update(restricted=True, updated_at=now)
    for profile in newly:
        audit.record_decision(
            profile,
            actor=None,
            reason="Merged with a restricted profile: the restriction follows the person.",
            changes={"restricted": ["False", "True"]},
            details={"absorbed": sorted(str(pk) for pk in absorbed_by[profile.pk])},
            via="merge",
        )
    run_restriction_hooks(workspace.pk, [p.pk for p in newly])


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


def _write_identities(workspace: Workspace, source: Source, plan: _Plan, now: datetime) -> None:
    seal = _sealer(Identity, "value")
    rows = []
    for new in plan.new_identities:
        key_id = new.data_key_id
        rows.append(
            (
                new.id, workspace.pk, plan.find(new.profile_id), new.origin_id, new.ident.type,
                new.ident.index, seal(key_id=key_id, row_id=new.id, value=new.ident.value),
                key_id, source.pk, new.message_id[:128], new.seen_at, new.seen_at,
            )
        )  # fmt: skip
    bulk.insert(
        Identity,
        [
            "id", "workspace", "profile", "origin_profile_id", "identifier_type", "blind_index",
            "value", "data_key", "source", "message_id", "first_seen_at", "last_seen_at",
        ],
        rows,
    )  # fmt: skip
    new_ids = {n.id for n in plan.new_identities}
    existing = [i for i in plan.seen_identity_ids if i not in new_ids]
    if existing:
        Identity.objects.filter(pk__in=existing).update(last_seen_at=now)
    bulk.insert(
        IdentityLink,
        ["workspace", "left", "right", "message_id", "seen_at"],
        [
            (workspace.pk, left, right, message_id[:128], seen_at)
            for (left, right), (message_id, seen_at) in plan.links.items()
        ],
        on_conflict="ON CONFLICT (left_id, right_id) DO NOTHING",
    )


def _write_traits(
    workspace: Workspace,
    source: Source,
    plan: _Plan,
    messages: list[InboundMessage],
    resolved: dict[str, UUID],
    now: datetime,
) -> set[UUID]:
    """Upsert the latest value per (origin profile, key, source); return the profiles whose
    attribute traits changed (their surviving attributes must be recomputed)."""
    latest: dict[tuple[UUID, str], tuple[InboundMessage, Any]] = {}
    for msg in messages:
        if not msg.traits:
            continue
        origin = plan.message_origin[msg.message_id][0]
        for key, value in msg.traits.items():
            slot = (origin, str(key)[:128])
            kept = latest.get(slot)
            if kept is None or kept[0].timestamp <= msg.timestamp:
                latest[slot] = (msg, value)
    if not latest:
        return set()
    schema = _trait_schema(workspace, {key for _, key in latest})
    existing = {
        (origin, key): (trait_id, observed, first)
        for trait_id, origin, key, observed, first in Trait.objects.filter(
            origin_profile_id__in={o for o, _ in latest}, source=source
        ).values_list("id", "origin_profile_id", "key", "observed_at", "first_observed_at")
    }
    seal = _sealer(Trait, "value_pii")
    rows = []
    changed: set[UUID] = set()
    for (origin, key), (msg, value) in latest.items():
        before = existing.get((origin, key))
        if before is not None and before[1] > msg.timestamp:
            continue  # a late, older value does not overwrite a newer one
        trait_id = before[0] if before else uuid7()
        is_pii = schema[key]
        key_id = plan.message_origin[msg.message_id][1]
        profile_id = plan.find(resolved[msg.message_id])
        if not is_pii:
            changed.add(profile_id)
        rows.append(
            (
                trait_id, workspace.pk, profile_id, origin, key, source.pk, is_pii,
                None if is_pii else value,
                seal(key_id=key_id, row_id=trait_id, value=value) if is_pii else None,
                key_id, msg.timestamp, before[2] if before else msg.timestamp,
                msg.message_id[:128],
            )
        )  # fmt: skip
    updated = ("profile_id", "is_pii", "value_attribute", "value_pii", "data_key_id",
               "observed_at", "message_id")  # fmt: skip
    bulk.insert(
        Trait,
        [
            "id", "workspace", "profile", "origin_profile_id", "key", "source", "is_pii",
            "value_attribute", "value_pii", "data_key", "observed_at", "first_observed_at",
            "message_id",
        ],
        rows,
        on_conflict="ON CONFLICT (origin_profile_id, key, source_id) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in updated),
    )  # fmt: skip
    return changed


def _write_events(
    workspace: Workspace,
    source: Source,
    plan: _Plan,
    messages: list[InboundMessage],
    resolved: dict[str, UUID],
) -> None:
    pii_keys = _pii_property_keys(workspace)
    seal = _sealer(Event, "sealed")
    rows = []
    for msg in messages:
        origin, key_id = plan.message_origin[msg.message_id]
        properties, sealed_props = sealing.split_properties(msg.properties or {}, pii_keys)
        context, sealed_context = sealing.split_context(
            msg.context or {}, msg.ip, truncate_ip(msg.ip) if msg.ip else None
        )
        sealed: dict[str, Any] = {}
        if sealed_props:
            sealed["properties"] = sealed_props
        if sealed_context:
            sealed["context"] = sealed_context
        if msg.type == EventType.GROUP and msg.group_id is not None:
            properties = {**properties, "group_id": str(msg.group_id)}
        event_id = uuid7()
        rows.append(
            (
                event_id, workspace.pk, plan.find(resolved[msg.message_id]), origin, source.pk,
                msg.message_id[:128], msg.type, (msg.name or "")[:200], msg.timestamp,
                msg.original_timestamp, msg.sent_at, msg.received_at, properties, context,
                seal(key_id=key_id, row_id=event_id, value=sealed) if sealed else None, key_id,
            )
        )  # fmt: skip
    bulk.insert(
        Event,
        [
            "id", "workspace", "profile", "origin_profile_id", "source", "message_id", "type",
            "name", "timestamp", "original_timestamp", "sent_at", "received_at", "properties",
            "context", "sealed", "data_key",
        ],
        rows,
    )  # fmt: skip


def _pii_property_keys(workspace: Workspace) -> sealing.SealedKeys:
    return sealing.SealedKeys(key for key, is_pii in _trait_classes(workspace).items() if is_pii)


def _refresh_profiles(
    plan: _Plan,
    messages: list[InboundMessage],
    resolved: dict[str, UUID],
    attributes_changed: set[UUID],
    now: datetime,
) -> None:
    """First/last seen of touched profiles; surviving attributes where traits changed."""
    seen: dict[UUID, tuple[datetime, datetime]] = {}
    for msg in messages:
        pid = plan.find(resolved[msg.message_id])
        first, last = seen.get(pid, (msg.timestamp, msg.timestamp))
        seen[pid] = (min(first, msg.timestamp), max(last, msg.timestamp))
    bulk.update_from_values(
        Profile,
        key="id",
        names=["first_seen_at", "last_seen_at", "updated_at"],
        rows=[(pid, first, last, now) for pid, (first, last) in seen.items()],
        assignments=[
            "first_seen_at = CASE WHEN t.first_seen_at IS NULL OR v.column2 < t.first_seen_at"
            " THEN v.column2 ELSE t.first_seen_at END",
            "last_seen_at = CASE WHEN t.last_seen_at IS NULL OR v.column3 > t.last_seen_at"
            " THEN v.column3 ELSE t.last_seen_at END",
            "updated_at = v.column4",
        ],
    )
    if attributes_changed:
        attributes = profile_attributes(attributes_changed)
        bulk.update_from_values(
            Profile,
            key="id",
            names=["attributes"],
            rows=[(pid, attributes.get(pid, {})) for pid in attributes_changed],
            assignments=["attributes = v.column2"],
        )


def profile_attributes(profile_ids: Iterable[UUID]) -> dict[UUID, dict[str, Any]]:
    """Attribute traits after survivorship, per profile."""
    rows = Trait.objects.filter(profile_id__in=list(profile_ids), is_pii=False).values_list(
        "profile_id",
        "key",
        "value_attribute",
        "observed_at",
        "first_observed_at",
        "source__priority",
        "workspace_id",
    )
    policies: dict[tuple[int, str], str] = {}
    candidates: dict[UUID, dict[str, list[tuple[Any, ...]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    workspace_ids: set[int] = set()
    for pid, key, value, observed, first, priority, workspace_id in rows:
        candidates[pid][key].append((value, observed, first, priority))
        workspace_ids.add(workspace_id)
    for workspace_id, key, policy in TraitSchema.objects.filter(
        workspace_id__in=workspace_ids
    ).values_list("workspace_id", "key", "survivorship"):
        policies[(workspace_id, key)] = policy
    workspace_of = dict(
        Profile.objects.filter(pk__in=list(candidates)).values_list("id", "workspace_id")
    )
    result: dict[UUID, dict[str, Any]] = {}
    for pid, keys in candidates.items():
        chosen: dict[str, Any] = {}
        for key, values in keys.items():
            policy = policies.get((workspace_of[pid], key), Survivorship.LATEST)
            chosen[key] = pick_surviving_value(policy, values)
        result[pid] = dict(sorted(chosen.items()))
    return result


def pick_surviving_value(policy: str, values: list[tuple[Any, ...]]) -> Any:
    """values: (value, observed_at, first_observed_at, source priority)."""
    if policy == Survivorship.EARLIEST:
        return min(values, key=lambda v: v[2])[0]
    if policy == Survivorship.SOURCE_PRIORITY:
        return min(values, key=lambda v: (v[3], -v[1].timestamp()))[0]
    return max(values, key=lambda v: v[1])[0]
