"""The matching engine: blocking, comparison vectors, estimation and scoring, in memory.

It knows nothing of the database: `services.match_run` loads the records (decrypted in worker
memory, in bounded batches, through `profiles.selectors.profiles_match_fields`), hands them
here as `Records`, and stores what comes back. Everything is vectorized with numpy: a pair is a
pair of record indices, a batch of pairs is compared field by field in a few library calls.

Work grows with the number of candidate pairs, not with n²: only records sharing a blocking
key are compared, and keys shared by more than `max_block_size` records (a common surname
with no other restriction, a shared office postcode) are skipped and counted.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from matching import fellegi_sunter as fs
from matching.comparators import (
    BLOCK_TRANSFORMS,
    COMPARATORS,
    NULL_LEVEL,
    Column,
    Comparator,
    NameComparator,
    make_comparator,
)

FIELD_SOURCES = ("trait", "identifier")
MAX_FIELDS = 30
MAX_RULES = 64  # an incremental run's stored keys tag a rule by its index, below TF_TAG


@dataclass(frozen=True)
class FieldSpec:
    """A comparison field: where its values come from and how they compare."""

    name: str
    source: str  # "trait" (the surviving value; a dotted key reaches into an object trait)
    key: str  # or "identifier" (every value of that identifier type)
    comparator: str
    thresholds: tuple[float, ...] | None = None
    tf: bool = False  # term-frequency adjustment of exact agreement
    # Fields of one group (a street, its city and postcode) are modelled jointly: their
    # combination of levels gets one m and one u, so redundant agreement is not counted twice.
    group: str | None = None

    @property
    def trait_key(self) -> str:
        return self.key.split(".", 1)[0]


@dataclass(frozen=True)
class BlockingRule:
    """Pairs are candidates when they share every key of a rule; `unordered` sorts the keys
    first, so that a rule on (first name, last name) also pairs swapped names."""

    keys: tuple[tuple[str, str], ...]  # (field name, transform)
    unordered: bool = False

    @property
    def label(self) -> str:
        parts = [name if t == "value" else f"{name}:{t}" for name, t in self.keys]
        return (" ~ " if self.unordered else " + ").join(parts)


@dataclass(frozen=True)
class MatchConfig:
    fields: tuple[FieldSpec, ...]
    blocking: tuple[BlockingRule, ...]
    name_swap: tuple[str, str] | None = None  # (first-name field, last-name field)
    max_block_size: int = 1000
    u_sample_pairs: int = 300_000
    em_max_iterations: int = 200
    seed: int = 20_240_601

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def comparators(self) -> list[Comparator]:
        return list(_comparators(self.fields))

    def sizes(self) -> list[int]:
        return [len(c.labels) for c in self.comparators()]

    def model(self) -> list[ModelColumn]:
        """The columns m and u are estimated for: one per field, one per group of fields."""
        return list(_model(self))

    def _model(self) -> list[ModelColumn]:
        sizes = self.sizes()
        columns: list[ModelColumn] = []
        seen: dict[str, int] = {}
        for f, spec in enumerate(self.fields):
            if spec.group is None:
                columns.append(ModelColumn(spec.name, (f,), (sizes[f],)))
            elif spec.group in seen:
                column = columns[seen[spec.group]]
                columns[seen[spec.group]] = ModelColumn(
                    column.name,
                    (*column.members, f),
                    (*column.member_sizes, sizes[f]),
                    grouped=True,
                )
            else:
                seen[spec.group] = len(columns)
                columns.append(ModelColumn(spec.group, (f,), (sizes[f],), grouped=True))
        return columns


@functools.lru_cache(maxsize=64)
def _comparators(fields: tuple[FieldSpec, ...]) -> tuple[Comparator, ...]:
    # Comparators hold no state but their thresholds: one set per configuration.
    return tuple(make_comparator(f.comparator, f.thresholds) for f in fields)


@functools.lru_cache(maxsize=64)
def _model(config: MatchConfig) -> tuple[ModelColumn, ...]:
    return tuple(config._model())


@dataclass(frozen=True)
class ModelColumn:
    name: str
    members: tuple[int, ...]  # field indices
    member_sizes: tuple[int, ...]
    grouped: bool = False

    @property
    def size(self) -> int:
        if not self.grouped:
            return self.member_sizes[0]
        product = 1
        for size in self.member_sizes:
            product *= size + 1
        return product - 1  # every combination but "all missing"


def model_levels(columns: list[ModelColumn], levels: np.ndarray) -> np.ndarray:
    """Field levels (P, F) to model levels (P, C): a group's level encodes the combination of
    its fields' levels (NULL_LEVEL only when every field of it is missing)."""
    out = np.empty((len(levels), len(columns)), dtype=np.int32)
    for c, column in enumerate(columns):
        if not column.grouped:
            out[:, c] = levels[:, column.members[0]]
            continue
        joint = np.zeros(len(levels), dtype=np.int64)
        place = 1
        for f, size in zip(column.members, column.member_sizes, strict=True):
            joint += (levels[:, f].astype(np.int64) + 1) * place
            place *= size + 1
        out[:, c] = joint - 1  # all missing (0) becomes NULL_LEVEL (-1)
    return out


class ConfigError(ValueError):
    """A match setting that cannot work; the message names the setting, never a value."""


def parse_config(
    *,
    fields: Any,
    blocking: Any,
    name_swap: Any = None,
    max_block_size: int = 1000,
    u_sample_pairs: int = 300_000,
) -> MatchConfig:
    """Validate the JSON a workspace stores (MatchSettings) into a MatchConfig."""
    if not isinstance(fields, list) or not fields:
        raise ConfigError("fields: a non-empty list of comparison fields is required")
    if len(fields) > MAX_FIELDS:
        raise ConfigError(f"fields: at most {MAX_FIELDS} comparison fields")
    specs: list[FieldSpec] = []
    for position, raw in enumerate(fields):
        specs.append(_parse_field(raw, position))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError("fields: every field needs a distinct name")
    groups = {s.group for s in specs if s.group}
    if groups & set(names):
        raise ConfigError("fields: a group cannot have the name of a field")
    if not isinstance(blocking, list) or not blocking:
        raise ConfigError("blocking: a non-empty list of blocking rules is required")
    if len(blocking) > MAX_RULES:
        raise ConfigError(f"blocking: at most {MAX_RULES} blocking rules")
    rules = tuple(_parse_rule(raw, position, set(names)) for position, raw in enumerate(blocking))
    swap: tuple[str, str] | None = None
    if name_swap:
        if (
            not isinstance(name_swap, list | tuple)
            or len(name_swap) != 2
            or not all(isinstance(n, str) and n in names for n in name_swap)
            or name_swap[0] == name_swap[1]
        ):
            raise ConfigError("name_swap: two distinct field names, [first name, last name]")
        for name in name_swap:
            if specs[names.index(name)].comparator != NameComparator.kind:
                raise ConfigError("name_swap: both fields must use the name comparator")
        swap = (name_swap[0], name_swap[1])
    if not isinstance(max_block_size, int) or max_block_size < 2:
        raise ConfigError("max_block_size: an integer of at least 2")
    if not isinstance(u_sample_pairs, int) or u_sample_pairs < 1000:
        raise ConfigError("u_sample_pairs: an integer of at least 1000")
    return MatchConfig(
        fields=tuple(specs),
        blocking=rules,
        name_swap=swap,
        max_block_size=max_block_size,
        u_sample_pairs=u_sample_pairs,
    )


def _parse_field(raw: Any, position: int) -> FieldSpec:
    where = f"fields[{position}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: an object with name, source, key and comparator")
    unknown = set(raw) - {"name", "source", "key", "comparator", "thresholds", "tf", "group"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    name, source, key, kind = (raw.get(k) for k in ("name", "source", "key", "comparator"))
    if not isinstance(name, str) or not name.strip() or len(name) > 64:
        raise ConfigError(f"{where}.name: a short text is required")
    if source not in FIELD_SOURCES:
        raise ConfigError(f"{where}.source: one of {', '.join(FIELD_SOURCES)}")
    if not isinstance(key, str) or not key.strip() or len(key) > 128:
        raise ConfigError(f"{where}.key: the trait key or identifier type is required")
    if not isinstance(kind, str) or kind not in COMPARATORS:
        raise ConfigError(f"{where}.comparator: one of {', '.join(sorted(COMPARATORS))}")
    thresholds = raw.get("thresholds")
    parsed: tuple[float, ...] | None = None
    if thresholds is not None:
        if not isinstance(thresholds, list) or not all(
            isinstance(t, int | float) and not isinstance(t, bool) and _finite(t)
            for t in thresholds
        ):
            raise ConfigError(f"{where}.thresholds: a list of numbers")
        parsed = tuple(float(t) for t in thresholds)
        if kind in ("jaro_winkler", "name", "email") and (
            any(not 0 < t <= 1 for t in parsed) or list(parsed) != sorted(parsed, reverse=True)
        ):
            raise ConfigError(f"{where}.thresholds: similarities in (0, 1], highest first")
        if kind == "levenshtein" and (any(t < 0 for t in parsed) or list(parsed) != sorted(parsed)):
            raise ConfigError(f"{where}.thresholds: distances >= 0, lowest first")
        if kind == "postcode" and (len(parsed) != 1 or parsed[0] < 1):
            raise ConfigError(f"{where}.thresholds: one district length of at least 1")
    tf = raw.get("tf", False)
    if not isinstance(tf, bool):
        raise ConfigError(f"{where}.tf: true or false")
    group = raw.get("group")
    if group is not None and (not isinstance(group, str) or not group.strip() or len(group) > 64):
        raise ConfigError(f"{where}.group: a short text")
    if group is not None and tf:
        raise ConfigError(f"{where}: term-frequency adjustment applies to ungrouped fields only")
    return FieldSpec(
        name=name.strip(),
        source=source,
        key=key.strip(),
        comparator=kind,
        thresholds=parsed,
        tf=tf,
        group=group.strip() if group else None,
    )


def _finite(number: int | float) -> bool:
    """A number a threshold can be (NaN and infinities are valid JSON to Python, not to us)."""
    try:
        return math.isfinite(number)
    except OverflowError:  # an integer past the float range
        return False


def _parse_rule(raw: Any, position: int, names: set[str]) -> BlockingRule:
    where = f"blocking[{position}]"
    if isinstance(raw, list):
        raw = {"keys": raw}
    if not isinstance(raw, dict) or not isinstance(raw.get("keys"), list) or not raw["keys"]:
        raise ConfigError(f'{where}: a list of keys like "last_name:metaphone"')
    keys = []
    for item in raw["keys"]:
        if not isinstance(item, str):
            raise ConfigError(f'{where}: keys are texts like "postcode" or "email:local"')
        name, _, transform = item.partition(":")
        transform = transform or "value"
        if name not in names:
            raise ConfigError(f"{where}: no comparison field named {name!r}")
        if transform not in BLOCK_TRANSFORMS:
            raise ConfigError(
                f"{where}: unknown transform {transform!r}; one of "
                + ", ".join(sorted(BLOCK_TRANSFORMS))
            )
        keys.append((name, transform))
    unordered = raw.get("unordered", False)
    if not isinstance(unordered, bool):
        raise ConfigError(f"{where}.unordered: true or false")
    return BlockingRule(keys=tuple(keys), unordered=unordered)


# --- records -------------------------------------------------------------------------------


@dataclass
class Records:
    """The records to match: ids, and per field the raw values of each record (a trait gives
    at most one, an identifier type any number)."""

    ids: list[Any]
    values: dict[str, list[list[Any]]]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Prepared:
    n: int
    comparators: list[Comparator]
    columns: list[Column]
    normalized: list[list[list[str]]]  # field -> record -> normalized values
    more: list[dict[int, list[str]]]  # field -> record -> values beyond the first
    tf: list[tuple[np.ndarray, float] | None]  # field -> (value frequency by code, Σp²)


@dataclass(frozen=True)
class TermFrequencies:
    """A field's value frequencies over a whole population of which the records are a part
    (an incremental run's): how many records have `value` as their first value, how many
    have one at all, and Σp² over every value."""

    count: Any  # Callable[[str], int]
    present: int
    sum_p2: float


def prepare(
    config: MatchConfig, records: Records, frequencies: dict[int, TermFrequencies] | None = None
) -> Prepared:
    """Normalize and code the records' values. Term frequencies are counted over the records,
    or taken from `frequencies` (per field index) when they are part of a larger population."""
    comparators = config.comparators()
    vocabulary: dict[str, int] = {}
    columns: list[Column] = []
    normalized: list[list[list[str]]] = []
    more: list[dict[int, list[str]]] = []
    tf: list[tuple[np.ndarray, float] | None] = []
    for spec, comparator in zip(config.fields, comparators, strict=True):
        raw = records.values.get(spec.name) or [[] for _ in range(len(records))]
        per_record: list[list[str]] = []
        memo: dict[Any, str | None] = {}  # values repeat (names, cities): normalize each once
        for values in raw:
            clean: list[str] = []
            for value in values:
                try:
                    norm = memo[value]
                except KeyError:
                    norm = memo[value] = comparator.normalize(value)
                except TypeError:  # unhashable: not a comparable value anyway
                    norm = comparator.normalize(value)
                if norm is not None and norm not in clean:
                    clean.append(norm)
            per_record.append(clean)
        column = comparator.prepare([v[0] if v else None for v in per_record], vocabulary)
        columns.append(column)
        normalized.append(per_record)
        more.append({r: v[1:] for r, v in enumerate(per_record) if len(v) > 1})
        tf.append(None)
    size = len(vocabulary)
    for f, spec in enumerate(config.fields):
        if not spec.tf:
            continue
        codes = columns[f].code[columns[f].present]
        given = (frequencies or {}).get(f)
        if given is not None and given.present:
            p = np.zeros(size)
            for value, code in zip(
                columns[f].text[columns[f].present].tolist(), codes.tolist(), strict=True
            ):
                p[code] = max(given.count(value), 1) / given.present
            tf[f] = (p, given.sum_p2)
        elif len(codes):
            counts = np.bincount(codes, minlength=size).astype(float)
            p = counts / len(codes)
            tf[f] = (p, float((p**2).sum()))
    return Prepared(len(records), comparators, columns, normalized, more, tf)


# --- what an incremental run keeps of every record ------------------------------------------

# Tags of the keys `record_keys` gives: a blocking rule's index, or TF_TAG + a field's index
# for its first value (term frequencies). A key is a tuple of strings: one per part of a rule
# (sorted for an unordered rule), or the one value.
TF_TAG = 64
Key = tuple[str, ...]


def rule_keys(rule: BlockingRule, index: dict[str, int], prepared: Prepared, r: int,
              transformed: dict[tuple[str, str], str | None]) -> set[Key]:  # fmt: skip
    """Every key record `r` has under `rule`: one per combination of its values' transforms
    (as `_rule_keys` codes them; an unordered rule's parts sorted)."""
    parts: list[list[str]] = []
    for name, t in rule.keys:
        transform = BLOCK_TRANSFORMS[t]
        found = set()
        for value in prepared.normalized[index[name]][r]:
            try:
                key = transformed[(t, value)]
            except KeyError:
                key = transformed[(t, value)] = transform(value) or None
            if key:
                found.add(key)
        if not found:
            return set()
        parts.append(sorted(found))
    combos: list[tuple[str, ...]] = [()]
    for options in parts:
        combos = [(*c, k) for c in combos for k in options]
    return {tuple(sorted(c)) if rule.unordered else c for c in combos}


def record_keys(config: MatchConfig, prepared: Prepared) -> list[list[tuple[int, Key]]]:
    """Per record, the tagged keys an incremental run needs of it without decrypting it
    again: its blocking keys under each rule (tag: the rule's index) and the first value of
    each field with term frequencies (TF_TAG + field). The caller stores keyed hashes of
    them, never the values."""
    index = {name: f for f, name in enumerate(config.names)}
    transformed: dict[tuple[str, str], str | None] = {}
    firsts: dict[tuple[str, int], list[str | None]] = {}

    def first(t: str, f: int) -> list[str | None]:
        """The transform of every record's first value of field f (None: none)."""
        if (t, f) not in firsts:
            transform, column = BLOCK_TRANSFORMS[t], []
            for values in prepared.normalized[f]:
                key = None
                if values:
                    try:
                        key = transformed[(t, values[0])]
                    except KeyError:
                        key = transformed[(t, values[0])] = transform(values[0]) or None
                column.append(key)
            firsts[(t, f)] = column
        return firsts[(t, f)]

    out: list[list[tuple[int, Key]]] = [[] for _ in range(prepared.n)]
    for tag, rule in enumerate(config.blocking):
        fields = [index[name] for name, _ in rule.keys]
        multi = set().union(*(prepared.more[f].keys() for f in fields))
        columns = [first(t, index[name]) for name, t in rule.keys]
        for r, parts in enumerate(zip(*columns, strict=True)):
            if None not in parts and r not in multi:
                key = tuple(sorted(parts)) if rule.unordered else parts
                out[r].append((tag, key))
        for r in multi:  # several values: every combination (`rule_keys`)
            out[r].extend((tag, k) for k in rule_keys(rule, index, prepared, r, transformed))
    for f, spec in enumerate(config.fields):
        if spec.tf:
            for r, values in enumerate(prepared.normalized[f]):
                if values:
                    out[r].append((TF_TAG + f, (values[0],)))
    return out


# --- blocking ------------------------------------------------------------------------------


@dataclass
class BlockingStats:
    pairs_per_rule: dict[str, int] = field(default_factory=dict)
    skipped_blocks: int = 0
    skipped_records: int = 0


def _rule_keys(
    rule: BlockingRule,
    prepared: Prepared,
    index: dict[str, int],
    cache: dict[tuple[int, str], list[str | None]],
    excluded: set[Key] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(record, key code) rows: a record has one key per combination of its values. The
    first value of every record is keyed in bulk; records with several values (identifiers)
    add their other combinations one by one. Keys in `excluded` (as `rule_keys` gives
    them) are left out."""
    vocabulary: dict[str, int] = {}
    keys = [(index[name], t) for name, t in rule.keys]
    columns = []
    for f, t in keys:
        transformed = cache.get((f, t))
        if transformed is None:
            transform = BLOCK_TRANSFORMS[t]
            transformed = cache[(f, t)] = [
                (transform(v[0]) or None) if v else None for v in prepared.normalized[f]
            ]
        columns.append(
            np.fromiter(
                (
                    -1 if k is None else vocabulary.setdefault(k, len(vocabulary))
                    for k in transformed
                ),
                dtype=np.int64,
                count=prepared.n,
            )
        )
    matrix = np.stack(columns, axis=1)
    valid = (matrix >= 0).all(axis=1)
    records = [np.nonzero(valid)[0]]
    rows = [matrix[valid]]
    multi = set().union(*(prepared.more[f].keys() for f, _ in keys))
    for r in sorted(multi):
        combos: list[tuple[int, ...]] = [()]
        for f, t in keys:
            transform = BLOCK_TRANSFORMS[t]
            found = {k for k in (transform(v) for v in prepared.normalized[f][r]) if k}
            codes = sorted(vocabulary.setdefault(k, len(vocabulary)) for k in found)
            combos = [(*c, k) for c in combos for k in codes]
        extra = [c for c in combos if c and c != tuple(matrix[r])]
        if extra:
            records.append(np.full(len(extra), r, dtype=np.int64))
            rows.append(np.asarray(extra, dtype=np.int64))
    all_records = np.concatenate(records)
    all_rows = np.concatenate(rows)
    if rule.unordered:
        all_rows = np.sort(all_rows, axis=1)
    base = len(vocabulary) + 1
    composite = np.zeros(len(all_rows), dtype=np.int64)
    for k in range(all_rows.shape[1]):
        composite = composite * base + all_rows[:, k]
    if excluded:
        left_out = []
        for parts in excluded:
            if len(parts) == len(keys) and all(p in vocabulary for p in parts):
                codes = [vocabulary[p] for p in parts]
                value = 0
                for code in sorted(codes) if rule.unordered else codes:
                    value = value * base + code
                left_out.append(value)
        keep = ~np.isin(composite, np.asarray(left_out, dtype=np.int64))
        all_records, composite = all_records[keep], composite[keep]
    return all_records, composite


def pairs_from_keys(
    records: np.ndarray,
    codes: np.ndarray,
    n: int,
    max_block_size: int,
    changed: np.ndarray | None = None,
    stats: BlockingStats | None = None,
) -> np.ndarray:
    """Pair codes (i * n + j, i < j) of records sharing a key code, vectorized per group size."""
    if len(records) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((records, codes))
    codes_s, records_s = codes[order], records[order]
    distinct = np.r_[True, (codes_s[1:] != codes_s[:-1]) | (records_s[1:] != records_s[:-1])]
    codes_s, records_s = codes_s[distinct], records_s[distinct]
    starts = np.flatnonzero(np.r_[True, codes_s[1:] != codes_s[:-1]])
    sizes = np.diff(np.r_[starts, len(codes_s)])
    too_big = sizes > max_block_size
    if stats is not None:
        stats.skipped_blocks += int(too_big.sum())
        stats.skipped_records += int(sizes[too_big].sum())
    keep = (sizes >= 2) & ~too_big
    out = []
    for size in np.unique(sizes[keep]).tolist():
        group_starts = starts[keep & (sizes == size)]
        ti, tj = np.triu_indices(size, k=1)
        a = records_s[group_starts[:, None] + ti[None, :]].ravel()
        b = records_s[group_starts[:, None] + tj[None, :]].ravel()
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        mask = lo != hi
        if changed is not None:
            mask &= changed[lo] | changed[hi]
        out.append(lo[mask] * n + hi[mask])
    if not out:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate(out))


@dataclass
class Blocked:
    codes: np.ndarray  # sorted pair codes (i * n + j) of every candidate pair
    per_rule: list[np.ndarray]  # the pair codes each rule produced
    stats: BlockingStats

    def pairs(self, n: int) -> np.ndarray:
        return decode_pairs(self.codes, n)


def block(
    config: MatchConfig,
    prepared: Prepared,
    changed: np.ndarray | None = None,
    excluded: dict[int, set[Key]] | None = None,
) -> Blocked:
    """Candidate pairs (the union of every rule's pairs), with each rule's own pairs. Keys in
    `excluded` (per rule index) make no pairs: an incremental run's records are part of a
    population in which those blocks are too big."""
    index = {name: f for f, name in enumerate(config.names)}
    stats = BlockingStats()
    found = []
    cache: dict[tuple[int, str], list[str | None]] = {}
    for tag, rule in enumerate(config.blocking):
        records, codes = _rule_keys(rule, prepared, index, cache, (excluded or {}).get(tag))
        pairs = pairs_from_keys(records, codes, prepared.n, config.max_block_size, changed, stats)
        stats.pairs_per_rule[rule.label] = len(pairs)
        found.append(pairs)
    codes = np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
    return Blocked(codes=codes, per_rule=found, stats=stats)


def decode_pairs(codes: np.ndarray, n: int) -> np.ndarray:
    return np.stack([codes // n, codes % n], axis=1) if len(codes) else np.zeros((0, 2), np.int64)


def encode_pairs(pairs: np.ndarray, n: int) -> np.ndarray:
    return pairs[:, 0] * n + pairs[:, 1]


# --- comparison ----------------------------------------------------------------------------


def compare(config: MatchConfig, prepared: Prepared, pairs: np.ndarray) -> np.ndarray:
    """The comparison vectors of the pairs: (P, fields) levels, NULL_LEVEL where missing."""
    i, j = pairs[:, 0], pairs[:, 1]
    levels = np.empty((len(pairs), len(config.fields)), dtype=np.int8)
    for f, (comparator, column) in enumerate(
        zip(prepared.comparators, prepared.columns, strict=True)
    ):
        levels[:, f] = comparator.compare(column, column, i, j)
        if prepared.more[f]:
            _best_of_values(levels, f, prepared, i, j)
    if config.name_swap is not None:
        _apply_name_swap(config, prepared, levels, i, j)
    return levels


def _best_of_values(
    levels: np.ndarray, f: int, prepared: Prepared, i: np.ndarray, j: np.ndarray
) -> None:
    """Records with several values (identifiers): the strongest level over all combinations."""
    more = prepared.more[f]
    multi = np.fromiter((r in more for r in range(prepared.n)), dtype=bool, count=prepared.n)
    rows = np.nonzero(multi[i] | multi[j])[0]
    if not len(rows):
        return
    values = prepared.normalized[f]
    owner, left, right = [], [], []
    for row in rows.tolist():
        for x in values[i[row]]:
            for y in values[j[row]]:
                owner.append(row)
                left.append(x)
                right.append(y)
    comparator = prepared.comparators[f]
    vocabulary: dict[str, int] = {}
    a = comparator.prepare(left, vocabulary)
    b = comparator.prepare(right, vocabulary)
    index = np.arange(len(left))
    found = comparator.compare(a, b, index, index).astype(np.int16)
    found[found == NULL_LEVEL] = 10_000
    best = np.full(len(levels), 10_000, dtype=np.int16)
    np.minimum.at(best, np.asarray(owner, dtype=np.int64), found)
    chosen = best[rows]
    levels[rows, f] = np.where(chosen == 10_000, NULL_LEVEL, chosen).astype(np.int8)


def _apply_name_swap(
    config: MatchConfig, prepared: Prepared, levels: np.ndarray, i: np.ndarray, j: np.ndarray
) -> None:
    """Where a's first name is b's last name and the other way round (both at least strongly
    similar) while the first names themselves are not, the first-name level becomes "swapped"
    and the last-name level is the one of the crossed comparison."""
    assert config.name_swap is not None
    first, last = (config.names.index(name) for name in config.name_swap)
    comparator = prepared.comparators[first]
    assert isinstance(comparator, NameComparator)
    strong = np.asarray(comparator.strong_levels, dtype=np.int8)
    candidates = np.nonzero(~np.isin(levels[:, first], strong) & (levels[:, first] != NULL_LEVEL))[
        0
    ]
    if not len(candidates):
        return
    columns = prepared.columns
    ci, cj = i[candidates], j[candidates]
    cross_first = comparator.compare(columns[first], columns[last], ci, cj)
    cross_last = prepared.comparators[last].compare(columns[last], columns[first], ci, cj)
    swapped = np.isin(cross_first, strong) & np.isin(cross_last, strong)
    rows = candidates[swapped]
    levels[rows, first] = NameComparator.SWAPPED
    levels[rows, last] = cross_last[swapped]


# --- estimation and scoring ----------------------------------------------------------------


def sample_pairs(n: int, count: int, seed: int) -> np.ndarray:
    """Up to `count` distinct random pairs (i < j) of n records."""
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    total = n * (n - 1) // 2
    rng = np.random.default_rng(seed)
    if total <= count:
        i, j = np.triu_indices(n, k=1)
        return np.stack([i, j], axis=1).astype(np.int64)
    a = rng.integers(0, n, size=int(count * 1.1) + 10)
    b = rng.integers(0, n, size=len(a))
    mask = a != b
    lo, hi = np.minimum(a[mask], b[mask]), np.maximum(a[mask], b[mask])
    codes = np.unique(lo * n + hi)[:count]
    return decode_pairs(codes, n)


def estimate_u(config: MatchConfig, prepared: Prepared) -> list[np.ndarray]:
    """u per model column from random pairs (almost all of which are different people)."""
    pairs = sample_pairs(prepared.n, config.u_sample_pairs, config.seed)
    columns = config.model()
    levels = model_levels(columns, compare(config, prepared, pairs))
    sizes = config.sizes()
    prior = [
        joint_from_members(column, [fs.disagreement_prior(sizes[f]) for f in column.members])
        if column.grouped
        else fs.disagreement_prior(column.size)
        for column in columns
    ]
    return fs.level_frequencies(levels, [c.size for c in columns], prior)


def tf_adjustments(
    config: MatchConfig, prepared: Prepared, pairs: np.ndarray, levels: np.ndarray
) -> np.ndarray | None:
    """Bits added to exact agreement on a field with term-frequency adjustment: agreeing on a
    rare value is stronger evidence than agreeing on a common one, log2(Σp² / p(value)).
    Returned per model column (grouped fields have none)."""
    if not any(spec.tf for spec in config.fields):
        return None
    columns = config.model()
    out = np.zeros((len(levels), len(columns)), dtype=np.float64)
    for c, column in enumerate(columns):
        f = column.members[0]
        frequencies = prepared.tf[f]
        if column.grouped or frequencies is None:
            continue
        p, sum_p2 = frequencies
        exact = np.nonzero(levels[:, f] == 0)[0]
        codes = prepared.columns[f].code[pairs[exact, 0]]
        out[exact, c] = np.log2(sum_p2 / np.maximum(p[codes], 1e-12))
    return out


def joint_from_members(
    column: ModelColumn, members: Sequence[np.ndarray], floor: float = fs.U_FLOOR
) -> np.ndarray:
    """A group's probabilities per combination of levels from its fields' own probabilities,
    as if independent (a missing field contributes a factor 1); normalized, which keeps every
    ratio m/u since m and u sums grow by the same factor."""
    product = np.ones(column.size + 1)
    place = 1
    for values, size in zip(members, column.member_sizes, strict=True):
        codes = np.arange(column.size + 1)
        level = (codes // place) % (size + 1) - 1
        factor = np.where(level < 0, 1.0, np.asarray(values)[np.maximum(level, 0)])
        product *= factor
        place *= size + 1
    return fs.normalized(product[1:], floor)


def default_m(config: MatchConfig) -> list[np.ndarray]:
    """Starting m per model column: the comparator's measured defaults where its levels are
    the default ones, else a generic "mostly exact"."""
    comparators = config.comparators()
    per_field = []
    for comparator in comparators:
        size = len(comparator.labels)
        if len(comparator.default_m) == size:
            per_field.append(fs.normalized(np.asarray(comparator.default_m, dtype=float)))
        else:
            per_field.append(fs.default_m(size))
    return [
        joint_from_members(column, [per_field[f] for f in column.members], fs.M_FLOOR)
        if column.grouped
        else per_field[column.members[0]]
        for column in config.model()
    ]


def parameters_from_json(config: MatchConfig, data: Any) -> fs.Parameters:
    """Stored or hand-set parameters. A group's column takes its own m and u per combination,
    or is derived from m and u given per field of the group (`joint_from_members`)."""
    if not isinstance(data, dict) or not isinstance(data.get("fields"), dict):
        raise ValueError("parameters need a prior and fields")
    fields = dict(data["fields"])
    sizes = config.sizes()
    for column in config.model():
        if column.name in fields or not column.grouped:
            continue
        entries = [fields.get(config.fields[f].name) for f in column.members]
        if not all(isinstance(e, dict) for e in entries):
            continue
        joint = {}
        for key in ("m", "u"):
            members = []
            for f, entry in zip(column.members, entries, strict=True):
                values = np.asarray(entry.get(key), dtype=np.float64)  # type: ignore[union-attr]
                if values.shape != (sizes[f],):
                    raise ValueError(f"field {config.fields[f].name!r} needs {sizes[f]} values")
                members.append(values)
            joint[key] = joint_from_members(
                column, members, fs.M_FLOOR if key == "m" else fs.U_FLOOR
            ).tolist()
        fields[column.name] = joint
    columns = config.model()
    return fs.Parameters.from_json(
        {"prior": data.get("prior"), "fields": fields},
        [c.name for c in columns],
        [c.size for c in columns],
    )


@dataclass(frozen=True)
class Session:
    """One EM session: the pairs of one blocking rule, the rule's own fields left out."""

    rule: str
    pairs: int
    prior: float
    iterations: int
    converged: bool


@dataclass
class Estimate:
    parameters: fs.Parameters
    sessions: list[Session]
    prior_iterations: int


MIN_SESSION_PAIRS = 50
MIN_EM_RECORDS = 1000
DETERMINED_SHARE = 0.8


def estimate(
    config: MatchConfig,
    prepared: Prepared,
    blocked: Blocked,
    levels: np.ndarray,
    adjustments: np.ndarray | None,
) -> Estimate:
    """Unsupervised m, u and prior (λ, the chance that two random records match):

    1. u from random pairs (`estimate_u`);
    2. m by EM with u fixed, one session per blocking rule on that rule's pairs, leaving out
       the fields the rule blocks on (all its pairs agree there, which says nothing about
       matches) and fields it determines (nearly every pair agrees: a city by its postcode);
       a column's m is the mean over the sessions that estimated it;
    3. λ by fixed point over the candidate pairs: the expected number of matches among them
       (pairs outside every block are taken as non-matches) over all n(n-1)/2 pairs."""
    columns = config.model()
    sizes = [c.size for c in columns]
    u = estimate_u(config, prepared)
    model = model_levels(columns, levels)
    total_pairs = prepared.n * (prepared.n - 1) / 2
    if prepared.n < MIN_EM_RECORDS:
        # Too few records for EM to separate matches from non-matches: start from the
        # comparators' measured m, the workspace's own u and prior.
        m = default_m(config)
        _, _, per_column = fs.score(model, fs.Parameters(prior=0.5, m=m, u=u), adjustments)
        prior, iterations = fs.estimate_prior(per_column.sum(axis=1), total_pairs)
        return Estimate(fs.Parameters(prior=prior, m=m, u=u), [], iterations)
    index = {name: f for f, name in enumerate(config.names)}
    m_sum = [np.zeros(s) for s in sizes]
    m_count = [0] * len(sizes)
    sessions = []
    for rule, codes in zip(config.blocking, blocked.per_rule, strict=True):
        if len(codes) < MIN_SESSION_PAIRS:
            continue
        rows = np.searchsorted(blocked.codes, codes)
        held_fields = {index[name] for name, _ in rule.keys}
        for f in range(len(config.fields)):
            column = levels[rows, f]
            present = column != NULL_LEVEL
            if present.any() and (column[present] == 0).mean() >= DETERMINED_SHARE:
                held_fields.add(f)
        held = [c for c, column in enumerate(columns) if set(column.members) & held_fields]
        sub = model[rows].copy()
        sub[:, held] = NULL_LEVEL
        patterns, counts, _ = fs.collapse(sub, sizes)
        start = fs.Parameters(prior=0.1, m=default_m(config), u=u)
        result = fs.expectation_maximization(
            patterns, counts, start, max_iterations=config.em_max_iterations, fix_u=True
        )
        for c in range(len(sizes)):
            if c not in held and (sub[:, c] != NULL_LEVEL).any():
                m_sum[c] += result.parameters.m[c]
                m_count[c] += 1
        sessions.append(
            Session(
                rule=rule.label,
                pairs=len(codes),
                prior=result.parameters.prior,
                iterations=result.iterations,
                converged=result.converged,
            )
        )
    fallback = default_m(config)
    m = [
        fs.normalized(total / count) if count else fallback[c]
        for c, (total, count) in enumerate(zip(m_sum, m_count, strict=True))
    ]
    _, _, per_column = fs.score(model, fs.Parameters(prior=0.5, m=m, u=u), adjustments)
    prior, iterations = fs.estimate_prior(per_column.sum(axis=1), total_pairs)
    return Estimate(fs.Parameters(prior=prior, m=m, u=u), sessions, iterations)


@dataclass
class EngineResult:
    prepared: Prepared
    pairs: np.ndarray  # (P, 2) record indices
    levels: np.ndarray  # (P, F) field levels
    column_weights: np.ndarray  # (P, C) bits per model column, term frequencies included
    match_weight: np.ndarray  # (P,)
    probability: np.ndarray  # (P,)
    parameters: fs.Parameters
    estimate: Estimate | None
    blocking: BlockingStats
    timings: dict[str, float]


def run(
    config: MatchConfig,
    records: Records,
    *,
    parameters: fs.Parameters | None = None,
    estimate_parameters: bool = True,
    changed: np.ndarray | None = None,
    frequencies: dict[int, TermFrequencies] | None = None,
    excluded: dict[int, set[Key]] | None = None,
) -> EngineResult:
    """Block, compare, estimate (unless `estimate_parameters` is false and `parameters` are
    given) and score every candidate pair of `records`. With `changed` (a boolean per record)
    only pairs involving a changed record are candidates. When the records are part of a
    larger population (an incremental run), `frequencies` and `excluded` give its term
    frequencies and its blocks too big to pair (see `prepare` and `block`)."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    prepared = prepare(config, records, frequencies)
    timings["prepare"] = time.perf_counter() - started

    mark = time.perf_counter()
    blocked = block(config, prepared, changed, excluded)
    pairs = blocked.pairs(prepared.n)
    timings["blocking"] = time.perf_counter() - mark

    mark = time.perf_counter()
    levels = compare(config, prepared, pairs)
    adjustments = tf_adjustments(config, prepared, pairs, levels)
    timings["compare"] = time.perf_counter() - mark

    mark = time.perf_counter()
    found: Estimate | None = None
    if estimate_parameters or parameters is None:
        found = estimate(config, prepared, blocked, levels, adjustments)
        parameters = found.parameters
    timings["estimate"] = time.perf_counter() - mark

    mark = time.perf_counter()
    model = model_levels(config.model(), levels)
    weight, probability, per_column = fs.score(model, parameters, adjustments)
    timings["score"] = time.perf_counter() - mark
    return EngineResult(
        prepared=prepared,
        pairs=pairs,
        levels=levels,
        column_weights=per_column,
        match_weight=weight,
        probability=probability,
        parameters=parameters,
        estimate=found,
        blocking=blocked.stats,
        timings=timings,
    )


def explain(
    config: MatchConfig, levels: Sequence[int], column_weights: Sequence[float]
) -> dict[str, dict[str, Any]]:
    """The comparison vector of one pair as stewards see it: per field, the level and its
    label, and the bits of evidence its model column gave (a group's fields share theirs);
    never a value."""
    comparators = config.comparators()
    out: dict[str, dict[str, Any]] = {}
    for c, column in enumerate(config.model()):
        for f in column.members:
            level = int(levels[f])
            entry: dict[str, Any] = {
                "level": level,
                "label": "missing" if level == NULL_LEVEL else comparators[f].labels[level],
                "weight": round(float(column_weights[c]), 3),
            }
            if column.grouped:
                entry["group"] = column.name
            out[config.fields[f].name] = entry
    return out
