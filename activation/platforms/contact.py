"""`Contact`: the decrypted match keys of one profile, as the sync code hands them to the file
writers. It lives only in memory, for the length of one export, and never prints its values."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["Contact"]


def _many(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value.strip() else ()
    if isinstance(value, Iterable):
        return tuple(str(item) for item in value if item is not None and str(item).strip())
    return (str(value),)


@dataclass(frozen=True, slots=True)
class Contact:
    """Raw (not yet normalized) match keys of one profile. Every field is optional.

    `country` is also the default region for the profile's national phone numbers and decides
    the US postcode and state rules; the writers fall back to their `default_region`."""

    emails: tuple[str, ...] = field(default=(), repr=False)
    phones: tuple[str, ...] = field(default=(), repr=False)
    first_name: str | None = field(default=None, repr=False)
    last_name: str | None = field(default=None, repr=False)
    city: str | None = field(default=None, repr=False)
    state: str | None = field(default=None, repr=False)
    postal_code: str | None = field(default=None, repr=False)
    country: str | None = field(default=None, repr=False)
    date_of_birth: dt.date | str | None = field(default=None, repr=False)
    gender: str | None = field(default=None, repr=False)
    external_id: str | None = field(default=None, repr=False)
    mobile_advertiser_id: str | None = field(default=None, repr=False)

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> Contact:
        """Build from trait-style keys: `email`/`emails`, `phone`/`phones`, `first_name`
        (or `firstName`), `last_name`, `city`, `state`, `postal_code` (or `zip`), `country`,
        `date_of_birth` (or `birthday`), `gender`, `external_id`, `mobile_advertiser_id`."""

        def pick(*keys: str) -> object:
            for key in keys:
                if data.get(key) not in (None, ""):
                    return data[key]
            return None

        def text(*keys: str) -> str | None:
            value = pick(*keys)
            return None if value is None else str(value)

        birth = pick("date_of_birth", "dateOfBirth", "birthday")
        return cls(
            emails=_many(data.get("emails")) + _many(data.get("email")),
            phones=_many(data.get("phones")) + _many(data.get("phone")),
            first_name=text("first_name", "firstName"),
            last_name=text("last_name", "lastName"),
            city=text("city"),
            state=text("state"),
            postal_code=text("postal_code", "postalCode", "zip"),
            country=text("country"),
            date_of_birth=birth if isinstance(birth, dt.date) or birth is None else str(birth),
            gender=text("gender"),
            external_id=text("external_id", "externalId"),
            mobile_advertiser_id=text("mobile_advertiser_id", "madid"),
        )
