"""Writes for probabilistic matching: settings, runs, and stewards' decisions on candidates.

A run (`match_run`) reads the workspace's active profiles, decrypts their comparison fields in
worker memory in bounded batches (`profiles.selectors.profiles_match_fields`), hands them to
the engine (blocking, comparison vectors, EM, scores), and stores the pairs at least as
probable as the review threshold as candidates with their comparison vectors. Plaintext never
leaves the process: candidates and logs hold levels, weights and ids only, and the run writes
one ACCESS audit entry naming how many profiles it decrypted.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
from auditlog import get_logentry_model
from django.conf import settings as django_settings
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from cdp.core import audit, bulk
from cdp.core.audit import REDACTED
from cdp.core.crypto import keyed_hash, keyed_hasher
from cdp.core.exceptions import ApplicationError, InvalidInput
from matching import engine
from matching import fellegi_sunter as fs
from matching.enums import CandidateStatus, ParametersMode, RunKind, RunStatus
from matching.exceptions import (
    MatchCandidateReviewed,
    MatchCandidateStale,
    MatchRunInProgress,
    MatchSettingsInvalid,
)
from matching.models import MatchCandidate, MatchKeys, MatchRun, MatchSettings
from profiles import selectors as profile_selectors
from profiles import services as profile_services
from profiles.enums import DEFAULT_SOURCE_PRIORITY, Survivorship
from profiles.exceptions import MergeRefused

log = logging.getLogger(__name__)

LOAD_BATCH = 2000  # profiles decrypted per query batch (bounded plaintext per step)
STALE_RUN = timedelta(hours=6)  # a run "running" for longer than this crashed
ACCEPT_RULE = "probabilistic match accepted by a steward"
AUTO_RULE = "probabilistic match above the auto-merge threshold"


# --- settings --------------------------------------------------------------------------------


def match_settings_ensure(*, workspace: Any) -> MatchSettings:
    """The workspace's match settings, created with the defaults on first use."""
    settings, _ = MatchSettings.objects.get_or_create(workspace=workspace)
    return settings


def _config_of(
    *, fields: Any, blocking: Any, name_swap: Any, max_block_size: int, u_sample_pairs: int
) -> engine.MatchConfig:
    try:
        return engine.parse_config(
            fields=fields,
            blocking=blocking,
            name_swap=name_swap or None,
            max_block_size=max_block_size,
            u_sample_pairs=u_sample_pairs,
        )
    except engine.ConfigError as exc:
        raise MatchSettingsInvalid(str(exc)) from None


def match_config(*, settings: MatchSettings) -> engine.MatchConfig:
    """The engine configuration of stored settings (MatchSettingsInvalid if they broke)."""
    return _config_of(
        fields=settings.fields,
        blocking=settings.blocking,
        name_swap=settings.name_swap,
        max_block_size=settings.max_block_size,
        u_sample_pairs=settings.u_sample_pairs,
    )


def _parameters_of(config: engine.MatchConfig, data: Any) -> fs.Parameters:
    try:
        return engine.parameters_from_json(config, data)
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:
        # OverflowError: an integer past the float range, which JSON allows.
        raise MatchSettingsInvalid(f"parameters: {exc}") from None


def stored_parameters(
    *, settings: MatchSettings, config: engine.MatchConfig
) -> fs.Parameters | None:
    """The parameters the settings hold, if they fit the current fields; None otherwise (the
    fields changed since they were estimated: the next run re-estimates)."""
    if not settings.parameters:
        return None
    try:
        return _parameters_of(config, settings.parameters)
    except MatchSettingsInvalid:
        return None


def match_settings_validate(
    *,
    fields: Any,
    blocking: Any,
    name_swap: Any,
    max_block_size: int,
    u_sample_pairs: int,
    review_threshold: float,
    auto_merge_threshold: float | None,
    parameters_mode: str,
    parameters: Any,
) -> engine.MatchConfig:
    """Check settings before they are stored; MatchSettingsInvalid names the broken one."""
    config = _config_of(
        fields=fields,
        blocking=blocking,
        name_swap=name_swap,
        max_block_size=max_block_size,
        u_sample_pairs=u_sample_pairs,
    )
    if not 0 < review_threshold <= 1:
        raise MatchSettingsInvalid("review_threshold: a probability in (0, 1]")
    if auto_merge_threshold is not None and not review_threshold <= auto_merge_threshold <= 1:
        raise MatchSettingsInvalid(
            "auto_merge_threshold: empty (off), or a probability from the review threshold to 1"
        )
    if parameters_mode not in ParametersMode.values:
        raise MatchSettingsInvalid(f"parameters_mode: one of {', '.join(ParametersMode.values)}")
    if parameters_mode == ParametersMode.MANUAL:
        # Estimated parameters are written by runs and ignored once they no longer fit.
        _parameters_of(config, parameters)
    return config


SETTINGS_FIELDS = (
    "fields",
    "blocking",
    "name_swap",
    "max_block_size",
    "u_sample_pairs",
    "review_threshold",
    "auto_merge_threshold",
    "parameters_mode",
    "parameters",
)


@transaction.atomic
def match_settings_update(*, settings: MatchSettings, **changes: Any) -> MatchSettings:
    """Change match settings (validated together); audited by auditlog with its author."""
    unknown = set(changes) - set(SETTINGS_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown match settings: {', '.join(sorted(unknown))}.")
    merged = {name: changes.get(name, getattr(settings, name)) for name in SETTINGS_FIELDS}
    config = match_settings_validate(**merged)
    if (
        merged["parameters_mode"] == ParametersMode.ESTIMATED
        and "parameters" not in changes
        and merged["parameters"]
        and stored_parameters(settings=settings, config=config) is None
    ):
        # The estimated parameters no longer fit the fields: drop them, the next run estimates.
        merged["parameters"] = changes["parameters"] = {}
    for name in changes:
        setattr(settings, name, merged[name])
    if changes:
        settings.save(update_fields=[*changes, "updated_at"])
    return settings


# --- runs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proposal:
    """A pair this run proposed (or merged): ordered profile ids and the evidence."""

    candidate_id: int
    profile_a: uuid.UUID
    profile_b: uuid.UUID
    probability: float
    match_weight: float
    status: str


@dataclass(frozen=True)
class MatchRunResult:
    run: MatchRun
    proposals: list[Proposal] = field(default_factory=list)


def match_run(
    *,
    workspace: Any,
    full: bool = False,
    threshold: float | None = None,
    actor: Any = None,
    batch_size: int = LOAD_BATCH,
) -> MatchRunResult:
    """Match the workspace's active profiles and store the candidates.

    A full run (or the first, or when no parameters fit the fields) considers every pair the
    blocking rules produce and, in the estimated mode, re-estimates m, u and the prior. Any
    other run is incremental: only pairs involving a profile updated since the last finished
    run's watermark, scored with the stored parameters. `threshold` overrides the review
    threshold for this run. Pairs a steward reviewed are never proposed again (a rejected
    pair also not after either profile was merged into another)."""
    settings = match_settings_ensure(workspace=workspace)
    config = match_config(settings=settings)
    threshold = settings.review_threshold if threshold is None else float(threshold)
    if not 0 < threshold <= 1:
        raise InvalidInput("The threshold is a probability in (0, 1].", code="invalid_threshold")
    stored = stored_parameters(settings=settings, config=config)
    if settings.parameters_mode == ParametersMode.MANUAL and stored is None:
        raise MatchSettingsInvalid("parameters: hand-set parameters do not fit the fields")
    last = (
        MatchRun.objects.filter(workspace=workspace, status=RunStatus.FINISHED)
        .order_by("-started_at")
        .first()
    )
    incremental = not full and last is not None and stored is not None
    now = timezone.now()
    with transaction.atomic():
        MatchSettings.objects.select_for_update().filter(pk=settings.pk).first()
        if MatchRun.objects.filter(
            workspace=workspace, status=RunStatus.RUNNING, started_at__gt=now - STALE_RUN
        ).exists():
            raise MatchRunInProgress()
        run = MatchRun.objects.create(
            workspace=workspace,
            kind=RunKind.INCREMENTAL if incremental else RunKind.FULL,
            started_at=now,
            since=last.watermark if incremental and last is not None else None,
            watermark=now,
            threshold=threshold,
            triggered_by=actor if getattr(actor, "pk", None) else None,
        )
    try:
        return _execute(run, settings, config, stored, threshold, actor, batch_size)
    except Exception as exc:
        MatchRun.objects.filter(pk=run.pk).update(
            status=RunStatus.FAILED, finished_at=timezone.now(), error=type(exc).__name__[:200]
        )
        log.warning("matching run %s of workspace %s failed: %s", run.pk, workspace.pk,
                    type(exc).__name__)  # fmt: skip
        raise


def match_runs_planned(*, now: Any = None) -> list[tuple[int, bool]]:
    """(workspace id, full) of the scheduled runs: every workspace with match settings; full
    when no full run was attempted in the last MATCHING_FULL_RUN_DAYS (an hour's slack, so a
    daily beat gives a weekly full run; a full run that failed is not retried every day: the
    next comes a period later, incremental ones meanwhile). 0 or less: never full (a first
    run is full anyway)."""
    days = django_settings.MATCHING_FULL_RUN_DAYS
    cutoff = (now or timezone.now()) - timedelta(days=days) + timedelta(hours=1)
    last_full = dict(
        MatchRun.objects.filter(kind=RunKind.FULL)
        .values("workspace_id")
        .annotate(last=Max("started_at"))
        .values_list("workspace_id", "last")
    )
    planned = []
    for workspace_id in MatchSettings.objects.order_by("workspace_id").values_list(
        "workspace_id", flat=True
    ):
        last = last_full.get(workspace_id)
        planned.append((workspace_id, days > 0 and (last is None or last <= cutoff)))
    return planned


def _load(
    workspace: Any, config: engine.MatchConfig, ids: list[uuid.UUID], batch_size: int
) -> engine.Records:
    """Decrypt the comparison fields of `ids`, batch by batch, into engine records."""
    trait_keys = sorted({f.trait_key for f in config.fields if f.source == "trait"})
    identifier_types = sorted({f.key for f in config.fields if f.source == "identifier"})
    values: dict[str, list[list[Any]]] = {f.name: [] for f in config.fields}
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        found = profile_selectors.profiles_match_fields(
            workspace=workspace,
            profile_ids=chunk,
            trait_keys=trait_keys,
            identifier_types=identifier_types,
        )
        for pk in chunk:
            traits, identifiers = found.get(pk, ({}, {}))
            for spec in config.fields:
                if spec.source == "identifier":
                    values[spec.name].append(list(identifiers.get(spec.key, ())))
                else:
                    value = _trait_path(traits, spec.key)
                    values[spec.name].append([] if value is None else [value])
    return engine.Records(ids=ids, values=values)


# --- incremental runs: decrypt the changed profiles and their block partners only -----------

KEYS_VERSION = 2  # bump when normalization, blocking transforms or the hashing change a key
KEY_COLUMNS = ("profile_id", "workspace_id", "fingerprint", "keys", "computed_at")


class _Keys:
    """The workspace's stored match keys (`MatchKeys`) for its current settings: keyed hashes,
    under a key of their own derived from CDP_INDEX_KEY, of each profile's blocking keys and
    term-frequency values, as 64-bit integers with the string's tag in the top byte."""

    def __init__(self, workspace: Any, settings: MatchSettings, config: engine.MatchConfig) -> None:
        self.workspace = workspace
        self.workspace_id = workspace.pk
        # What decides a profile's keys besides its rows: the fields and rules, and which of a
        # trait's values survives (survivorship policies, source priorities), which a steward
        # may change without touching any profile. Only what differs from the defaults counts
        # (a trait's first schema row, a new source, change nothing); priorities only under a
        # source-priority policy.
        traits = sorted({f.trait_key for f in config.fields if f.source == "trait"})
        policies = sorted(
            profile_selectors.trait_schema_list(workspace=workspace)
            .filter(key__in=traits)
            .exclude(survivorship=Survivorship.LATEST)
            .values_list("key", "survivorship")
        )
        priorities = []
        if any(policy == Survivorship.SOURCE_PRIORITY for _, policy in policies):
            priorities = sorted(
                (str(pk), priority)
                for pk, priority in profile_selectors.source_list(workspace=workspace)
                .exclude(priority=DEFAULT_SOURCE_PRIORITY)
                .values_list("pk", "priority")
            )
        described = {
            "version": KEYS_VERSION,
            "fields": settings.fields,
            "blocking": settings.blocking,
            "survivorship": policies,
            "priorities": priorities,
        }
        self.fingerprint = keyed_hash(
            "matching", self.workspace_id, "fingerprint", json.dumps(described, sort_keys=True)
        ).hex()
        self._memo: dict[tuple[int, engine.Key], int] = {}
        self._hashers: dict[int, Callable[[str], bytes]] = {}

    @functools.cached_property
    def stored(self) -> dict[uuid.UUID, bytes]:
        """Every profile's keys under the current settings (read when first needed)."""
        return {
            pk: bytes(blob)
            for pk, blob in MatchKeys.objects.filter(
                workspace_id=self.workspace_id, fingerprint=self.fingerprint
            ).values_list("profile_id", "keys")
        }

    def hash(self, tag: int, key: engine.Key) -> int:
        try:
            return self._memo[(tag, key)]
        except KeyError:
            hasher = self._hashers.get(tag)
            if hasher is None:
                hasher = self._hashers[tag] = keyed_hasher("matching", self.workspace_id, str(tag))
            # Each part with its length before it: no two keys encode alike.
            encoded = "".join(f"{len(part)}:{part}" for part in key)
            found = (tag << 56) | int.from_bytes(hasher(encoded)[:7], "big")
            self._memo[(tag, key)] = found
            return found

    def pack(self, per_record: list[list[tuple[int, engine.Key]]]) -> list[bytes]:
        """Each record's keys as stored: its distinct hashes, sorted, as big-endian int64s."""
        counts = np.fromiter(map(len, per_record), dtype=np.int64, count=len(per_record))
        hashes = np.fromiter(
            (self.hash(t, v) for strings in per_record for t, v in strings),
            dtype=np.int64,
            count=int(counts.sum()),
        )
        owners = np.repeat(np.arange(len(per_record)), counts)
        order = np.lexsort((hashes, owners))
        hashes, owners = hashes[order], owners[order]
        distinct = np.r_[True, (hashes[1:] != hashes[:-1]) | (owners[1:] != owners[:-1])]
        hashes, owners = hashes[distinct], owners[distinct]
        data = hashes.astype(">i8").tobytes()
        bounds = (np.searchsorted(owners, np.arange(len(per_record) + 1)) * 8).tolist()
        return [data[a:b] for a, b in itertools.pairwise(bounds)]

    @staticmethod
    def unpacked(packed: bytes) -> np.ndarray:
        return np.frombuffer(packed, dtype=">i8").astype(np.int64)

    def save(self, profile_ids: list[uuid.UUID], packed: list[bytes], *, everyone: bool) -> None:
        """Replace these profiles' keys. With `everyone` (every active profile was decrypted)
        the workspace's other rows go too: profiles merged away since, other settings."""
        now = timezone.now()
        rows = [
            (pk, self.workspace_id, self.fingerprint, keys, now)
            for pk, keys in zip(profile_ids, packed, strict=True)
        ]
        with transaction.atomic():
            if everyone:
                MatchKeys.objects.filter(workspace_id=self.workspace_id).delete()
            else:
                for start in range(0, len(profile_ids), LOAD_BATCH):
                    chunk = profile_ids[start : start + LOAD_BATCH]
                    MatchKeys.objects.filter(profile_id__in=chunk).delete()
            bulk.insert(MatchKeys, KEY_COLUMNS, rows)


@dataclass
class _Part:
    """The records a run compares: every active profile, or an incremental run's changed
    profiles and their block partners with what the population adds (term frequencies,
    blocks too big to pair)."""

    records: engine.Records
    changed: np.ndarray | None
    stored_keys: int
    frequencies: dict[int, engine.TermFrequencies] | None = None
    excluded: dict[int, set[engine.Key]] | None = None
    partial: bool = False  # not every active profile


def _changed_and_partners(
    keys: _Keys,
    config: engine.MatchConfig,
    ids: list[uuid.UUID],
    changed: np.ndarray,
    batch_size: int,
) -> _Part | None:
    """Decrypt the changed profiles, then only the profiles sharing a blocking key with one of
    them (in a block not too big), found by the stored keyed hashes; term frequencies and
    block sizes come from the hashes of every active profile. None when an unchanged active
    profile has no keys under the current settings (the run then decrypts everyone)."""
    changed_at = np.nonzero(changed)[0]
    unchanged_at = np.nonzero(~changed)[0]
    if any(ids[k] not in keys.stored for k in unchanged_at.tolist()):
        return None
    changed_ids = [ids[k] for k in changed_at.tolist()]
    own = _load(keys.workspace, config, changed_ids, batch_size)
    strings = engine.record_keys(config, engine.prepare(config, own))
    packed = keys.pack(strings)
    by_hash = {keys.hash(t, v): (t, v) for k in strings for t, v in k}

    # Every active profile's keys: the changed ones' as they are now, the others' as stored.
    # (in one buffer: a workspace may hold millions of profiles)
    at = np.concatenate([changed_at, unchanged_at])
    blobs = packed + [keys.stored[ids[k]] for k in unchanged_at.tolist()]
    lengths = np.fromiter((len(b) // 8 for b in blobs), dtype=np.int64, count=len(blobs))
    owners = np.repeat(at, lengths)
    values = keys.unpacked(b"".join(blobs))
    tags = values >> 56
    blocks = tags < engine.TF_TAG
    block_keys, sizes = np.unique(values[blocks], return_counts=True)
    too_big = set(block_keys[sizes > config.max_block_size].tolist())
    mine = {h for h in by_hash if (h >> 56) < engine.TF_TAG}
    wanted = np.fromiter(mine - too_big, dtype=np.int64)
    partner_at = np.setdiff1d(owners[blocks & np.isin(values, wanted)], changed_at)
    excluded: dict[int, set[engine.Key]] = {}
    for h in mine & too_big:
        tag, key = by_hash[h]
        excluded.setdefault(tag, set()).add(key)

    frequencies: dict[int, engine.TermFrequencies] = {}
    for f, spec in enumerate(config.fields):
        if spec.tf:
            found, counts = np.unique(values[tags == engine.TF_TAG + f], return_counts=True)
            present = int(counts.sum())
            table = dict(zip(found.tolist(), counts.tolist(), strict=True))
            frequencies[f] = engine.TermFrequencies(
                count=lambda value, f=f, table=table: table.get(
                    keys.hash(engine.TF_TAG + f, (value,)), 0
                ),
                present=present,
                sum_p2=float(((counts / present) ** 2).sum()) if present else 0.0,
            )

    partners = _load(keys.workspace, config, [ids[k] for k in partner_at.tolist()], batch_size)
    records = _combined(config, own, partners)
    changed_set = set(changed_ids)
    return _Part(
        records=records,
        changed=np.fromiter(
            (pk in changed_set for pk in records.ids), dtype=bool, count=len(records)
        ),
        stored_keys=len(keys.stored),
        frequencies=frequencies,
        excluded=excluded,
        partial=True,
    )


def _combined(config: engine.MatchConfig, *parts: engine.Records) -> engine.Records:
    """Records of several loads in one, ordered by profile id (as a full run's)."""
    rows = sorted(
        ((pk, part, k) for part in parts for k, pk in enumerate(part.ids)), key=lambda r: r[0]
    )
    return engine.Records(
        ids=[pk for pk, _, _ in rows],
        values={
            spec.name: [part.values[spec.name][k] for _, part, k in rows] for spec in config.fields
        },
    )


def _trait_path(traits: dict[str, Any], key: str) -> Any:
    """A trait's value; "address.city" reaches into an object trait."""
    head, _, rest = key.partition(".")
    value = traits.get(head)
    for part in rest.split(".") if rest else ():
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, dict | list):
        return None
    return value


def _execute(
    run: MatchRun,
    settings: MatchSettings,
    config: engine.MatchConfig,
    stored: fs.Parameters | None,
    threshold: float,
    actor: Any,
    batch_size: int,
) -> MatchRunResult:
    workspace = run.workspace
    rows = sorted(
        profile_selectors.profile_list(workspace=workspace).values_list("pk", "updated_at"),
        key=lambda row: row[0],
    )
    ids = [pk for pk, _ in rows]
    changed: np.ndarray | None = None
    if run.kind == RunKind.INCREMENTAL:
        since = run.since
        changed = np.fromiter(
            (since is None or updated > since for _, updated in rows), dtype=bool, count=len(rows)
        )
    changed_count = len(ids) if changed is None else int(changed.sum())
    if changed_count == 0 or len(ids) < 2:
        return _finish(run, considered=len(ids), changed=changed_count, decrypted=0)

    keys = _Keys(workspace, settings, config)
    part = (
        None if changed is None else _changed_and_partners(keys, config, ids, changed, batch_size)
    )
    if part is None:
        records = _load(workspace, config, ids, batch_size)
        stored_keys = 0 if changed is None else len(keys.stored)
        part = _Part(records=records, changed=changed, stored_keys=stored_keys)
    _audit_decryption(run, count=len(part.records), config=config, actor=actor)
    estimate = run.kind == RunKind.FULL and (
        settings.parameters_mode == ParametersMode.ESTIMATED or stored is None
    )
    result = engine.run(
        config,
        part.records,
        parameters=stored,
        estimate_parameters=estimate,
        changed=part.changed,
        frequencies=part.frequencies,
        excluded=part.excluded,
    )
    # Keep the keys of every profile decrypted (all, or the changed ones and their partners).
    keys.save(
        part.records.ids,
        keys.pack(engine.record_keys(config, result.prepared)),
        everyone=not part.partial,
    )
    columns = config.model()
    if result.estimate is not None:
        MatchSettings.objects.filter(pk=settings.pk).update(
            parameters=result.parameters.to_json([c.name for c in columns]),
            parameters_estimated_at=timezone.now(),
        )
    proposals, auto_merged = _store_candidates(
        run, settings, config, part.records.ids, result, threshold, part.changed, set(ids)
    )
    stats = {
        "timings": {k: round(v, 3) for k, v in result.timings.items()},
        "pairs_per_rule": result.blocking.pairs_per_rule,
        "skipped_blocks": result.blocking.skipped_blocks,
        "skipped_records": result.blocking.skipped_records,
        "estimated": result.estimate is not None,
        # incremental: whether it decrypted only the changed profiles and their block
        # partners (from the stored keys), or everyone (keys missing or of other settings)
        "decrypted": "changed and partners" if part.partial else "all",
        "stored_keys": part.stored_keys,
    }
    if result.estimate is not None:
        stats["em_sessions"] = [
            {
                "rule": s.rule,
                "pairs": s.pairs,
                "prior": round(s.prior, 6),
                "iterations": s.iterations,
                "converged": s.converged,
            }
            for s in result.estimate.sessions
        ]
    finished = _finish(
        run,
        considered=len(ids),
        changed=changed_count,
        decrypted=len(part.records),
        pairs=len(result.pairs),
        proposed=len(proposals),
        auto_merged=auto_merged,
        parameters=result.parameters.to_json([c.name for c in columns]),
        stats=stats,
    )
    return MatchRunResult(run=finished.run, proposals=proposals)


def _finish(
    run: MatchRun,
    *,
    considered: int,
    changed: int,
    decrypted: int,
    pairs: int = 0,
    proposed: int = 0,
    auto_merged: int = 0,
    parameters: dict[str, Any] | None = None,
    stats: dict[str, Any] | None = None,
) -> MatchRunResult:
    run.status = RunStatus.FINISHED
    run.finished_at = timezone.now()
    run.profiles_considered = considered
    run.profiles_changed = changed
    run.profiles_decrypted = decrypted
    run.candidate_pairs = pairs
    run.proposed = proposed
    run.auto_merged = auto_merged
    run.parameters = parameters or {}
    run.stats = stats or {}
    run.save()
    log.info(
        "matching run %s (%s) of workspace %s: %d profiles, %d changed, %d candidate pairs, "
        "%d proposed, %d merged automatically",
        run.pk, run.kind, run.workspace_id, considered, changed, pairs, proposed, auto_merged,
    )  # fmt: skip
    return MatchRunResult(run=run)


def _audit_decryption(run: MatchRun, *, count: int, config: engine.MatchConfig, actor: Any) -> None:
    """One ACCESS entry per run: how many profiles' fields were decrypted, which fields, by
    whom (the system when no person started it), never a value."""
    keys = sorted({f"{f.source}:{f.key}" for f in config.fields})
    entry_model = get_logentry_model()
    entry_model.objects.log_create(
        run,
        force_log=True,
        action=entry_model.Action.ACCESS,
        changes={"match fields": [REDACTED, "decrypted in worker memory"]},
        actor=actor if getattr(actor, "pk", None) else None,
        additional_data={
            "reason": "probabilistic matching run",
            "profiles_decrypted": count,
            "fields": keys,
            "via": "matching",
        },
    )


def _reviewed_pairs(workspace: Any) -> set[tuple[uuid.UUID, uuid.UUID]]:
    """Pairs never to propose again: every reviewed pair, and for rejected pairs also the
    pair of the profiles they now live in (after merges)."""
    reviewed = list(
        MatchCandidate.objects.filter(workspace=workspace)
        .exclude(status=CandidateStatus.PROPOSED)
        .values_list("profile_a_id", "profile_b_id", "status")
    )
    pairs = {(a, b) for a, b, _ in reviewed}
    rejected = [(a, b) for a, b, status in reviewed if status == CandidateStatus.REJECTED]
    if rejected:
        survivors = profile_selectors.profile_survivor_ids(
            workspace=workspace, profile_ids=[p for pair in rejected for p in pair]
        )
        for a, b in rejected:
            sa, sb = survivors.get(a, a), survivors.get(b, b)
            if sa != sb:
                pairs.add((min(sa, sb), max(sa, sb)))
    return pairs


def _store_candidates(
    run: MatchRun,
    settings: MatchSettings,
    config: engine.MatchConfig,
    ids: list[uuid.UUID],
    result: engine.EngineResult,
    threshold: float,
    changed: np.ndarray | None,
    active: set[uuid.UUID],
) -> tuple[list[Proposal], int]:
    """`ids` are the records' (sorted), `changed` marks those changed in an incremental run,
    `active` holds every active profile of the workspace."""
    workspace = run.workspace
    excluded = _reviewed_pairs(workspace)
    selected = np.nonzero(result.probability >= threshold)[0]
    selected = selected[np.argsort(-result.probability[selected], kind="stable")]
    found: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
    for row in selected.tolist():
        i, j = int(result.pairs[row, 0]), int(result.pairs[row, 1])
        pair = (ids[i], ids[j])  # ids are sorted: i < j gives profile_a < profile_b
        if pair not in excluded:
            found[pair] = row
    now = timezone.now()
    with transaction.atomic():
        existing = {
            (a, b): pk
            for pk, a, b in MatchCandidate.objects.filter(
                workspace=workspace, status=CandidateStatus.PROPOSED
            ).values_list("pk", "profile_a_id", "profile_b_id")
        }
        stale = [pk for pair, pk in existing.items() if pair not in found]
        if changed is not None:  # incremental: keep proposals between unchanged profiles
            changed_ids = {ids[k] for k in np.nonzero(changed)[0].tolist()}
            stale = [
                pk
                for pair, pk in existing.items()
                if pair not in found
                and (pair[0] in changed_ids or pair[1] in changed_ids
                     or pair[0] not in active or pair[1] not in active)
            ]  # fmt: skip
        MatchCandidate.objects.filter(pk__in=stale).delete()
        updates, creates = [], []
        for pair, row in found.items():
            values = {
                "probability": float(result.probability[row]),
                "match_weight": float(result.match_weight[row]),
                "comparison": engine.explain(
                    config, result.levels[row].tolist(), result.column_weights[row].tolist()
                ),
            }
            if pair in existing:
                updates.append(MatchCandidate(pk=existing[pair], run=run, updated_at=now, **values))
            else:
                creates.append(
                    MatchCandidate(
                        workspace=workspace, profile_a_id=pair[0], profile_b_id=pair[1],
                        run=run, **values,
                    )
                )  # fmt: skip
        MatchCandidate.objects.bulk_update(
            updates, ["probability", "match_weight", "comparison", "run", "updated_at"],
            batch_size=1000,
        )  # fmt: skip
        _insert(creates, now)
    stored = {
        (a, b): (pk, p, w)
        for pk, a, b, p, w in MatchCandidate.objects.filter(
            workspace=workspace, run=run, status=CandidateStatus.PROPOSED
        ).values_list("pk", "profile_a_id", "profile_b_id", "probability", "match_weight")
    }
    proposals = [
        Proposal(stored[pair][0], pair[0], pair[1], stored[pair][1], stored[pair][2],
                 CandidateStatus.PROPOSED)
        for pair in found
        if pair in stored
    ]  # fmt: skip
    merged = 0
    if settings.auto_merge_threshold is not None:
        proposals, merged = _auto_merge(workspace, proposals, settings.auto_merge_threshold)
    return proposals, merged


def _insert(candidates: list[MatchCandidate], now: Any) -> None:
    """New candidates in one COPY on PostgreSQL (a run proposes thousands: bulk_create spends
    most of its time adapting the JSON vectors row by row); bulk_create elsewhere."""
    if connection.vendor != "postgresql" or not candidates:
        MatchCandidate.objects.bulk_create(candidates, batch_size=1000)
        return
    columns = (
        "workspace_id", "profile_a_id", "profile_b_id", "run_id", "probability", "match_weight",
        "comparison", "status", "created_at", "updated_at",
    )  # fmt: skip
    statement = f"COPY {MatchCandidate._meta.db_table} ({', '.join(columns)}) FROM STDIN"
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        for c in candidates:
            copy.write_row(
                (
                    c.workspace_id, c.profile_a_id, c.profile_b_id, c.run_id, c.probability,
                    c.match_weight, json.dumps(c.comparison), CandidateStatus.PROPOSED, now, now,
                )
            )  # fmt: skip


def _auto_merge(
    workspace: Any, proposals: list[Proposal], threshold: float
) -> tuple[list[Proposal], int]:
    """Merge the pairs at least `threshold` probable, most probable first, through
    profiles.services.profiles_merge; a pair whose profile was absorbed by an earlier merge of
    this run, or that the identity rules refuse, stays proposed for a steward."""
    gone: set[uuid.UUID] = set()
    out, merged = [], 0
    for proposal in proposals:
        if proposal.probability < threshold or {proposal.profile_a, proposal.profile_b} & gone:
            out.append(proposal)
            continue
        candidate = MatchCandidate.objects.get(pk=proposal.candidate_id)
        try:
            with transaction.atomic():
                merge = profile_services.profiles_merge(
                    workspace=workspace,
                    profile_ids=(proposal.profile_a, proposal.profile_b),
                    rule=AUTO_RULE,
                    actor=None,
                    evidence=_evidence(candidate),
                )
                candidate.status = CandidateStatus.MERGED
                candidate.merge_id = merge.pk
                candidate.reviewed_at = timezone.now()
                candidate.save(update_fields=["status", "merge_id", "reviewed_at", "updated_at"])
        except MergeRefused as exc:
            log.info("auto-merge of candidate %s refused: %s", candidate.pk, exc.code)
            out.append(proposal)
            continue
        gone.add(merge.absorbed_id)
        merged += 1
        out.append(
            Proposal(proposal.candidate_id, proposal.profile_a, proposal.profile_b,
                     proposal.probability, proposal.match_weight, CandidateStatus.MERGED)
        )  # fmt: skip
    return out, merged


def _evidence(candidate: MatchCandidate) -> dict[str, Any]:
    return {
        "match_candidate": candidate.pk,
        "probability": round(candidate.probability, 6),
        "match_weight": round(candidate.match_weight, 3),
        "comparison": candidate.comparison,
    }


# --- stewards' decisions ---------------------------------------------------------------------


def _lock_proposed(candidate: MatchCandidate) -> MatchCandidate:
    locked = MatchCandidate.objects.select_for_update().get(pk=candidate.pk)
    if locked.status != CandidateStatus.PROPOSED:
        raise MatchCandidateReviewed()
    return locked


@transaction.atomic
def candidate_reject(*, candidate: MatchCandidate, actor: Any) -> MatchCandidate:
    """A steward says the two profiles are different people: the pair is never proposed
    again (also not after either is merged into another profile)."""
    locked = _lock_proposed(candidate)
    locked.status = CandidateStatus.REJECTED
    locked.reviewer = actor
    locked.reviewed_at = timezone.now()
    locked.save(update_fields=["status", "reviewer", "reviewed_at", "updated_at"])
    return locked


@transaction.atomic
def candidate_accept(*, candidate: MatchCandidate, actor: Any) -> MatchCandidate:
    """A steward says the two profiles are one person: merge them (the older survives) through
    profiles.services.profiles_merge with the candidate's evidence in the merge ledger."""
    locked = _lock_proposed(candidate)
    survivors = profile_selectors.profile_survivor_ids(
        workspace=locked.workspace, profile_ids=[locked.profile_a_id, locked.profile_b_id]
    )
    if (
        survivors.get(locked.profile_a_id) != locked.profile_a_id
        or survivors.get(locked.profile_b_id) != locked.profile_b_id
    ):
        raise MatchCandidateStale()
    merge = profile_services.profiles_merge(
        workspace=locked.workspace,
        profile_ids=(locked.profile_a_id, locked.profile_b_id),
        rule=ACCEPT_RULE,
        actor=actor,
        evidence=_evidence(locked),
    )
    locked.status = CandidateStatus.ACCEPTED
    locked.merge_id = merge.pk
    locked.reviewer = actor
    locked.reviewed_at = timezone.now()
    locked.save(update_fields=["status", "merge_id", "reviewer", "reviewed_at", "updated_at"])
    return locked


@dataclass
class ReviewOutcome:
    done: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


def candidates_review(
    *, candidates: Iterable[MatchCandidate], accept: bool, actor: Any
) -> ReviewOutcome:
    """Accept or reject several candidates, most probable first, each on its own (one refused
    merge does not undo the others); what could not be done is counted by error code."""
    outcome = ReviewOutcome()
    for candidate in sorted(candidates, key=lambda c: (-c.probability, c.pk)):
        try:
            if accept:
                candidate_accept(candidate=candidate, actor=actor)
            else:
                candidate_reject(candidate=candidate, actor=actor)
        except ApplicationError as exc:
            outcome.skipped[exc.code] = outcome.skipped.get(exc.code, 0) + 1
            continue
        outcome.done += 1
    return outcome


def candidate_reveal(*, candidate: MatchCandidate, actor: Any, reason: str) -> list[Any]:
    """Decrypt both profiles of a candidate for a steward, one ACCESS audit entry per profile
    with the reason written before anything is decrypted (no reason, no reveal)."""
    if not (reason or "").strip():
        raise InvalidInput("A reason is required to reveal personal data.", code="reason_required")
    revealed = []
    for profile_id in (candidate.profile_a_id, candidate.profile_b_id):
        profile = profile_selectors.profile_get(
            workspace=candidate.workspace, profile_id=profile_id
        )
        revealed.append(
            profile_services.profile_reveal(
                workspace=candidate.workspace,
                profile=profile,
                actor=actor,
                reason=reason,
                via="matching review",
            )
        )
    return revealed


def match_external_ids(
    *, run: MatchRun, profile_ids: Iterable[uuid.UUID], id_type: str, actor: Any, reason: str
) -> dict[uuid.UUID, list[str]]:
    """The identifiers of `id_type` (e.g. crm_id, the id a source system gave the person) of
    the profiles a run proposed, decrypted for an export; audited on the run with `reason`
    (required, as for every reveal of personal data)."""
    ids = list(dict.fromkeys(profile_ids))
    # Written first (a missing reason refuses the export before anything is decrypted).
    audit.record_access(
        run,
        actor=actor if getattr(actor, "pk", None) else None,
        reason=reason or "",
        fields=[f"identifier:{id_type}"],
        via="matching",
        how="exported",
        details={"export": "match_profiles", "profiles": len(ids)},
    )
    out: dict[uuid.UUID, list[str]] = {}
    for start in range(0, len(ids), LOAD_BATCH):
        found = profile_selectors.profiles_match_fields(
            workspace=run.workspace,
            profile_ids=ids[start : start + LOAD_BATCH],
            trait_keys=(),
            identifier_types=(id_type,),
        )
        for pk, (_, identifiers) in found.items():
            out[pk] = sorted(identifiers.get(id_type, ()))
    return out
