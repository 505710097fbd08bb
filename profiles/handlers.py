"""Personal-data handlers for what the profiles app stores (see cdp.core.registry).

A profile absorbed by merges is the same person: its rows were moved to the survivor, so each
handler works on the survivor's rows; the profile handler also deletes the absorbed rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson
from django.db import connection
from django.db.models import Q

from cdp.core.crypto import envelope
from cdp.core.crypto.fields import EncryptedField
from cdp.core.crypto.keyring import WrappedKey
from cdp.core.jsontext import has_long_digit_run
from cdp.core.registry import ErasureReport, ErasureStatus, PersonalDataHandler
from profiles import sealing, services
from profiles.models import (
    DataKey,
    Event,
    Identity,
    IdentityLink,
    Merge,
    MergeConflict,
    Profile,
    Source,
    Trait,
)


def _opener(model: type[Any], name: str) -> Callable[[Any, bytes], Any]:
    """Open a value of an encrypted field read without a model instance (`values_list`):
    under the same AAD (table, column, row id) as the field itself, see
    `EncryptedField.seal_value`; a destroyed key or a mismatch raises as on the model."""
    field = model._meta.get_field(name)
    assert isinstance(field, EncryptedField)
    table, column = model._meta.db_table, str(field.column)

    def open_value(row_id: Any, sealed: bytes) -> Any:
        return field.from_bytes(
            envelope.open_sealed(sealed, envelope.location_aad(table, column, row_id))
        )

    return open_value


def _status(deleted: int) -> ErasureStatus:
    return ErasureStatus.ERASED if deleted else ErasureStatus.NOTHING_FOUND


def export_identities(profile: Profile) -> dict[str, Any]:
    rows = (
        Identity.objects.filter(profile=profile).select_related("source").order_by("first_seen_at")
    )
    return {
        "identities": [
            {
                "type": i.identifier_type,
                "value": i.value,
                "source": i.source.name if i.source else None,
                "first_seen_at": i.first_seen_at.isoformat(),
                "last_seen_at": i.last_seen_at.isoformat(),
            }
            for i in rows
        ]
    }


def erase_identities(profile: Profile) -> ErasureReport:
    ids = list(Identity.objects.filter(profile=profile).values_list("pk", flat=True))
    links, _ = IdentityLink.objects.filter(left_id__in=ids).delete()
    links_right, _ = IdentityLink.objects.filter(right_id__in=ids).delete()
    deleted, _ = Identity.objects.filter(pk__in=ids).delete()
    return ErasureReport(
        store="profiles.identities",
        status=_status(deleted),
        counts={"identities": len(ids), "links": links + links_right},
    )


def export_traits(profile: Profile) -> dict[str, Any]:
    rows = Trait.objects.filter(profile=profile).select_related("source").order_by("key")
    return {
        "traits": [
            {
                "key": t.key,
                "value": t.value_pii if t.is_pii else t.value_attribute,
                "source": t.source.name,
                "observed_at": t.observed_at.isoformat(),
            }
            for t in rows
        ]
    }


def erase_traits(profile: Profile) -> ErasureReport:
    count = Trait.objects.filter(profile=profile).count()
    Trait.objects.filter(profile=profile).delete()
    return ErasureReport(store="profiles.traits", status=_status(count), counts={"traits": count})


def _merged(plain: dict[str, Any], sealed: dict[str, Any] | None) -> dict[str, Any]:
    """The plain values with the sealed parts put back where ingestion took them from, at any
    depth (profiles.sealing)."""
    merged: dict[str, Any] = sealing.merge_sealed(plain, sealed)
    return merged


def _preload_event_keys(profile: Profile) -> None:
    """Unwrap the data keys the person's events are sealed under (the profile's and those of
    the profiles merged into it) with one query rather than one per key on first use; a key
    not found here is still loaded when a value under it is opened. The people are picked in
    a subquery: an OR across the join of keys and profiles made PostgreSQL hash both tables
    whole (90 ms with 100,000 profiles instead of a tenth of a millisecond)."""
    people = Profile.objects.filter(Q(pk=profile.pk) | Q(merged_into=profile)).values("pk")
    rows = DataKey.objects.filter(profile__in=people)
    envelope.preload_data_keys(
        envelope.StoredDataKey(
            id=key_id,
            wrapped=None if wrapped is None else WrappedKey(kek_id=kek, blob=bytes(wrapped)),
        )
        for key_id, kek, wrapped in rows.values_list("id", "kek_id", "wrapped")
    )


def _events_sql() -> str:
    """One row per event: its id as text (the AAD's row), the sealed column, the plain columns
    as text, the timestamp in UTC as JSON (ISO 8601 whatever the session's DateStyle,
    rewritten as Python's `isoformat` by `_isoformat_utc`), nothing built per row: building
    each row's JSON with `json_build_object` and `to_char` cost the database more than the
    rest of the query, and psycopg's loader of timestamps with a time zone runs in Python."""
    quote = connection.ops.quote_name
    event, source = quote(Event._meta.db_table), quote(Source._meta.db_table)
    # The table names come from the models, quoted; the profile id is a parameter.
    return (
        f"SELECT e.id::text, e.sealed, e.message_id, e.type, e.name, "  # noqa: S608
        f"to_json(e.timestamp AT TIME ZONE 'UTC')::text, s.name, e.properties::text, "
        f"e.context::text "
        f"FROM {event} e JOIN {source} s ON s.id = e.source_id "
        f"WHERE e.profile_id = %s ORDER BY e.timestamp, e.id"
    )


def _isoformat_utc(json_text: str) -> str:
    """PostgreSQL's JSON of a UTC timestamp (`"2026-11-02T09:30:01.12"`: the fraction trimmed
    of its trailing zeros, absent when zero) as `datetime.isoformat` writes it
    (`2026-11-02T09:30:01.120000+00:00`)."""
    if len(json_text) == 21:
        return f"{json_text[1:20]}+00:00"
    return f"{json_text[1:20]}{json_text[20:-1].ljust(7, '0')}+00:00"


def _has_long_digit_run(text: str) -> bool:
    return has_long_digit_run(text.encode())


def _json_documents(documents: list[str]) -> list[Any]:
    """The JSON texts decoded: by orjson, several times faster than the standard library,
    except a text holding 19 digits in a row (in a number or in a string alike), which goes to
    the standard library as Django's JSONField reads it: orjson turns an integer beyond 64
    bits into a float. One scan of all the texts tells whether any text needs that look."""
    if not _has_long_digit_run("\n".join(documents)):
        try:
            return [orjson.loads(d) for d in documents]
        except orjson.JSONDecodeError:
            pass  # e.g. nested deeper than orjson goes: the standard library decides
    return [_json_document(d) for d in documents]


def _json_document(document: str) -> Any:
    if _has_long_digit_run(document):
        return json.loads(document)
    try:
        return orjson.loads(document)
    except orjson.JSONDecodeError:
        return json.loads(document)


def _export_events_postgresql(profile: Profile) -> list[dict[str, Any]]:
    """The plain columns are read as text and their JSON decoded here (see `_json_documents`);
    only the sealed column is opened, and merged back into the plain values."""
    unseal = _opener(Event, "sealed")
    _preload_event_keys(profile)
    with connection.cursor() as cursor:
        cursor.execute(_events_sql(), [profile.pk])
        rows = cursor.fetchall()
    documents = _json_documents([text for row in rows for text in row[7:]])
    events = []
    for i, (row_id, sealed, message_id, kind, name, timestamp, source, _, _) in enumerate(rows):
        properties, context = documents[2 * i], documents[2 * i + 1]
        if sealed is not None:
            opened = unseal(row_id, sealed)
            properties = _merged(properties, opened.get("properties"))
            context = _merged(context, opened.get("context"))
        events.append(
            {
                "message_id": message_id,
                "type": kind,
                "name": name,
                "timestamp": _isoformat_utc(timestamp),
                "source": source,
                "properties": properties,
                "context": context,
            }
        )
    return events


def _export_events_portable(profile: Profile) -> list[dict[str, Any]]:
    # Plain rows rather than model instances (building one per row cost more than the
    # database and the decryption together), the source names read once, not joined per row.
    rows = Event.objects.filter(profile=profile)
    sources = dict(Source.objects.filter(pk__in=rows.values("source")).values_list("pk", "name"))
    unseal = _opener(Event, "sealed")
    events = []
    for pk, message_id, kind, name, timestamp, source_id, properties, context, sealed in (
        rows.order_by("timestamp", "pk")
        .values_list(
            "pk", "message_id", "type", "name", "timestamp", "source", "properties", "context",
            "sealed",
        )
        .iterator(chunk_size=2000)
    ):  # fmt: skip
        opened = unseal(pk, sealed) if sealed is not None else {}
        events.append(
            {
                "message_id": message_id,
                "type": kind,
                "name": name,
                "timestamp": timestamp.isoformat(),
                "source": sources[source_id],
                "properties": _merged(properties, opened.get("properties")),
                "context": _merged(context, opened.get("context")),
            }
        )
    return events


def export_events(profile: Profile) -> dict[str, Any]:
    """Every event of the person, in time order, the sealed values opened and merged back
    into the plain ones. A person may have tens of thousands of events: on PostgreSQL they
    are read in one query, their JSON decoded by orjson (see bench/dsr.py)."""
    if connection.vendor == "postgresql":
        return {"events": _export_events_postgresql(profile)}
    return {"events": _export_events_portable(profile)}


def erase_events(profile: Profile) -> ErasureReport:
    deleted, _ = Event.objects.filter(profile=profile).delete()
    return ErasureReport(
        store="profiles.events", status=_status(deleted), counts={"events": deleted}
    )


def export_merges(profile: Profile) -> dict[str, Any]:
    merges = Merge.objects.filter(survivor=profile).order_by("created_at")
    conflicts = MergeConflict.objects.filter(profile=profile).order_by("created_at")
    return {
        "merges": [
            {
                "absorbed_profile": str(m.absorbed_id),
                "identifier_type": m.identifier_type,
                "rule": m.rule,
                "at": m.created_at.isoformat(),
                "unmerged_at": m.unmerged_at.isoformat() if m.unmerged_at else None,
            }
            for m in merges
        ],
        "merge_conflicts": [
            {
                "other_profile": str(c.other_profile_id),
                "identifier_type": c.identifier_type,
                "reason": c.reason,
                "at": c.created_at.isoformat(),
            }
            for c in conflicts
        ],
    }


def erase_merges(profile: Profile) -> ErasureReport:
    absorbed = list(Profile.objects.filter(merged_into=profile).values_list("pk", flat=True))
    people = [profile.pk, *absorbed]
    merges, _ = Merge.objects.filter(survivor_id__in=people).delete()
    conflicts, _ = MergeConflict.objects.filter(profile_id__in=people).delete()
    others, _ = MergeConflict.objects.filter(other_profile_id__in=people).delete()
    return ErasureReport(
        store="profiles.merges",
        status=_status(merges + conflicts + others),
        counts={"merges": merges, "merge_conflicts": conflicts + others},
    )


def export_profile(profile: Profile) -> dict[str, Any]:
    keys = DataKey.objects.filter(profile=profile).order_by("created_at")
    return {
        "profile": {
            "id": str(profile.pk),
            "workspace": profile.workspace.slug,
            "attributes": profile.attributes,
            "created_at": profile.created_at.isoformat(),
            "first_seen_at": profile.first_seen_at.isoformat() if profile.first_seen_at else None,
            "last_seen_at": profile.last_seen_at.isoformat() if profile.last_seen_at else None,
            "merged_profiles": [
                str(pk)
                for pk in Profile.objects.filter(merged_into=profile).values_list("pk", flat=True)
            ],
        },
        "data_keys": [{"id": str(k.pk), "created_at": k.created_at.isoformat()} for k in keys],
    }


def erase_profile(profile: Profile) -> ErasureReport:
    key_ids = list(DataKey.objects.filter(profile=profile).values_list("pk", flat=True))
    destroyed = services.data_keys_destroy(key_ids=key_ids)
    absorbed, _ = Profile.objects.filter(merged_into=profile).delete()
    deleted, _ = Profile.objects.filter(pk=profile.pk).delete()
    return ErasureReport(
        store="profiles.profile",
        status=_status(deleted),
        counts={
            "data_keys_destroyed": destroyed,
            "profiles_deleted": 1 if deleted else 0,
            "merged_profiles_deleted": absorbed,
        },
    )


HANDLERS = [
    PersonalDataHandler(
        name="profiles.events",
        models=("profiles.Event",),
        export=export_events,
        erase=erase_events,
    ),
    PersonalDataHandler(
        name="profiles.traits",
        models=("profiles.Trait",),
        export=export_traits,
        erase=erase_traits,
    ),
    PersonalDataHandler(
        name="profiles.merges",
        models=("profiles.Merge", "profiles.MergeConflict"),
        export=export_merges,
        erase=erase_merges,
    ),
    PersonalDataHandler(
        name="profiles.identities",
        models=("profiles.Identity", "profiles.IdentityLink"),
        export=export_identities,
        erase=erase_identities,
        erase_order=200,
    ),
    # Last: every other handler must read and delete its rows before the keys are destroyed.
    PersonalDataHandler(
        name="profiles.profile",
        models=("profiles.Profile", "profiles.DataKey"),
        export=export_profile,
        erase=erase_profile,
        erase_order=1000,
    ),
]
