"""The demo's near-duplicates: customers known to the CRM and again, written differently, to
the loyalty programme (a nickname, a typo, a new address, a phone without its country code),
then a full matching run and, for the last record, an incremental one, so that the stewards'
review queue has candidates to look at.
Fictional people; emails on example.com. Called by `seed_demo`; does nothing a second time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from matching import services
from matching.models import MatchRun
from profiles import selectors as profile_selectors
from profiles import services as profile_services
from profiles.contracts import InboundMessage
from profiles.enums import SourceKind

# (CRM record, loyalty record) of one person; then a few people known to one system only
PAIRS: list[tuple[dict[str, str], dict[str, str]]] = [
    (
        {"first_name": "Katherine", "last_name": "Brennan", "birthday": "1984-06-12",
         "email": "katherine.brennan@example.com", "phone": "+1 628-555-0134",
         "address": "18 Alder Street", "city": "Oakland", "postcode": "94607"},
        {"first_name": "Kate", "last_name": "Brenan", "birthday": "1984-06-12",
         "email": "kate.b@example.com", "phone": "(628) 555-0134",
         "address": "18 Alder St", "city": "Oakland", "postcode": "94607"},
    ),
    (
        {"first_name": "William", "last_name": "Okafor", "birthday": "1979-02-03",
         "email": "w.okafor@example.com", "address": "4 Harbour Road", "city": "Sausalito",
         "postcode": "94965"},
        {"first_name": "Bill", "last_name": "Okafor", "birthday": "1979-03-02",
         "address": "4 Harbour Rd", "city": "Sausalito", "postcode": "94965"},
    ),
    (
        {"first_name": "Lucia", "last_name": "Ferreira", "birthday": "1992-11-23",
         "email": "lucia.ferreira@example.com", "phone": "+1 510-555-0188",
         "address": "77 Vine Avenue", "city": "Berkeley", "postcode": "94710"},
        {"first_name": "Ferreira", "last_name": "Lucia", "birthday": "1992-11-23",
         "phone": "510.555.0188", "address": "9 Ocean Drive", "city": "Santa Cruz",
         "postcode": "95060"},
    ),
    (
        {"first_name": "Jonathan", "last_name": "Whitfield", "birthday": "1968-08-30",
         "email": "jwhitfield@example.com", "address": "250 Mission Street",
         "city": "San Francisco", "postcode": "94105"},
        {"first_name": "Jon", "last_name": "Whitfeld", "birthday": "1969-08-30",
         "email": "jwhitfeld@example.com", "address": "250 Mission St",
         "city": "San Francisco", "postcode": "94105"},
    ),
]  # fmt: skip
SINGLES: list[dict[str, str]] = [
    {"first_name": "Katherine", "last_name": "Brandt", "birthday": "1990-01-15",
     "address": "3 Elm Court", "city": "Fremont", "postcode": "94536"},
    {"first_name": "Samuel", "last_name": "Okafor", "birthday": "2001-05-05",
     "address": "4 Harbour Road", "city": "Sausalito", "postcode": "94965"},
]  # fmt: skip


def _source(workspace: Any, name: str) -> Any:
    existing = profile_selectors.source_list(workspace=workspace).filter(name=name).first()
    return existing or profile_services.source_create(
        workspace=workspace, name=name, kind=SourceKind.IMPORT
    )


def _identify(number: int, traits: dict[str, str], id_type: str) -> InboundMessage:
    at = datetime(2026, 10, 1, tzinfo=UTC) + timedelta(minutes=number)
    return InboundMessage(
        type="identify",
        message_id=f"matching-demo-{id_type}-{number}",
        received_at=at,
        timestamp=at,
        traits=dict(traits),
        context={"externalIds": [{"id": f"{id_type[:3]}-{number:04d}", "type": id_type}]},
    )


def demo_seed(*, workspace: Any) -> list[str]:
    """Load the near-duplicates and run matching: a full run, then (the last loyalty record
    arriving later) an incremental one; lines to print."""
    if MatchRun.objects.filter(workspace=workspace).exists():
        return []
    crm, loyalty = _source(workspace, "CRM"), _source(workspace, "Loyalty programme")
    crm_rows = [pair[0] for pair in PAIRS] + SINGLES
    profile_services.ingest_messages(
        source=crm, messages=[_identify(n, row, "crm_id") for n, row in enumerate(crm_rows)]
    )
    loyalty_rows = [_identify(n, pair[1], "loyalty_id") for n, pair in enumerate(PAIRS)]
    profile_services.ingest_messages(source=loyalty, messages=loyalty_rows[:-1])
    full = services.match_run(workspace=workspace, full=True).run
    profile_services.ingest_messages(source=loyalty, messages=loyalty_rows[-1:])
    later = services.match_run(workspace=workspace).run
    return [
        f"Matching: full run over {full.profiles_considered} profiles, {full.proposed} "
        "candidate pairs in the review queue (admin: Probabilistic matching > Match candidates)",
        f"Matching: one more loyalty record, incremental run: decrypted "
        f"{later.profiles_decrypted} of {later.profiles_considered} profiles (the new one and "
        f"those sharing a block with it), {later.proposed} more candidate pair(s)",
    ]
