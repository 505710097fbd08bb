"""The audience rule language: its JSON Schema (schema.json), validation and the SQL compiler.
See docs/audiences.md for the language."""

from activation.exceptions import RuleError
from activation.rules.compiler import (
    base_profiles,
    check_schema,
    compile_rules,
    profiles_matching,
    schema,
)

__all__ = [
    "RuleError",
    "base_profiles",
    "check_schema",
    "compile_rules",
    "profiles_matching",
    "schema",
]
