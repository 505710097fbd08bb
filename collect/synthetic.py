"""A synthetic online store's traffic, as Segment-spec messages (what SDKs send).

Used by the demo workspace (`manage.py seed_demo`) and the ingestion benchmark. People browse
anonymously on one to three devices, some log in (identify with userId, email, phone and name
on each device, which links the devices), view and add products, and buy. Deterministic for a
given seed. All names and addresses are fictional; emails are on example.com."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

FIRST_NAMES = [
    "Ada", "Ben", "Chloe", "Dev", "Elena", "Femi", "Grace", "Hiro", "Ines", "Jonas", "Kira",
    "Luca", "Maya", "Noah", "Olga", "Pia", "Quinn", "Ravi", "Sara", "Tom", "Uma", "Vera",
    "Wen", "Yara", "Zoe",
]  # fmt: skip
LAST_NAMES = [
    "Abbott", "Berg", "Costa", "Duarte", "Evans", "Fischer", "Garcia", "Hansen", "Ito",
    "Jensen", "Kowalski", "Larsen", "Moreau", "Nakamura", "Okafor", "Petrov", "Quist",
    "Rossi", "Silva", "Tanaka", "Umar", "Varga", "Weber", "Young", "Zimmer",
]  # fmt: skip
PRODUCTS = [
    ("sku-101", "Ceramic Pour-Over Set", "kitchen", 38.0, False),
    ("sku-102", "Linen Apron", "kitchen", 24.0, False),
    ("sku-201", "Merino Travel Scarf", "apparel", 59.0, False),
    ("sku-202", "Premium Leather Weekender", "bags", 289.0, True),
    ("sku-203", "Premium Cashmere Throw", "home", 199.0, True),
    ("sku-301", "Oak Desk Organizer", "office", 45.0, False),
    ("sku-302", "Premium Fountain Pen", "office", 149.0, True),
    ("sku-401", "Beeswax Candle Trio", "home", 29.0, False),
]  # fmt: skip
PAGES = ["Home", "Catalog", "About", "Shipping", "Journal"]
COUNTRIES = ["DE", "FR", "GB", "US", "NL", "SE", "ES", "IT"]
PLANS = ["guest", "member", "member", "vip"]
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"


@dataclass(frozen=True)
class Person:
    number: int
    user_id: str
    email: str
    phone: str
    first_name: str
    last_name: str
    country: str
    plan: str
    devices: tuple[str, ...]  # anonymous ids
    signs_up: bool


def person(rng: random.Random, number: int) -> Person:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    return Person(
        number=number,
        user_id=f"cust-{number:07d}",
        email=f"{first}.{last}.{number}@example.com".lower(),
        phone=f"+1415555{number % 10000:04d}",
        first_name=first,
        last_name=last,
        country=rng.choice(COUNTRIES),
        plan=rng.choice(PLANS),
        devices=tuple(str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(rng.randint(1, 3))),
        signs_up=rng.random() < 0.8,
    )


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _context(rng: random.Random, page: str, device: str) -> dict[str, Any]:
    return {
        "library": {"name": "analytics.js", "version": "next-1.70.0"},
        "page": {"path": f"/{page.lower()}", "title": page, "url": f"https://shop.example.com/{page.lower()}"},
        "userAgent": USER_AGENT,
        "ip": f"198.51.100.{rng.randint(1, 254)}",
        "locale": "en-US",
        "device": {"id": device},
    }  # fmt: skip


def person_messages(
    rng: random.Random,
    who: Person,
    start: datetime,
    events_per_person: int,
    with_sent_at: bool = True,
) -> list[dict[str, Any]]:
    """One person's messages in time order: browsing, identify on each device, shopping."""
    messages: list[dict[str, Any]] = []
    at = start
    identified: set[str] = set()

    def add(kind: str, device: str, **fields: Any) -> None:
        nonlocal at
        at += timedelta(seconds=rng.randint(5, 3600))
        message: dict[str, Any] = {
            "type": kind,
            "messageId": str(uuid.UUID(int=rng.getrandbits(128))),
            "anonymousId": device,
            "timestamp": _iso(at),
            "context": _context(rng, fields.pop("page", "Catalog"), device),
        }
        consent = fields.pop("consent", None)
        if consent is not None:  # what a site's consent manager adds (Segment's convention)
            message["context"]["consent"] = consent
        if with_sent_at:  # an SDK's send time: the server corrects clock skew with it
            message["sentAt"] = _iso(at + timedelta(milliseconds=rng.randint(5, 400)))
        if device in identified:
            message["userId"] = who.user_id
        message.update(fields)
        messages.append(message)

    for _ in range(events_per_person):
        device = rng.choice(who.devices)
        if who.signs_up and device not in identified and rng.random() < 0.35:
            identified.add(device)
            consent = {
                "categoryPreferences": {
                    "Analytics": True,
                    "Personalization": rng.random() < 0.7,
                    "Marketing Email": rng.random() < 0.4,
                    "Advertising": rng.random() < 0.3,
                }
            }
            add(
                "identify",
                device,
                consent=consent,
                userId=who.user_id,
                traits={
                    "email": who.email,
                    "phone": who.phone,
                    "first_name": who.first_name,
                    "last_name": who.last_name,
                    "country": who.country,
                    "plan": who.plan,
                },
            )
            continue
        roll = rng.random()
        sku, name, category, price, premium = rng.choice(PRODUCTS)
        product = {"product_id": sku, "name": name, "category": category, "price": price}
        if roll < 0.30:
            page = rng.choice(PAGES)
            add("page", device, name=page, page=page, properties={"title": page})
        elif roll < 0.75:
            add("track", device, event="Product Viewed", properties={**product, "premium": premium})
        elif roll < 0.90:
            add("track", device, event="Product Added", properties={**product, "quantity": 1})
        else:
            quantity = rng.randint(1, 3)
            add(
                "track",
                device,
                event="Order Completed",
                properties={
                    "order_id": f"ord-{who.number}-{len(messages)}",
                    "revenue": round(price * quantity, 2),
                    "currency": "EUR",
                    "products": [{**product, "quantity": quantity}],
                },
            )
    return messages


def store_traffic(
    *,
    people: int,
    events: int,
    seed: int = 7,
    start: datetime | None = None,
    with_sent_at: bool = True,
) -> Iterator[dict[str, Any]]:
    """About `events` messages from `people` people, interleaved by time. Without sentAt the
    timestamps are kept as they are (a back-filled history, as the demo wants)."""
    rng = random.Random(seed)  # noqa: S311 — synthetic data, not security
    start = start or datetime(2026, 10, 1, tzinfo=UTC)
    per_person = max(1, events // max(1, people))
    streams = []
    for number in range(1, people + 1):
        offset = timedelta(minutes=rng.randint(0, 60 * 24 * 20))
        who = person(rng, number)
        streams.append(person_messages(rng, who, start + offset, per_person, with_sent_at))
    merged = sorted(
        (m for stream in streams for m in stream), key=lambda m: (m["timestamp"], m["messageId"])
    )
    yield from merged


def batches(messages: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for message in messages:
        batch.append(message)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
