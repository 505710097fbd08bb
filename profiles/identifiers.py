"""Identifier normalization and the default identity rules.

Normalizing before blind-indexing is what makes ` Jane@Example.com ` and `jane@example.com`
the same person; a value that does not normalize is not used as an identifier (it may still be
kept as a trait)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import phonenumbers

from profiles.enums import IdentifierType

MAX_IDENTIFIER_LENGTH = 256
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TYPE_RE = re.compile(r"[^a-z0-9_]+")


def normalize_identifier_type(raw: str) -> str:
    """`context.externalIds[].type` and mapped trait names become safe type names."""
    return _TYPE_RE.sub("_", raw.strip().lower()).strip("_")[:64]


def normalize_email(raw: str) -> str | None:
    value = raw.strip().lower()
    return value if _EMAIL_RE.match(value) else None


def normalize_phone(raw: str, default_region: str | None = None) -> str | None:
    """E.164 (`+16505551212`) or None. Without a leading + a default region is needed."""
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_identifier(identifier_type: str, raw: object) -> str | None:
    """The canonical form of an identifier value, or None when it is not usable."""
    if raw is None or isinstance(raw, bool | dict | list):
        return None
    text = str(raw).strip()
    if not text or len(text) > MAX_IDENTIFIER_LENGTH:
        return None
    if identifier_type == IdentifierType.EMAIL:
        return normalize_email(text)
    if identifier_type == IdentifierType.PHONE:
        return normalize_phone(text)
    return text


DEFAULT_BLOCKED_VALUES = [
    "",
    "null",
    "none",
    "nil",
    "undefined",
    "anonymous",
    "unknown",
    "n/a",
    "na",
    "0",
    "-1",
    "test",
    "[object object]",
    "00000000-0000-0000-0000-000000000000",
]
DEFAULT_BLOCKED_PATTERNS = [r"^[0-]*$", r"^(.)\1{5,}$"]


@dataclass(frozen=True)
class RuleSpec:
    identifier_type: str
    priority: int
    max_per_profile: int | None = None
    window_days: int | None = None
    merge: bool = True
    blocked_values: list[str] = field(default_factory=lambda: list(DEFAULT_BLOCKED_VALUES))
    blocked_patterns: list[str] = field(default_factory=lambda: list(DEFAULT_BLOCKED_PATTERNS))


# Strongest first. A person has one user id ever; a few emails and phones; many devices.
DEFAULT_RULES = [
    RuleSpec(IdentifierType.USER_ID, priority=10, max_per_profile=1),
    RuleSpec(IdentifierType.EMAIL, priority=20, max_per_profile=5),
    RuleSpec(IdentifierType.PHONE, priority=30, max_per_profile=5),
    RuleSpec(IdentifierType.ADVERTISING_ID, priority=70, max_per_profile=20),
    RuleSpec(IdentifierType.DEVICE_ID, priority=80, max_per_profile=50),
    RuleSpec(IdentifierType.ANONYMOUS_ID, priority=90, max_per_profile=None),
]
FALLBACK_PRIORITY = 50  # a workspace's own types (loyalty_id, crm_id...) rank after phone


@dataclass(frozen=True)
class CompiledRule:
    identifier_type: str
    priority: int
    max_per_profile: int | None
    window_days: int | None
    merge: bool
    blocked_values: frozenset[str]
    blocked_patterns: tuple[re.Pattern[str], ...]

    def blocks(self, value: str) -> bool:
        if value.lower() in self.blocked_values:
            return True
        return any(p.search(value) for p in self.blocked_patterns)


def compile_rule(spec: RuleSpec) -> CompiledRule:
    return CompiledRule(
        identifier_type=spec.identifier_type,
        priority=spec.priority,
        max_per_profile=spec.max_per_profile,
        window_days=spec.window_days,
        merge=spec.merge,
        blocked_values=frozenset(v.lower() for v in spec.blocked_values),
        blocked_patterns=tuple(re.compile(p) for p in spec.blocked_patterns),
    )


def fallback_rule(identifier_type: str) -> CompiledRule:
    return compile_rule(RuleSpec(identifier_type, priority=FALLBACK_PRIORITY))
