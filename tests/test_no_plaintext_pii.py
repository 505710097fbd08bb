"""Privacy invariant 1: after sentinel personal data goes in through the collection API (and
through the admin's and API's reveal paths), no table holds it in plaintext. Every text, JSON
and binary column of every table is scanned."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import pytest
from django.apps import apps
from django.db import connection, models
from django.test import override_settings

from profiles import services
from profiles.models import Event, Identity, Trait

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
    "device_id": "sentinel-device-4410",
    "advertising_id": "5e471ae1-0d5e-4c1a-9a7e-5e71a1e1ad1d",
    "latitude": "52.517131",
    "nested_phone": "+44 20 7946 0311",
    "product_name": "Sentinelwood Reading Lamp",
    "query_name": "Quirinussentinel",
}
# The email as a browser puts it in a form's URL (%40 for "@"), looked for on its own too.
SENTINELS["email_in_url"] = quote(SENTINELS["email"])
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


def scan_all_tables(sentinels: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(table, column, sentinel) for every plaintext hit in any text, JSON or binary column
    (of SENTINELS, or of the values given)."""
    hits = []
    needles = {name: value.encode() for name, value in (sentinels or SENTINELS).items()}
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
            "properties": {
                "address": SENTINELS["property"],
                "note": SENTINELS["email"],
                # nested, under a key spelt another way, and in a list
                "shipping": {"recipient": {"Phone Number": SENTINELS["nested_phone"]}},
                "products": [{"sku": "sku-9", "name": SENTINELS["product_name"], "price": 9}],
            },
            "context": {
                "ip": SENTINELS["ip"],
                "page": {
                    "url": "https://shop.example.com/thanks?email="
                    f"{SENTINELS['email_in_url']}&first={SENTINELS['query_name']}",
                    "search": f"?email={SENTINELS['email_in_url']}",
                },
                "device": {
                    "id": SENTINELS["device_id"],
                    "advertisingId": SENTINELS["advertising_id"],
                    "model": "Pixel 9",
                },
                "location": {"latitude": float(SENTINELS["latitude"]), "longitude": 13.38},
            },
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
    device = Identity.objects.get(identifier_type="device_id")
    assert device.value == SENTINELS["device_id"]
    order = Event.objects.get(name="Order Completed")
    assert order.context["device"] == {"model": "Pixel 9"}
    assert order.context["page"]["url"] == "https://shop.example.com/thanks"
    assert order.properties["products"] == [{"sku": "sku-9", "price": 9}]
    sealed = order.sealed
    assert sealed is not None
    assert sealed["context"]["device"]["advertisingId"] == SENTINELS["advertising_id"]
    # ...and no column holds any of it in plaintext
    assert scan_all_tables() == []
