"""manage.py import_events FILE --workspace SLUG --source NAME
       (--event-column COLUMN | --event-name NAME) --timestamp-column COLUMN [options]

Imports offline events (POS transactions, orders from a back office) as track messages through
the collection pipeline; identifiers resolve to existing profiles (or create them) exactly as
collected events do. Same mapping style as import_profiles, with event properties mapped by
`--map COLUMN=property:NAME[:TYPE]`."""

from __future__ import annotations

from collect.enums import ImportKind
from collect.management.commands.import_profiles import Command as ImportProfilesCommand


class Command(ImportProfilesCommand):
    help = (
        "Import events from a CSV or JSON Lines file (gzip accepted) through the identity "
        "pipeline. Re-importing the same file changes nothing."
    )
    kind = ImportKind.EVENTS
