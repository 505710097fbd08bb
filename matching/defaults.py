"""The comparison fields and blocking rules a workspace starts with (MatchSettings); stewards
change them in the admin. Trait keys follow the demo and the import conventions."""

from __future__ import annotations

from typing import Any

DEFAULT_FIELDS: list[dict[str, Any]] = [
    {"name": "first_name", "source": "trait", "key": "first_name", "comparator": "name",
     "tf": True},
    {"name": "last_name", "source": "trait", "key": "last_name", "comparator": "name",
     "tf": True},
    {"name": "birthday", "source": "trait", "key": "birthday", "comparator": "date"},
    {"name": "email", "source": "trait", "key": "email", "comparator": "email"},
    {"name": "phone", "source": "trait", "key": "phone", "comparator": "phone"},
    {"name": "address", "source": "trait", "key": "address", "comparator": "jaro_winkler",
     "thresholds": [0.9, 0.75], "group": "location"},
    {"name": "city", "source": "trait", "key": "city", "comparator": "jaro_winkler",
     "group": "location"},
    {"name": "postcode", "source": "trait", "key": "postcode", "comparator": "postcode",
     "group": "location"},
]  # fmt: skip

# Each rule alone keeps its blocks small; together they catch a person who moved (email,
# phone, names), changed email (postcode, names) or has a typo in the surname (email, phone,
# postcode, first-name sound with the date of birth).
DEFAULT_BLOCKING: list[dict[str, Any]] = [
    {"keys": ["postcode", "first_name:first_letter"]},
    {"keys": ["postcode", "last_name:first_letter"]},
    {"keys": ["email:local"]},
    {"keys": ["phone:last7"]},
    {"keys": ["last_name:metaphone", "birthday:year"]},
    {"keys": ["first_name:metaphone", "last_name:metaphone"], "unordered": True},
    {"keys": ["first_name:metaphone", "birthday"]},
]

DEFAULT_NAME_SWAP: list[str] = ["first_name", "last_name"]
