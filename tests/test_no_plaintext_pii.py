"""Privacy invariant 1: after sentinel personal data goes in through the collection API (and
through the admin's and API's reveal paths), no table holds it in plaintext. Every text, JSON
and binary column of every table is scanned."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from django.apps import apps
from django.db import connection, models
from django.test import override_settings

from profiles import services
from profiles.models import Identity, Trait

SENTINELS = {
    "email": "Sentinel.Person+cdp@Example.com",
    "email_normalized": "sentinel.person+cdp@example.com",
    "phone": "+44 20 7946 0958",
    "phone_normalized": "+442079460958",
    "first_name": "Zebulonsentinel",
    "property": "sentinel-street 42",
    "user_id": "sentinel-user-7731",
    "anonymous_id": "sentinel-anon-5512",
    "ip": "203.0.113.199",
}
TEXTUAL = (models.CharField, models.TextField, models.JSONField, models.BinaryField)


def post_batch(client: Any, source: Any, batch: list[dict[str, Any]]) -> None:
    auth = base64.b64encode(f"{source.write_key}:".encode()).decode()
    response = client.post(
        "/v1/batch",
        data={"batch": batch},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Basic {auth}",
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"success": True}


def scan_all_tables() -> list[tuple[str, str, str]]:
    """(table, column, sentinel) for every plaintext hit in any text, JSON or binary column."""
    hits = []
    needles = {name: value.encode() for name, value in SENTINELS.items()}
    with connection.cursor() as cursor:
        for model in apps.get_models(include_auto_created=True):
            if not model._meta.managed or model._meta.proxy:
                continue
            table = model._meta.db_table
            columns = [str(f.column) for f in model._meta.concrete_fields if isinstance(f, TEXTUAL)]
            if not columns or table not in connection.introspection.table_names(cursor):
                continue
            quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
            cursor.execute(f"SELECT {quoted} FROM {connection.ops.quote_name(table)}")  # noqa: S608
            for row in cursor.fetchall():
                for column, value in zip(columns, row, strict=True):
                    if value is None:
                        continue
                    raw = value.encode() if isinstance(value, str) else bytes(value)
                    if isinstance(value, dict | list):
                        raw = repr(value).encode()
                    for name, needle in needles.items():
                        if needle.lower() in raw.lower():
                            hits.append((table, column, name))
    return hits


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async-intake"])
def test_no_table_holds_sentinel_pii_in_plaintext(
    client: Any, workspace: Any, asynchronous: bool
) -> None:
    # given
    source = services.source_create(workspace=workspace, name="Web")
    batch = [
        {
            "type": "identify",
            "userId": SENTINELS["user_id"],
            "anonymousId": SENTINELS["anonymous_id"],
            "traits": {
                "email": SENTINELS["email"],
                "phone": SENTINELS["phone"],
                "first_name": SENTINELS["first_name"],
                "favourite_street": SENTINELS["property"],
            },
            "context": {"ip": SENTINELS["ip"]},
        },
        {
            "type": "track",
            "anonymousId": SENTINELS["anonymous_id"],
            "event": "Order Completed",
            "properties": {"address": SENTINELS["property"], "note": SENTINELS["email"]},
            "context": {"ip": SENTINELS["ip"], "page": {"url": "https://shop.example.com/"}},
        },
    ]
    # when
    with override_settings(COLLECT_ASYNC_INTAKE=asynchronous):
        post_batch(client, source, batch)
        if asynchronous:
            from collect import intake

            assert scan_all_tables() == []  # while sealed in the buffer
            intake.intake_drain()
    # then: the data is there and readable through the keys...
    assert Identity.objects.get(identifier_type="email").value == SENTINELS["email_normalized"]
    assert Identity.objects.get(identifier_type="phone").value == SENTINELS["phone_normalized"]
    assert Trait.objects.get(key="first_name").value_pii == SENTINELS["first_name"]
    # ...and no column holds any of it in plaintext
    assert scan_all_tables() == []
