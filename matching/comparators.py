"""Comparators: how two values of one field compare, as a discrete comparison level.

Each comparator normalizes raw values, prepares a column for every record (numpy arrays, so
that a batch of pairs compares in a few vectorized calls), and maps a batch of pairs to levels:
0 is the strongest agreement (exact), the last level is "else" (disagreement), and NULL_LEVEL
means one side has no value (no evidence either way). The levels are what Fellegi-Sunter
estimates m and u probabilities for, and what stewards see as the explanation of a candidate.

String similarity comes from rapidfuzz (Jaro-Winkler, Levenshtein, optimal string alignment);
phonetic keys for blocking from jellyfish.
"""

from __future__ import annotations

import abc
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import jellyfish
import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import OSA, JaroWinkler, Levenshtein

from matching import nicknames

NULL_LEVEL = -1
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_NON_ALPHA = re.compile(r"[^a-z]+")
_DIGITS = re.compile(r"\D+")
_DATE = re.compile(r"^\s*(\d{4})[-/.]?(\d{1,2})[-/.]?(\d{1,2})")


def _ascii_lower(value: Any) -> str:
    text = str(value)
    if text.isascii():
        return text.lower()
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if not unicodedata.combining(c)).lower()


def normalize_text(value: Any) -> str | None:
    """Lower-case ASCII words separated by single spaces; None when nothing is left."""
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = " ".join(_NON_ALNUM.sub(" ", _ascii_lower(value)).split())
    return text or None


def normalize_name(value: Any) -> str | None:
    """Letters only, lower-case ASCII: "Mary-Jane" and "mary jane" are the same name."""
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = _NON_ALPHA.sub("", _ascii_lower(value))
    return text or None


def normalize_email(value: Any) -> str | None:
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = str(value).strip().lower()
    local, at, domain = text.partition("@")
    return text if at and local and "." in domain else None


def normalize_phone(value: Any) -> str | None:
    """The last nine digits: national formats, +country codes and trunk zeros compare alike."""
    if value is None or isinstance(value, bool | dict | list):
        return None
    digits = _DIGITS.sub("", str(value))
    return digits[-9:] if len(digits) >= 7 else None


def normalize_date(value: Any) -> str | None:
    """YYYYMMDD from an ISO-like date (2024-03-07, 2024/3/7, 20240307); None otherwise."""
    if value is None or isinstance(value, bool | dict | list):
        return None
    found = _DATE.match(str(value))
    if not found:
        return None
    year, month, day = (int(part) for part in found.groups())
    if not (1 <= month <= 12 and 1 <= day <= 31 and 1000 <= year <= 2999):
        return None
    return f"{year:04d}{month:02d}{day:02d}"


def normalize_postcode(value: Any) -> str | None:
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = _NON_ALNUM.sub("", _ascii_lower(value)).upper()
    return text or None


@dataclass
class Column:
    """One field prepared for every record: exact-equality codes (shared across the fields of
    a run, so a first name can be compared with a last name) and the normalized values."""

    present: np.ndarray  # bool
    code: np.ndarray  # int64, -1 when absent
    text: np.ndarray  # object: the normalized value or None
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def _similarity(scorer: Any, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) == 0:
        return np.zeros(0, dtype=np.float32)
    return process.cpdist(a.tolist(), b.tolist(), scorer=scorer, workers=-1)


class Comparator(abc.ABC):
    """Maps pairs of values to levels; labels[level] names each level, strongest first."""

    kind: ClassVar[str]
    default_thresholds: ClassVar[tuple[float, ...]] = ()
    # m per level for the default thresholds (measured on bench/matching.py's population):
    # the starting point of a workspace too small to estimate its own
    default_m: ClassVar[tuple[float, ...]] = ()

    def __init__(self, thresholds: Sequence[float] | None = None) -> None:
        self.thresholds = tuple(
            float(t) for t in (self.default_thresholds if thresholds is None else thresholds)
        )

    @property
    @abc.abstractmethod
    def labels(self) -> list[str]:
        """Level names, strongest agreement first, disagreement ("else") last."""

    @abc.abstractmethod
    def normalize(self, value: Any) -> str | None:
        """The canonical form compared (None: no usable value)."""

    def prepare(self, values: list[str | None], vocabulary: dict[str, int]) -> Column:
        """A column from normalized values; `vocabulary` gives every distinct text a code."""
        codes = np.fromiter(
            (-1 if v is None else vocabulary.setdefault(v, len(vocabulary)) for v in values),
            dtype=np.int64,
            count=len(values),
        )
        text = np.empty(len(values), dtype=object)
        text[:] = values
        return Column(present=codes >= 0, code=codes, text=text)

    def compare(self, a: Column, b: Column, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Levels of the pairs (a[i], b[j]); NULL_LEVEL where either side is absent."""
        levels = np.full(len(i), NULL_LEVEL, dtype=np.int8)
        both = a.present[i] & b.present[j]
        if both.any():
            levels[both] = self._levels(a, b, i[both], j[both])
        return levels

    @abc.abstractmethod
    def _levels(self, a: Column, b: Column, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Levels of pairs where both values are present."""

    def _threshold_levels(
        self, a: Column, b: Column, i: np.ndarray, j: np.ndarray, scorer: Any, first: int
    ) -> np.ndarray:
        """exact -> 0; similarity >= thresholds[k] -> first + k; else the last level."""
        levels = np.full(len(i), len(self.labels) - 1, dtype=np.int8)
        exact = a.code[i] == b.code[j]
        levels[exact] = 0
        rest = np.nonzero(~exact)[0]
        if len(rest) and self.thresholds:
            score = _similarity(scorer, a.text[i[rest]], b.text[j[rest]])
            assigned = np.zeros(len(rest), dtype=bool)
            for k, threshold in enumerate(self.thresholds):
                hit = ~assigned & (score >= threshold)
                levels[rest[hit]] = first + k
                assigned |= hit
        return levels


class ExactComparator(Comparator):
    kind = "exact"
    default_m = (0.9, 0.1)

    @property
    def labels(self) -> list[str]:
        return ["exact", "different"]

    def normalize(self, value: Any) -> str | None:
        return normalize_text(value)

    def _levels(self, a: Column, b: Column, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return np.where(a.code[i] == b.code[j], 0, 1).astype(np.int8)


class JaroWinklerComparator(Comparator):
    kind = "jaro_winkler"
    default_m = (0.7, 0.15, 0.05, 0.1)
    default_thresholds = (0.92, 0.8)

    @property
    def labels(self) -> list[str]:
        return ["exact", *(f"jaro-winkler >= {t:g}" for t in self.thresholds), "different"]

    def normalize(self, value: Any) -> str | None:
        return normalize_text(value)

    def _levels(self, a: Column, b: Column, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return self._threshold_levels(a, b, i, j, JaroWinkler.normalized_similarity, 1)


class LevenshteinComparator(Comparator):
    kind = "levenshtein"
    default_m = (0.7, 0.15, 0.05, 0.1)
    default_thresholds = (1, 2)

    @property
    def labels(self) -> list[str]:
        return ["exact", *(f"levenshtein <= {t:g}" for t in self.thresholds), "different"]

    def normalize(self, value: Any) -> str | None:
        return normalize_text(value)

    def _levels(self, a: Column, b: Column, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        levels = np.full(len(i), len(self.labels) - 1, dtype=np.int8)
        exact = a.code[i] == b.code[j]
        levels[exact] = 0
        rest = np.nonzero(~exact)[0]
        if len(rest):
            distance = _similarity(Levenshtein.distance, a.text[i[rest]], b.text[j[rest]])
            assigned = np.zeros(len(rest), dtype=bool)
            for k, threshold in enumerate(self.thresholds):
                hit = ~assigned & (distance <= threshold)
                levels[rest[hit]] = 1 + k
                assigned |= hit
        return levels


class NameComparator(Comparator):
    """Given or family names: exact, a nickname of each other (first names), a swap of first
    and last name (set by the engine, see engine.NameSwap), then Jaro-Winkler thresholds."""

    kind = "name"
    default_m = (0.75, 0.05, 0.04, 0.1, 0.03, 0.03)
    default_thresholds = (0.92, 0.8)
    EXACT, NICKNAME, SWAPPED = 0, 1, 2
    _FIRST_FUZZY = 3

    @property
    def labels(self) -> list[str]:
        return [
            "exact",
            "nickname",
            "first and last name swapped",
            *(f"jaro-winkler >= {t:g}" for t in self.thresholds),
            "different",
        ]

    @property
    def strong_levels(self) -> tuple[int, ...]:
        """Levels that count as the same name when testing for a first/last swap."""
        return (self.EXACT, self.NICKNAME, self._FIRST_FUZZY)

    def normalize(self, value: Any) -> str | None:
        return normalize_name(value)

    def prepare(self, values: list[str | None], vocabulary: dict[str, int]) -> Column:
        column = super().prepare(values, vocabulary)
        table = nicknames.groups_by_name()
        column.extra = {
            "nickname": np.fromiter((v in table for v in values), dtype=bool, count=len(values))
        }
        return column

    def _levels(self, a: Column, b: Column, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        levels = self._threshold_levels(
            a, b, i, j, JaroWinkler.normalized_similarity, self._FIRST_FUZZY
        )
        table = nicknames.groups_by_name()
        candidates = np.nonzero(
            (levels != self.EXACT) & a.extra["nickname"][i] & b.extra["nickname"][j]
        )[0]
        if len(candidates):
            left, right = a.text[i[candidates]], b.text[j[candidates]]
            for position, x, y in zip(candidates.tolist(), left, right, strict=True):
                gx = table.get(x)
                if gx is not None:
                    gy = table.get(y)
                    if gy is not None and gx & gy:
                        levels[position] = self.NICKNAME
        return levels


class DateComparator(Comparator):
    """Dates of birth: exact, day and month transposed, one typing error (optimal string
    alignment <= 1 on YYYYMMDD), the year off by one with the same day and month."""

    kind = "date"
    default_m = (0.8, 0.02, 0.09, 0.01, 0.08)

    @property
    def labels(self) -> list[str]:
        return ["exact", "day and month swapped", "one typo", "year off by one", "different"]

    def normalize(self, value: Any) -> str | None:
        return normalize_date(value)

    def prepare(self, values: list[str | None], vocabulary: dict[str, int]) -> Column:
        column = super().prepare(values, vocabulary)
        numeric = np.fromiter(
            (0 if v is None else int(v) for v in values), dtype=np.int64, count=len(values)
        )
        column.extra = {
            "year": numeric // 10000,
            "month": numeric // 100 % 100,
            "day": numeric % 100,
        }
        return column

    def _levels(self, a: Column, b: Column, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        levels = np.full(len(i), 4, dtype=np.int8)
        ya, ma, da = (a.extra[k][i] for k in ("year", "month", "day"))
        yb, mb, db = (b.extra[k][j] for k in ("year", "month", "day"))
        exact = a.code[i] == b.code[j]
        swapped = ~exact & (ya == yb) & (ma == db) & (da == mb)
        off_by_one = ~exact & (ma == mb) & (da == db) & (np.abs(ya - yb) == 1)
        rest = np.nonzero(~(exact | swapped))[0]
        typo = np.zeros(len(i), dtype=bool)
        if len(rest):
            distance = _similarity(OSA.distance, a.text[i[rest]], b.text[j[rest]])
            typo[rest] = distance <= 1
        levels[off_by_one] = 3
        levels[typo] = 2
        levels[swapped] = 1
        levels[exact] = 0
        return levels


class PostcodeComparator(Comparator):
    """Postcodes (any country, spaces and case ignored): exact, the same sector (all but the
    last character), the same district (the first `thresholds[0]` characters, default 3)."""

    kind = "postcode"
    default_m = (0.8, 0.03, 0.03, 0.14)
    default_thresholds = (3,)

    @property
    def labels(self) -> list[str]:
        return ["exact", "same sector", "same district", "different"]

    def normalize(self, value: Any) -> str | None:
        return normalize_postcode(value)

    def prepare(self, values: list[str | None], vocabulary: dict[str, int]) -> Column:
        column = super().prepare(values, vocabulary)
        district = int(self.thresholds[0]) if self.thresholds else 3
        column.extra = {
            "sector": _codes([None if v is None else v[:-1] for v in values], vocabulary, "s"),
            "district": _codes(
                [None if v is None else v[:district] for v in values], vocabulary, "d"
            ),
        }
        return column

    def _levels(self, a: Column, b: Column, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        levels = np.full(len(i), 3, dtype=np.int8)
        levels[a.extra["district"][i] == b.extra["district"][j]] = 2
        levels[a.extra["sector"][i] == b.extra["sector"][j]] = 1
        levels[a.code[i] == b.code[j]] = 0
        return levels


class EmailComparator(Comparator):
    """Email addresses: exact, the same local part (another provider), a similar local part
    (Jaro-Winkler >= thresholds[0], default 0.88), else."""

    kind = "email"
    default_m = (0.72, 0.02, 0.2, 0.06)
    default_thresholds = (0.88,)

    @property
    def labels(self) -> list[str]:
        return [
            "exact",
            "same local part",
            *(f"local part jaro-winkler >= {t:g}" for t in self.thresholds),
            "different",
        ]

    def normalize(self, value: Any) -> str | None:
        return normalize_email(value)

    def prepare(self, values: list[str | None], vocabulary: dict[str, int]) -> Column:
        column = super().prepare(values, vocabulary)
        locals_ = [None if v is None else v.partition("@")[0] for v in values]
        local_text = np.empty(len(values), dtype=object)
        local_text[:] = locals_
        column.extra = {"local": _codes(locals_, vocabulary, "l"), "local_text": local_text}
        return column

    def _levels(self, a: Column, b: Column, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        last = len(self.labels) - 1
        levels = np.full(len(i), last, dtype=np.int8)
        exact = a.code[i] == b.code[j]
        same_local = ~exact & (a.extra["local"][i] == b.extra["local"][j])
        rest = np.nonzero(~(exact | same_local))[0]
        if len(rest) and self.thresholds:
            score = _similarity(
                JaroWinkler.normalized_similarity,
                a.extra["local_text"][i[rest]],
                b.extra["local_text"][j[rest]],
            )
            assigned = np.zeros(len(rest), dtype=bool)
            for k, threshold in enumerate(self.thresholds):
                hit = ~assigned & (score >= threshold)
                levels[rest[hit]] = 2 + k
                assigned |= hit
        levels[same_local] = 1
        levels[exact] = 0
        return levels


class PhoneComparator(Comparator):
    """Phone numbers on their last nine digits: exact, one typing error, else."""

    kind = "phone"
    default_m = (0.88, 0.06, 0.06)

    @property
    def labels(self) -> list[str]:
        return ["exact", "one typo", "different"]

    def normalize(self, value: Any) -> str | None:
        return normalize_phone(value)

    def _levels(self, a: Column, b: Column, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        levels = np.full(len(i), 2, dtype=np.int8)
        exact = a.code[i] == b.code[j]
        rest = np.nonzero(~exact)[0]
        if len(rest):
            distance = _similarity(OSA.distance, a.text[i[rest]], b.text[j[rest]])
            levels[rest[distance <= 1]] = 1
        levels[exact] = 0
        return levels


def _codes(values: list[str | None], vocabulary: dict[str, int], kind: str) -> np.ndarray:
    """Equality codes of a derived value (a postcode's district), from the run's shared
    vocabulary under a prefix of its own; absent values get codes that equal nothing."""
    out = np.empty(len(values), dtype=np.int64)
    for index, value in enumerate(values):
        out[index] = (
            -1 - index
            if value is None
            else vocabulary.setdefault(f"\x00{kind}\x00{value}", len(vocabulary))
        )
    return out


COMPARATORS: dict[str, type[Comparator]] = {
    cls.kind: cls
    for cls in (
        ExactComparator,
        JaroWinklerComparator,
        LevenshteinComparator,
        NameComparator,
        DateComparator,
        PostcodeComparator,
        EmailComparator,
        PhoneComparator,
    )
}


def make_comparator(kind: str, thresholds: Sequence[float] | None = None) -> Comparator:
    return COMPARATORS[kind](thresholds)


# --- blocking keys ---------------------------------------------------------------------------


def _phonetic(function: Any, value: str) -> str | None:
    letters = normalize_name(value)
    return function(letters) or None if letters else None


BLOCK_TRANSFORMS: dict[str, Any] = {
    "value": lambda v: v,
    "metaphone": lambda v: _phonetic(jellyfish.metaphone, v),
    "soundex": lambda v: _phonetic(jellyfish.soundex, v),
    "year": lambda v: v[:4] if len(v) >= 4 and v[:4].isdigit() else None,
    "local": lambda v: v.partition("@")[0] or None,
    "domain": lambda v: v.partition("@")[2] or None,
    "last7": lambda v: v[-7:] if len(v) >= 7 else None,
    "prefix3": lambda v: v[:3] if len(v) >= 3 else None,
    "first_letter": lambda v: v[:1] or None,
}
