"""Helpers for the sync, ledger and removal tests: people ingested with identifiers, consent
recorded through the consent services, audiences whose membership is written directly (as
activation.membership writes it), and a webhook receiver on 127.0.0.1."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from django.utils import timezone

from activation import services
from activation.enums import MembershipChangeKind
from activation.models import Audience, AudienceMembership, MembershipChange
from consent import services as consent_services
from consent.enums import Decision, Method
from consent.services import Evidence, Subject
from profiles import selectors as profile_selectors
from profiles import services as profile_services
from tests.profiles.ingest_helpers import msg

SECRET = "whsec_activation_test_0123456789"
_numbers = itertools.count(1)


@dataclass(frozen=True)
class Person:
    profile_id: Any
    user_id: str
    email: str
    phone: str


def source_for(workspace: Any) -> Any:
    consent_services.purposes_ensure_defaults(workspace=workspace)
    for source in profile_selectors.source_list(workspace=workspace):
        if source.name == "Shop":
            return source
    return profile_services.source_create(workspace=workspace, name="Shop")


def person(
    workspace: Any,
    *,
    first_name: str = "Ada",
    country: str = "GB",
    user_id: str | None = None,
    email: str | None = None,
) -> Person:
    """A profile with a userId, an email and a phone, a first name and a country."""
    n = next(_numbers)
    user_id = user_id or f"user-{n:04d}"
    email = email or f"Person.{n:04d}@Example.com"
    phone = f"+44 20 7946 {n:04d}"
    outcome = profile_services.ingest_messages(
        source=source_for(workspace),
        messages=[
            msg(
                "identify",
                user_id=user_id,
                traits={
                    "email": email,
                    "phone": phone,
                    "first_name": first_name,
                    "country": country,
                },
            )
        ],
    )
    return Person(outcome.profile_ids[0], user_id, email, phone)


def decide(workspace: Any, who: Person, **decisions: str) -> Any:
    """Record consent decisions of `who` (as their banner would)."""
    return consent_services.consent_record(
        workspace=workspace,
        subject=Subject("user_id", who.user_id, who.profile_id),
        decisions=decisions,
        evidence=Evidence(method=Method.BANNER, jurisdiction="DE", ip="198.51.100.7"),
    )


def grant(workspace: Any, who: Person, *purposes: str) -> Any:
    return decide(workspace, who, **dict.fromkeys(purposes, Decision.GRANTED))


def audience(workspace: Any, key: str = "buyers") -> Audience:
    return Audience.objects.create(
        workspace=workspace, key=key, name=key.title(), rules={"all": []}
    )


def enter(aud: Audience, *people: Person) -> None:
    now = timezone.now()
    for who in people:
        AudienceMembership.objects.get_or_create(
            audience=aud, profile_id=who.profile_id, defaults={"entered_at": now}
        )
        MembershipChange.objects.create(
            audience=aud, profile_id=who.profile_id, change=MembershipChangeKind.ENTERED, at=now
        )


def leave(aud: Audience, *people: Person) -> None:
    now = timezone.now()
    for who in people:
        AudienceMembership.objects.filter(audience=aud, profile_id=who.profile_id).delete()
        MembershipChange.objects.create(
            audience=aud, profile_id=who.profile_id, change=MembershipChangeKind.EXITED, at=now
        )


def file_destination(workspace: Any, kind: str, **fields: Any) -> Any:
    """A file or ad-platform destination serving `advertising` (minimum size 1 unless
    given)."""
    consent_services.purposes_ensure_defaults(workspace=workspace)
    fields.setdefault("name", kind)
    fields.setdefault("purposes", ["advertising"])
    fields.setdefault("min_audience_size", 1)
    return services.destination_create(workspace=workspace, kind=kind, **fields)


def webhook(workspace: Any, url: str, *, purposes: tuple[str, ...] = ("advertising",)) -> Any:
    consent_services.purposes_ensure_defaults(workspace=workspace)
    return services.destination_create(
        workspace=workspace,
        name=f"Hook {next(_numbers)}",
        kind="webhook",
        purposes=list(purposes),
        data={"identifiers": ["user_id", "email"], "traits": ["country"]},
        config={"url": url},
        secret=SECRET,
    )


def run_sync(sync: Any, capture: Any, *, mode: str | None = None) -> Any:
    """Start a run and let its task run (eagerly) at commit; the run, refreshed."""
    with capture(execute=True):
        run = services.sync_run_start(sync=sync, mode=mode)
    run.refresh_from_db()
    return run


# --- a webhook receiver on 127.0.0.1 -----------------------------------------------------------


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each POST with the next scripted status (200 once the script is used up), and
    with `retry_after` as the Retry-After header of every answer that is not a 2xx."""

    statuses: list[int] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    retry_after: str = ""

    def start(self) -> None:
        receiver = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with lock:
                    receiver.hits.append(Hit(self.path, dict(self.headers.items()), body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if receiver.retry_after and not 200 <= status < 300:
                    self.send_header("Retry-After", receiver.retry_after)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/cdp"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
