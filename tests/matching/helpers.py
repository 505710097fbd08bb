"""Profiles for matching tests: each record is an identify message from a CRM carrying its
own crm_id (an external id), so no two records merge at ingestion unless they share an email
or phone."""

from __future__ import annotations

import itertools
from typing import Any

from profiles import services
from profiles.models import Profile, Source, Workspace
from tests.profiles.ingest_helpers import msg

_ids = itertools.count(1)


def crm_source(workspace: Workspace, name: str = "CRM") -> Source:
    existing = Source.objects.filter(workspace=workspace, name=name).first()
    return existing or services.source_create(workspace=workspace, name=name, kind="import")


def add_person(source: Source, crm_id: str | None = None, **traits: Any) -> Profile:
    """One profile from one CRM row (traits as given; None values are left out)."""
    crm_id = crm_id or f"crm-{next(_ids):06d}"
    outcome = services.ingest_messages(
        source=source,
        messages=[
            msg(
                "identify",
                traits={k: v for k, v in traits.items() if v is not None},
                context={"externalIds": [{"id": crm_id, "type": "crm_id", "collection": "users"}]},
            )
        ],
    )
    return Profile.objects.get(pk=outcome.profile_ids[0])


PEOPLE = [
    # (first, last, birthday, postcode, city, address)
    ("Margaret", "Holloway", "1970-03-14", "94107", "San Francisco", "12 Oak Street"),
    ("Robert", "Fairbanks", "1982-11-02", "10001", "New York", "400 Pine Avenue"),
    ("Aisha", "Okonkwo", "1991-07-21", "60601", "Chicago", "9 Lake Shore Drive"),
    ("Tobias", "Lindqvist", "1965-01-30", "98101", "Seattle", "77 Cedar Lane"),
    ("Priya", "Raman", "1988-05-09", "73301", "Austin", "5 Elm Court"),
    ("Dmitri", "Volkov", "1975-12-24", "02108", "Boston", "31 Beacon Street"),
]


def add_people(source: Source) -> list[Profile]:
    """Six distinct people, one profile each."""
    return [
        add_person(
            source,
            first_name=first,
            last_name=last,
            birthday=birthday,
            postcode=postcode,
            city=city,
            address=address,
        )
        for first, last, birthday, postcode, city, address in PEOPLE
    ]
