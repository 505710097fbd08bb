"""Data-subject request benchmark: the access export and the erasure of a person with 10k events
among a million, as the product carries them out, against hand-written SQL reading or deleting
the same rows, in one run on one PostgreSQL database.

    .venv/bin/python bench/dsr.py [--events 1000000] [--subject-events 10000] [--runs 15]
        [--background-profiles 100000] [--warmup 1] [--cprofile]
        [--database-url postgres://postgres@127.0.0.1:5432/cdp_bench_dsr] [--keep-db]

What it does:

1. Drops and recreates the bench database and migrates it (`manage.py migrate` with
   DJANGO_SETTINGS_MODULE=cdp.settings.test and DATABASE_URL), then sets Django up in this
   process on it.
2. Creates the workspace (`workspace_create`), its purposes (`purposes_ensure_defaults`) and a
   source, then the subjects, two per timed run (plus `--warmup` pairs and one pair for
   `--cprofile`), each through the product's own services: a visitor's page view and banner
   consent (`ingest_messages`, `consent_record`), an identify call with user id, a second
   anonymous id, email, phone and PII and attribute traits, a second identify linking the first
   anonymous id (a merge: two profiles, two data keys), and a withdrawal in the preference
   centre. Then `--subject-events` events per subject, written the way ingestion writes them
   (`profiles.bulk.insert`, COPY): plain properties and context, with the IP address and the
   PII properties sealed under the data key of the profile the event arrived on (AAD = table,
   column, row), a tenth of them under the absorbed profile's key. The first subject of each
   pair gets an access request and an erasure request, verified and approved (in progress)
   through `governance.services`.
3. Fills the database up to `--events` events with background profiles: each with its own data
   key, an anonymous id and an email identity (sealed, blind-indexed), an email trait (sealed)
   and a plan trait, and its events sealed under its key like the subjects'; every event is
   sealed for real (no key is shared). Half of the background profiles have banner consent
   records and states (generated in SQL with random hashes, as bench/consent.py does). The
   loading statements run without foreign-key triggers (the rows are consistent by
   construction). Then VACUUM ANALYZE, and the data-key cache of this process is emptied.
4. Each run i, with subject pair (A, B):
   - access export, ours: `governance.tasks.dsr_fulfil(<A's access request id>)` called in
     process (what the Celery worker runs): the fulfilment service, every registered
     personal-data handler's export (events decrypted), data.json + schema.json + index.html,
     zipped, sealed under a new data key and stored, the request closed and audited;
     hand-written: the SELECTs of the same rows (the person's profiles, data keys, events with
     their source, traits, identities, merges, consent records, states and receipts, and
     requests), fetched whole, no decryption. The two alternate in order from run to run.
   - erasure, ours: `dsr_fulfil(<A's erasure request id>)`: suppression of every identifier,
     every handler's erase, key destruction, the signed certificate, the request closed;
     hand-written: in one transaction, the DELETEs of B's rows (events, traits, identity links
     and identities, merges, consent rows, profiles) and the UPDATE wiping B's data keys; B's
     rows are read once (untimed) first so that both sides start from a warm cache. Also
     alternating in order.
   After every run both sides are checked: the export holds every event of the person, the
   certificate counts them, and neither person has a row left in any table that references
   a profile, nor a live data key.
5. Prints p50 and p99 (linear interpolation between order statistics: with 15 runs p99 lies
   between the two slowest) of ours and of the hand-written SQL, their ratio (median of each
   run's ours / hand-written, the two having run back to back), PASS/FAIL against the bar
   (p99 of ours < 1 s, for the export and for the erasure), and `ratio` (the larger of the two
   ratios). With `--cprofile`, one more export and erasure (not timed) run under cProfile
   and the heaviest functions are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import logging
import os
import platform
import pstats
import random
import statistics
import subprocess
import sys
import sysconfig
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT_DIR = Path(__file__).resolve().parent.parent
if str(ROOT_DIR) not in sys.path:
    sys.path.insert(0, str(ROOT_DIR))

import orjson  # noqa: E402
import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from bench._common import bench_database_name, drop_database, load_average, recreate_database  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cdp_bench_dsr"
SETTINGS = "cdp.settings.test"
WORKSPACE_SLUG = "bench-shop"
BAR_SECONDS = 1.0
CHUNK_PROFILES = 5_000  # background profiles written per transaction
SETUP_EVENTS = 3  # the page view and two identify calls each subject is created with
NOW = datetime.now(UTC).replace(microsecond=0)


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="all events (1000000)")
    parser.add_argument("--subject-events", type=int, default=10_000, help="per subject (10000)")
    parser.add_argument("--runs", type=int, default=15, help="timed runs (15)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (1)")
    parser.add_argument(
        "--background-profiles", type=int, default=100_000, help="other people (100000)"
    )
    parser.add_argument("--seed", type=int, default=6, help="random seed of the data")
    parser.add_argument("--cprofile", action="store_true", help="profile one more run of ours")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--keep-db", action="store_true", help="leave the bench database")
    args = parser.parse_args()
    pairs = args.runs + args.warmup + (1 if args.cprofile else 0)
    if args.runs < 1 or args.subject_events <= SETUP_EVENTS or args.background_profiles < 1:
        parser.error("--runs, --subject-events and --background-profiles must be positive")
    if args.events < 2 * pairs * args.subject_events + args.background_profiles:
        parser.error(
            f"--events must hold the {2 * pairs} subjects' events and at least one event per "
            "background profile"
        )
    return args


def _create_and_migrate(database_url: str) -> None:
    recreate_database(database_url)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, "DATABASE_URL": database_url}
    subprocess.run(
        [sys.executable, str(ROOT_DIR / "manage.py"), "migrate", "--noinput", "-v", "0"],
        cwd=ROOT_DIR,
        env=env,
        check=True,
        timeout=900,
    )


def _timed(what: str, action: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = action()
    print(f"  {what}: {time.perf_counter() - started:.1f} s", flush=True)
    return result


# --- data ----------------------------------------------------------------------------------

EVENT_COLUMNS = [
    "id", "workspace", "profile", "origin_profile_id", "source", "message_id", "type", "name",
    "timestamp", "original_timestamp", "sent_at", "received_at", "properties", "context",
    "sealed", "data_key",
]  # fmt: skip
PAGES = ("/", "/women", "/men", "/sale", "/p/{n}", "/p/{n}", "/p/{n}", "/cart", "/search")
AGENTS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
)
LIBRARY = {"name": "analytics.js", "version": "4.1.0"}


@dataclass
class Person:
    """What the event writer needs to know about one person."""

    profile_id: uuid.UUID
    # (origin profile, its data key, share of the events that arrived on it)
    origins: list[tuple[uuid.UUID, uuid.UUID, float]]
    email: str
    ip: str


@dataclass
class Subject:
    number: int
    profile_id: uuid.UUID
    people: list[uuid.UUID]  # the profile and the one merged into it
    key_ids: list[uuid.UUID]
    access_request: Any = None
    erasure_request: Any = None


@dataclass
class Timings:
    ours: list[float] = field(default_factory=list)
    hand: list[float] = field(default_factory=list)
    ours_cpu: list[float] = field(default_factory=list)
    hand_cpu: list[float] = field(default_factory=list)


def _event_rows(
    rng: random.Random,
    *,
    workspace_id: int,
    source_id: int,
    person: Person,
    count: int,
    seal: Callable[..., bytes],
    uuid7: Callable[[], uuid.UUID],
) -> Iterator[tuple[Any, ...]]:
    """`count` events of one person as ingestion stores them: the IP and PII properties sealed
    under the data key of the profile each event arrived on, the rest plain."""
    weights = [share for _, _, share in person.origins]
    truncated = person.ip.rsplit(".", 1)[0] + ".0"
    agent = rng.choice(AGENTS)
    for _ in range(count):
        origin, key_id, _share = rng.choices(person.origins, weights)[0]
        at = NOW - timedelta(seconds=rng.randrange(365 * 86400))
        path = rng.choice(PAGES).format(n=rng.randrange(5000))
        page = {
            "path": path,
            "url": f"https://shop.example.com{path}",
            "referrer": "https://www.example.org/",
            "title": "Example Shop",
        }
        context = {
            "page": page,
            "userAgent": agent,
            "locale": "en-GB",
            "library": LIBRARY,
            "ip_truncated": truncated,
        }
        sealed: dict[str, Any] = {"context": {"ip": person.ip}}
        properties: dict[str, Any]
        roll = rng.random()
        if roll < 0.45:
            kind, name, properties = "page", "", {"path": path, "title": "Example Shop"}
        elif roll < 0.85:
            kind, name = "track", "Product Viewed"
            properties = {
                "product_id": f"sku-{rng.randrange(5000)}",
                "price": rng.randrange(500, 20000) / 100,
                "currency": "EUR",
                "category": rng.choice(("shoes", "shirts", "bags")),
            }
        elif roll < 0.97:
            kind, name = "track", "Product Added"
            properties = {"product_id": f"sku-{rng.randrange(5000)}", "quantity": 1}
        else:
            kind, name = "track", "Order Completed"
            properties = {
                "order_id": f"o-{rng.randrange(10**9)}",
                "revenue": rng.randrange(1000, 50000) / 100,
                "currency": "EUR",
            }
            sealed["properties"] = {"email": person.email, "address": "1 Example Street"}
        event_id = uuid7()
        yield (
            event_id, workspace_id, person.profile_id, origin, source_id,
            f"m-{event_id.hex}", kind, name, at, at, at, at + timedelta(milliseconds=80),
            properties, context, seal(key_id=key_id, row_id=event_id, value=sealed), key_id,
        )  # fmt: skip


class Loader:
    def __init__(self, args: argparse.Namespace) -> None:
        from django.db import connection

        from consent import services as consent_services
        from consent.enums import LegalBasis
        from profiles import services as profile_services

        self.args = args
        self.rng = random.Random(args.seed)
        self.workspace = profile_services.workspace_create(slug=WORKSPACE_SLUG, name="Bench Shop")
        purposes = consent_services.purposes_ensure_defaults(workspace=self.workspace)
        self.consent_purposes = sorted(
            p.key for p in purposes if p.legal_basis == LegalBasis.CONSENT
        )
        self.consent_purpose_ids = [p.pk for p in purposes if p.legal_basis == LegalBasis.CONSENT]
        self.source = profile_services.source_create(
            workspace=self.workspace, name="Web", rate_limit_per_minute=10**9
        )
        with connection.cursor() as cursor:
            cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            self.replica = bool(cursor.fetchone()[0])

    @contextlib.contextmanager
    def _bulk(self) -> Iterator[None]:
        """A transaction for generated rows: no foreign-key trigger per row (the rows are
        consistent by construction); both settings are reset at commit."""
        from django.db import connection, transaction

        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL work_mem = '256MB'")
                if self.replica:
                    cursor.execute("SET LOCAL session_replication_role = replica")
            yield

    def _write_events(self, people: list[tuple[Person, int]]) -> int:
        from cdp.core.ids import uuid7
        from profiles import bulk
        from profiles.models import Event

        seal = Event._meta.get_field("sealed").seal_value
        rows: list[tuple[Any, ...]] = []
        for person, count in people:
            rows.extend(
                _event_rows(
                    self.rng,
                    workspace_id=self.workspace.pk,
                    source_id=self.source.pk,
                    person=person,
                    count=count,
                    seal=seal,
                    uuid7=uuid7,
                )
            )
        with self._bulk():
            bulk.insert(Event, EVENT_COLUMNS, rows)
        return len(rows)

    # -- subjects: through the product's services ---------------------------------------------
    def subject(self, number: int, *, with_requests: bool) -> Subject:
        from consent import services as consent_services
        from consent.enums import Decision, Method
        from governance import services as governance_services
        from profiles import services as profile_services
        from profiles.contracts import InboundMessage
        from profiles.models import Identity, Profile

        email = f"subject.{number}@example.com"
        anon_a, anon_b, user_id = f"anon-s{number}-a", f"anon-s{number}-b", f"user-s{number}"
        at = NOW - timedelta(days=400)
        ip = f"203.0.113.{number % 250 + 1}"

        def message(kind: str, minutes: int, **fields: Any) -> InboundMessage:
            when = at + timedelta(minutes=minutes)
            return InboundMessage(
                type=kind,
                message_id=f"setup-s{number}-{minutes}",
                received_at=when,
                timestamp=when,
                ip=ip,
                context={"userAgent": AGENTS[0], "locale": "en-GB"},
                **fields,
            )

        ingest = profile_services.ingest_messages
        first = ingest(
            source=self.source,
            messages=[message("page", 0, anonymous_id=anon_a, name="Home")],
        )
        consent_services.consent_record(
            workspace=self.workspace,
            subject=consent_services.Subject(
                type="anonymous_id", value=anon_a, profile_id=first.profile_ids[0]
            ),
            decisions=dict.fromkeys(self.consent_purposes, Decision.GRANTED),
            evidence=consent_services.Evidence(
                method=Method.BANNER, jurisdiction="DE", ip=ip, user_agent=AGENTS[0]
            ),
        )
        ingest(
            source=self.source,
            messages=[
                message(
                    "identify",
                    5,
                    user_id=user_id,
                    anonymous_id=anon_b,
                    traits={
                        "email": email,
                        "phone": f"+4420794600{number % 100:02d}",
                        "first_name": "Ada",
                        "last_name": f"Subject{number}",
                        "address": f"{number} Example Street, London",
                        "birthday": "1990-01-31",
                        "plan": "gold",
                        "country": "GB",
                        "orders_count": 12,
                    },
                )
            ],
        )
        linked = ingest(
            source=self.source,
            messages=[message("identify", 9, user_id=user_id, anonymous_id=anon_a)],
        )
        profile = Profile.objects.get(pk=linked.profile_ids[0])
        assert profile.merged_into_id is None and profile.status == "active"
        absorbed = list(Profile.objects.filter(merged_into=profile).values_list("pk", flat=True))
        assert len(absorbed) == 1, "the second identify should have merged two profiles"
        consent_services.consent_record(
            workspace=self.workspace,
            subject=consent_services.Subject(type="email", value=email, profile_id=profile.pk),
            decisions={self.consent_purposes[-1]: Decision.WITHDRAWN},
            evidence=consent_services.Evidence(method=Method.PREFERENCE_CENTRE, ip=ip),
        )
        keys = dict(
            Identity.objects.filter(profile=profile)
            .values_list("origin_profile_id", "data_key_id")
            .distinct()
        )
        assert set(keys) == {profile.pk, absorbed[0]}, keys
        person = Person(
            profile_id=profile.pk,
            origins=[(profile.pk, keys[profile.pk], 0.9), (absorbed[0], keys[absorbed[0]], 0.1)],
            email=email,
            ip=ip,
        )
        # The three messages above are events of the person too.
        self._write_events([(person, self.args.subject_events - SETUP_EVENTS)])
        subject = Subject(
            number=number,
            profile_id=profile.pk,
            people=[profile.pk, absorbed[0]],
            key_ids=[keys[profile.pk], keys[absorbed[0]]],
        )
        if with_requests:
            for request_type in ("access", "erasure"):
                submitted = governance_services.request_submit(
                    workspace=self.workspace,
                    request_type=request_type,
                    regime="gdpr",
                    contact_type="email",
                    contact=email.upper(),
                )
                request = governance_services.request_verify_manually(
                    request=submitted.request, actor=None, note="Checked by the bench."
                )
                assert request.profile_id == profile.pk
                request = governance_services.request_approve(request=request, actor=None)
                setattr(subject, f"{request_type}_request", request)
        return subject

    # -- background: generated, sealed for real -----------------------------------------------
    def background(self, *, profiles: int, events: int) -> None:
        from cdp.core.crypto import blind_index, envelope
        from cdp.core.ids import uuid7
        from profiles import bulk
        from profiles.enums import DataKeyPurpose, ProfileStatus
        from profiles.models import DataKey, Identity, Profile, Trait

        identity_seal = Identity._meta.get_field("value").seal_value
        trait_seal = Trait._meta.get_field("value_pii").seal_value
        ws, source = self.workspace.pk, self.source.pk
        per, extra = divmod(events, profiles)
        written = 0
        started = time.perf_counter()
        for start in range(0, profiles, CHUNK_PROFILES):
            chunk = range(start, min(start + CHUNK_PROFILES, profiles))
            people: list[tuple[Person, int]] = []
            profile_rows: list[tuple[Any, ...]] = []
            key_rows: list[tuple[Any, ...]] = []
            identity_rows: list[tuple[Any, ...]] = []
            trait_rows: list[tuple[Any, ...]] = []
            for n in chunk:
                profile_id = uuid7()
                new = envelope.generate_data_key()
                seen = NOW - timedelta(seconds=self.rng.randrange(365 * 86400))
                email = f"shopper.{n}@example.net"
                anon = f"anon-b{n}"
                profile_rows.append((profile_id, ws, ProfileStatus.ACTIVE, {"plan": "basic"},
                                     0, seen, seen, seen, seen))  # fmt: skip
                key_rows.append((new.id, ws, profile_id, DataKeyPurpose.PROFILE,
                                 new.wrapped.kek_id, new.wrapped.blob, seen))  # fmt: skip
                for kind, value in (("anonymous_id", anon), ("email", email)):
                    identity_id = uuid7()
                    identity_rows.append((
                        identity_id, ws, profile_id, profile_id, kind,
                        blind_index(ws, kind, value),
                        identity_seal(key_id=new.id, row_id=identity_id, value=value),
                        new.id, source, f"bg-{n}", seen, seen,
                    ))  # fmt: skip
                trait_id = uuid7()
                trait_rows.append((trait_id, ws, profile_id, profile_id, "email", source, True,
                                   None, trait_seal(key_id=new.id, row_id=trait_id, value=email),
                                   new.id, seen, seen, f"bg-{n}"))  # fmt: skip
                trait_rows.append((uuid7(), ws, profile_id, profile_id, "plan", source, False,
                                   "basic", None, new.id, seen, seen, f"bg-{n}"))  # fmt: skip
                ip = f"198.51.{n % 256}.{n // 256 % 256}"
                person = Person(profile_id, [(profile_id, new.id, 1.0)], email, ip)
                people.append((person, per + (1 if n < extra else 0)))
            with self._bulk():
                bulk.insert(
                    Profile,
                    ["id", "workspace", "status", "attributes", "merge_count", "first_seen_at",
                     "last_seen_at", "created_at", "updated_at"],
                    profile_rows,
                )  # fmt: skip
                bulk.insert(
                    DataKey,
                    ["id", "workspace", "profile", "purpose", "kek_id", "wrapped", "created_at"],
                    key_rows,
                )
                bulk.insert(
                    Identity,
                    ["id", "workspace", "profile", "origin_profile_id", "identifier_type",
                     "blind_index", "value", "data_key", "source", "message_id",
                     "first_seen_at", "last_seen_at"],
                    identity_rows,
                )  # fmt: skip
                bulk.insert(
                    Trait,
                    ["id", "workspace", "profile", "origin_profile_id", "key", "source",
                     "is_pii", "value_attribute", "value_pii", "data_key", "observed_at",
                     "first_observed_at", "message_id"],
                    trait_rows,
                )  # fmt: skip
            written += self._write_events(people)
            if (start // CHUNK_PROFILES) % 4 == 3 or chunk.stop == profiles:
                rate = written / (time.perf_counter() - started)
                print(
                    f"    {chunk.stop:,} background profiles, {written:,} events "
                    f"({rate:,.0f} events/s)",
                    flush=True,
                )
        self._background_consent()

    def _background_consent(self) -> None:
        from django.db import connection

        from consent.models import NoticeVersion

        notice_version = (
            NoticeVersion.objects.filter(notice__workspace=self.workspace)
            .values_list("pk", flat=True)
            .first()
        )
        with self._bulk(), connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO consent_consentrecord (id, workspace_id, profile_id, subject_type,
                    subject_index, purpose_id, decision, notice_version_id, method,
                    jurisdiction, source_id, client_time, server_time, proof, signals,
                    prev_hash, record_hash)
                SELECT gen_random_uuid(), p.workspace_id, p.id, 'anonymous_id',
                    decode(md5(p.id::text) || md5(p.id::text || ':'), 'hex'), pu.id,
                    CASE WHEN p.r < 0.35 THEN 'granted' ELSE 'denied' END, %(nv)s, 'banner',
                    'DE', %(source)s, p.first_seen_at, p.first_seen_at, '{}'::jsonb,
                    '{}'::jsonb, md5(random()::text) || md5(random()::text),
                    md5(random()::text) || md5(random()::text)
                FROM (SELECT id, workspace_id, first_seen_at, random() AS r
                      FROM profiles_profile WHERE workspace_id = %(ws)s
                        AND id NOT IN (SELECT profile_id FROM consent_consentrecord
                                       WHERE profile_id IS NOT NULL)) AS p
                CROSS JOIN unnest(%(purposes)s::bigint[]) AS pu(id)
                WHERE p.r < 0.5
                """,
                {
                    "nv": notice_version,
                    "source": self.source.pk,
                    "ws": self.workspace.pk,
                    "purposes": self.consent_purpose_ids,
                },
            )
            records = cursor.rowcount
            cursor.execute(
                """
                INSERT INTO consent_consentstate (workspace_id, profile_id, purpose_id, decision,
                    record_id, updated_at, needs_reconsent)
                SELECT workspace_id, profile_id, purpose_id, decision, id, server_time, false
                FROM consent_consentrecord r
                WHERE workspace_id = %(ws)s AND method = 'banner' AND source_id = %(source)s
                  AND NOT EXISTS (SELECT 1 FROM consent_consentstate s
                                  WHERE s.profile_id = r.profile_id)
                """,
                {"ws": self.workspace.pk, "source": self.source.pk},
            )
            print(
                f"    background consent: {records:,} records, {cursor.rowcount:,} states",
                flush=True,
            )


def _vacuum_analyze(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


# --- the hand-written SQL ----------------------------------------------------------------------

PEOPLE = "SELECT id FROM profiles_profile WHERE id = %(p)s OR merged_into_id = %(p)s"
HAND_READS = [
    "SELECT * FROM profiles_profile WHERE id = ANY(%(people)s)",
    "SELECT id, created_at FROM profiles_datakey WHERE profile_id = %(p)s ORDER BY created_at",
    """SELECT e.message_id, e.type, e.name, e.timestamp, s.name, e.properties, e.context,
              e.sealed, e.data_key_id
       FROM profiles_event e JOIN profiles_source s ON s.id = e.source_id
       WHERE e.profile_id = %(p)s ORDER BY e.timestamp""",
    """SELECT t.key, t.is_pii, t.value_attribute, t.value_pii, t.data_key_id, s.name,
              t.observed_at
       FROM profiles_trait t JOIN profiles_source s ON s.id = t.source_id
       WHERE t.profile_id = %(p)s ORDER BY t.key""",
    """SELECT i.identifier_type, i.value, i.data_key_id, s.name, i.first_seen_at,
              i.last_seen_at
       FROM profiles_identity i LEFT JOIN profiles_source s ON s.id = i.source_id
       WHERE i.profile_id = %(p)s ORDER BY i.first_seen_at""",
    "SELECT * FROM profiles_merge WHERE survivor_id = %(p)s ORDER BY created_at",
    "SELECT * FROM profiles_mergeconflict WHERE profile_id = %(p)s ORDER BY created_at",
    """SELECT r.id, pu.key, r.decision, r.method, r.jurisdiction, n.key, v.version,
              r.server_time, r.client_time, r.signals, r.record_hash
       FROM consent_consentrecord r JOIN consent_purpose pu ON pu.id = r.purpose_id
       LEFT JOIN consent_noticeversion v ON v.id = r.notice_version_id
       LEFT JOIN consent_notice n ON n.id = v.notice_id
       WHERE r.profile_id = ANY(%(people)s) ORDER BY r.server_time, r.id""",
    """SELECT pu.key, s.decision FROM consent_consentstate s
       JOIN consent_purpose pu ON pu.id = s.purpose_id WHERE s.profile_id = ANY(%(people)s)""",
    """SELECT id, body, signature, kid FROM consent_receipt
       WHERE profile_id = ANY(%(people)s) ORDER BY created_at""",
    """SELECT id, type, regime, state, received_at, verified_at, due_at, extended_due_at,
              closed_at
       FROM governance_datasubjectrequest WHERE profile_id = ANY(%(people)s)
       ORDER BY received_at, id""",
]
HAND_DELETES = [
    "DELETE FROM profiles_event WHERE profile_id = ANY(%(people)s)",
    "DELETE FROM profiles_trait WHERE profile_id = ANY(%(people)s)",
    """DELETE FROM profiles_identitylink WHERE left_id IN (SELECT id FROM profiles_identity
       WHERE profile_id = ANY(%(people)s)) OR right_id IN (SELECT id FROM profiles_identity
       WHERE profile_id = ANY(%(people)s))""",
    "DELETE FROM profiles_identity WHERE profile_id = ANY(%(people)s)",
    """DELETE FROM profiles_merge WHERE survivor_id = ANY(%(people)s)
       OR absorbed_id = ANY(%(people)s)""",
    """DELETE FROM profiles_mergeconflict WHERE profile_id = ANY(%(people)s)
       OR other_profile_id = ANY(%(people)s)""",
    "DELETE FROM consent_consentstate WHERE profile_id = ANY(%(people)s)",
    "DELETE FROM consent_receipt WHERE profile_id = ANY(%(people)s)",
    "DELETE FROM consent_consentrecord WHERE profile_id = ANY(%(people)s)",
    """UPDATE profiles_datakey SET wrapped = NULL, destroyed_at = now(), profile_id = NULL
       WHERE profile_id = ANY(%(people)s)""",
    """UPDATE governance_datasubjectrequest SET profile_id = NULL
       WHERE profile_id = ANY(%(people)s)""",
    "DELETE FROM profiles_profile WHERE id = ANY(%(people)s)",
]


def hand_read(profile_id: uuid.UUID) -> int:
    """The subject's rows, read with plain SQL and fetched whole; returns the event count."""
    from django.db import connection

    events = 0
    with connection.cursor() as cursor:
        cursor.execute(PEOPLE, {"p": profile_id})
        people = [row[0] for row in cursor.fetchall()]
        for query in HAND_READS:
            cursor.execute(query, {"p": profile_id, "people": people})
            rows = cursor.fetchall()
            if "FROM profiles_event" in query:
                events = len(rows)
    return events


def hand_delete(profile_id: uuid.UUID) -> int:
    """The subject's rows deleted (and data keys wiped) in one transaction; returns the events
    deleted."""
    from django.db import connection, transaction

    events = 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(PEOPLE, {"p": profile_id})
        people = [row[0] for row in cursor.fetchall()]
        for statement in HAND_DELETES:
            cursor.execute(statement, {"people": people})
            if "FROM profiles_event" in statement:
                events = cursor.rowcount
    return events


def leftovers(people: list[uuid.UUID]) -> dict[str, int]:
    """Rows anywhere that still reference one of these profiles, and their live data keys."""
    from django.db import connection

    found: dict[str, int] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.conrelid::regclass::text, a.attname
            FROM pg_constraint c
            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)
            WHERE c.contype = 'f' AND c.confrelid = 'profiles_profile'::regclass
            """
        )
        references = cursor.fetchall()
        for table, column in [*references, ("profiles_profile", "id")]:
            cursor.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE {} = ANY(%s)")
                .format(sql.Identifier(table), sql.Identifier(column))
                .as_string(cursor.connection),
                [people],
            )
            count = int(cursor.fetchone()[0])
            if count:
                found[f"{table}.{column}"] = count
        for table in ("profiles_event", "profiles_identity", "profiles_trait"):
            cursor.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE origin_profile_id = ANY(%s)")
                .format(sql.Identifier(table))
                .as_string(cursor.connection),
                [people],
            )
            count = int(cursor.fetchone()[0])
            if count:
                found[f"{table}.origin_profile_id"] = count
    return found


def live_keys(key_ids: list[uuid.UUID]) -> int:
    from profiles.models import DataKey

    return DataKey.objects.filter(pk__in=key_ids, wrapped__isnull=False).count()


# --- the runs ------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, pairs: list[tuple[Subject, Subject]]) -> None:
        from governance import tasks

        self.args = args
        self.pairs = pairs
        self.fulfil = tasks.dsr_fulfil
        self.export = Timings()
        self.erasure = Timings()
        self.sizes: list[int] = []

    def _ours_export(self, subject: Subject) -> None:
        result = self.fulfil(str(subject.access_request.pk))
        assert result["ok"] and result["state"] == "fulfilled", result

    def _ours_erasure(self, subject: Subject) -> None:
        result = self.fulfil(str(subject.erasure_request.pk))
        assert result["ok"] and result["state"] == "fulfilled", result

    def _hand_read(self, subject: Subject) -> None:
        events = hand_read(subject.profile_id)
        assert events == self.args.subject_events, events

    def _hand_delete(self, subject: Subject) -> None:
        events = hand_delete(subject.profile_id)
        assert events == self.args.subject_events, events

    def _check_export(self, subject: Subject) -> None:
        from governance import export
        from governance.models import ExportArchive

        archive = ExportArchive.objects.get(request=subject.access_request)
        payload = export.export_open(archive=archive)
        self.sizes.append(len(payload))
        with zipfile.ZipFile(io.BytesIO(payload)) as zipped:
            data = orjson.loads(zipped.read("data.json"))
            html = zipped.read("index.html").decode()
        events = data["stores"]["profiles.events"]["events"]
        assert len(events) == self.args.subject_events, len(events)
        email = f"subject.{subject.number}@example.com"
        sealed = sum(1 for e in events if e["properties"].get("email") == email)
        assert sealed and email in html, "the sealed properties are missing from the export"
        identities = {i["type"] for i in data["stores"]["profiles.identities"]["identities"]}
        assert {"email", "user_id", "anonymous_id", "phone"} <= identities, identities
        assert len(data["stores"]["consent.ledger"]["consent_records"]) >= 2

    def _check_erasure(self, subject: Subject, other: Subject) -> None:
        from governance.models import ErasureCertificate

        body = ErasureCertificate.objects.get(request=subject.erasure_request).body
        stores = {s["store"]: s for s in body["stores"]}
        assert stores["profiles.events"]["counts"]["events"] == self.args.subject_events, stores
        assert all(s["status"] != "failed" for s in stores.values()), stores
        for person in (subject, other):
            left = leftovers(person.people)
            assert not left, f"subject {person.number}: rows left {left}"
            assert live_keys(person.key_ids) == 0, f"subject {person.number}: live data keys"

    def _pair(
        self, ours: Callable[[], None], hand: Callable[[], None], run: int
    ) -> tuple[float, float, float, float]:
        order = [("ours", ours), ("hand", hand)]
        if run % 2:
            order.reverse()
        wall: dict[str, float] = {}
        cpu: dict[str, float] = {}
        for side, action in order:
            started, cpu_started = time.perf_counter(), time.process_time()
            action()
            wall[side] = time.perf_counter() - started
            cpu[side] = time.process_time() - cpu_started
        return wall["ours"], wall["hand"], cpu["ours"], cpu["hand"]

    def run(self, number: int, a: Subject, b: Subject, *, timed: bool) -> None:
        ours_e, hand_e, ours_e_cpu, hand_e_cpu = self._pair(
            lambda: self._ours_export(a), lambda: self._hand_read(a), number
        )
        self._check_export(a)
        hand_read(b.profile_id)  # warm B's rows as the export warmed A's
        ours_x, hand_x, ours_x_cpu, hand_x_cpu = self._pair(
            lambda: self._ours_erasure(a), lambda: self._hand_delete(b), number
        )
        self._check_erasure(a, b)
        label = f"run {number + 1}" if timed else "warm-up"
        print(
            f"  {label}: export ours {ours_e * 1000:5.0f} ms, hand {hand_e * 1000:4.0f} ms; "
            f"erasure ours {ours_x * 1000:5.0f} ms, hand {hand_x * 1000:4.0f} ms",
            flush=True,
        )
        if timed:
            for timings, values in (
                (self.export, (ours_e, hand_e, ours_e_cpu, hand_e_cpu)),
                (self.erasure, (ours_x, hand_x, ours_x_cpu, hand_x_cpu)),
            ):
                timings.ours.append(values[0])
                timings.hand.append(values[1])
                timings.ours_cpu.append(values[2])
                timings.hand_cpu.append(values[3])

    def profile(self, a: Subject, b: Subject) -> None:
        for what, action in (
            ("access export", lambda: self._ours_export(a)),
            ("erasure", lambda: self._ours_erasure(a)),
        ):
            profiler = cProfile.Profile()
            started = time.perf_counter()
            profiler.enable()
            action()
            profiler.disable()
            elapsed = time.perf_counter() - started
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("cumulative").print_stats(40)
            stats.sort_stats("tottime").print_stats(20)
            print(f"cProfile of ours, {what} ({elapsed * 1000:.0f} ms under the profiler):")
            print(_trim(out.getvalue()), flush=True)
        hand_delete(b.profile_id)


def _trim(report: str) -> str:
    """Paths shortened: the project's relative, libraries' from their package."""
    paths = sysconfig.get_paths()
    prefixes = {str(ROOT_DIR) + "/", paths["purelib"] + "/", paths["stdlib"] + "/"}
    prefixes |= {p.rstrip("/") + "/" for p in sys.path if p.endswith("site-packages")}
    lines = []
    for raw in report.splitlines():
        if not raw.strip():
            continue
        line = raw
        for prefix in sorted(prefixes, key=len, reverse=True):
            line = line.replace(prefix, "")
        lines.append("    " + line)
    return "\n".join(lines)


def _percentile(values: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default, `inclusive`)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _report(what: str, timings: Timings) -> tuple[float, bool]:
    ours50, ours99 = _percentile(timings.ours, 0.5), _percentile(timings.ours, 0.99)
    hand50, hand99 = _percentile(timings.hand, 0.5), _percentile(timings.hand, 0.99)
    ratio = statistics.median(o / h for o, h in zip(timings.ours, timings.hand, strict=True))
    passed = ours99 < BAR_SECONDS
    print(
        f"{what}: ours p50 {ours50 * 1000:.0f} ms, p99 {ours99 * 1000:.0f} ms "
        f"(max {max(timings.ours) * 1000:.0f}); hand-written SQL p50 {hand50 * 1000:.0f} ms, "
        f"p99 {hand99 * 1000:.0f} ms; ratio {ratio:.1f} (median of ours/hand per run); "
        f"this process's CPU p50/p99: ours {_percentile(timings.ours_cpu, 0.5) * 1000:.0f}/"
        f"{_percentile(timings.ours_cpu, 0.99) * 1000:.0f} ms, hand "
        f"{_percentile(timings.hand_cpu, 0.5) * 1000:.0f}/"
        f"{_percentile(timings.hand_cpu, 0.99) * 1000:.0f} ms; "
        f"bar p99 < {BAR_SECONDS:.0f} s: {'PASS' if passed else 'FAIL'}",
        flush=True,
    )
    return ratio, passed


def _count(table: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("SELECT count(*) FROM {}")
            .format(sql.Identifier(table))
            .as_string(cursor.connection)
        )
        return int(cursor.fetchone()[0])


def main() -> int:
    args = _parse()
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    os.environ["DATABASE_URL"] = args.database_url
    pairs_needed = args.runs + args.warmup + (1 if args.cprofile else 0)
    subject_events = 2 * pairs_needed * args.subject_events
    print(
        f"DSR benchmark: access export and erasure of a subject with {args.subject_events:,} "
        f"events among {args.events:,}; {args.runs} timed runs (+{args.warmup} warm-up)",
        flush=True,
    )
    print(
        f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores, "
        f"nice {os.nice(0)}",
        flush=True,
    )
    print(f"load average before: {load_average()}", flush=True)
    name = bench_database_name(args.database_url)
    print(f"setup: database {name} (dropped and created)", flush=True)
    _timed("create and migrate", lambda: _create_and_migrate(args.database_url))

    import django

    django.setup()
    # Eager Celery tasks (run in process, as in the tests) log each success at INFO.
    logging.getLogger("celery").setLevel(logging.WARNING)
    logging.getLogger("kombu").setLevel(logging.ERROR)
    from django.db import connection

    from cdp.core.crypto.envelope import clear_data_key_cache

    try:
        loader = Loader(args)
        subjects = _timed(
            f"{2 * pairs_needed} subjects through the services, {args.subject_events:,} events "
            "each",
            lambda: [loader.subject(n, with_requests=n % 2 == 0) for n in range(2 * pairs_needed)],
        )
        _timed(
            f"{args.background_profiles:,} background profiles, "
            f"{args.events - subject_events:,} events",
            lambda: loader.background(
                profiles=args.background_profiles, events=args.events - subject_events
            ),
        )
        _timed("VACUUM ANALYZE", lambda: _vacuum_analyze(args.database_url))
        clear_data_key_cache()
        counts = {
            table: _count(table)
            for table in (
                "profiles_event", "profiles_profile", "profiles_identity", "profiles_trait",
                "profiles_datakey", "consent_consentrecord",
            )
        }  # fmt: skip
        print(
            "database: " + ", ".join(f"{table} {n:,}" for table, n in counts.items()),
            flush=True,
        )
        assert counts["profiles_event"] == args.events, counts
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            version = cursor.fetchone()[0]
            cursor.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
            size = cursor.fetchone()[0]
            cursor.execute("SHOW shared_buffers")
            buffers = cursor.fetchone()[0]
        print(f"postgresql {version}, database {size}, shared_buffers {buffers}", flush=True)

        pairs = [(subjects[2 * i], subjects[2 * i + 1]) for i in range(pairs_needed)]
        bench = Bench(args, pairs)
        print(f"load average at the first run: {load_average()}", flush=True)
        for i in range(args.warmup):
            bench.run(i, *pairs[i], timed=False)
        for i in range(args.runs):
            bench.run(i, *pairs[args.warmup + i], timed=True)
        print(f"load average after the runs: {load_average()}", flush=True)
        print(
            f"export zip: median {statistics.median(bench.sizes) / 1e6:.1f} MB",
            flush=True,
        )
        export_ratio, export_ok = _report("access export", bench.export)
        erasure_ratio, erasure_ok = _report("erasure", bench.erasure)
        print(f"bar (p99 < 1 s, both): {'PASS' if export_ok and erasure_ok else 'FAIL'}")
        if args.cprofile:
            bench.profile(*pairs[-1])
        print(f"ratio: {max(export_ratio, erasure_ratio):.1f}", flush=True)
    finally:
        connection.close()
        if not args.keep_db:
            drop_database(args.database_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
