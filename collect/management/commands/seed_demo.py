"""The demo workspace: a small online store with stewards, sources, a token and traffic.

Idempotent: a second run creates nothing twice and loads traffic only into an empty workspace.
The traffic goes through the real collection path (validation, identity resolution,
encryption), exactly as an SDK's requests would."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from cdp.core.env import env
from collect import services as collect_services
from collect import synthetic
from consent import services as consent_services
from profiles import selectors, services
from profiles.enums import SourceKind, WorkspaceRole
from profiles.exceptions import WorkspaceNotFound

SLUG = "demo-store"
ORIGINS = ["http://127.0.0.1:8000", "http://localhost:8000"]


class Command(BaseCommand):
    help = "Create the demo workspace (Demo Store), its users, sources and synthetic traffic."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--people", type=int, default=150)
        parser.add_argument("--events", type=int, default=3000)

    def handle(self, *args: Any, **options: Any) -> None:
        workspace = self._workspace()
        password = self._users(workspace)
        web = self._source(workspace, "Web store", SourceKind.WEBSITE, ORIGINS)
        self._source(workspace, "iOS app", SourceKind.APP, [])
        self._token(workspace)
        self._traffic(web, options["people"], options["events"])
        self.stdout.write(
            self.style.SUCCESS("Demo ready: http://127.0.0.1:8000/admin/ (user: admin")
            + (f", password: {password})" if password else ", password unchanged)")
        )

    def _workspace(self) -> Any:
        try:
            workspace = selectors.workspace_get(slug=SLUG)
        except WorkspaceNotFound:
            self.stdout.write(f"Creating workspace {SLUG}")
            workspace = services.workspace_create(slug=SLUG, name="Demo Store")
        consent_services.purposes_ensure_defaults(workspace=workspace)
        return workspace

    def _users(self, workspace: Any) -> str | None:
        """admin (superuser), steward (every role) and analyst (view profiles only). The password
        comes from DEMO_ADMIN_PASSWORD, else one is generated and printed once."""
        user_model = get_user_model()
        if user_model.objects.filter(username="admin").exists():
            return None
        password = env("DEMO_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        user_model.objects.create_superuser("admin", "admin@example.com", password)
        steward = user_model.objects.create_user(
            "steward", "steward@example.com", password, is_staff=True
        )
        analyst = user_model.objects.create_user(
            "analyst", "analyst@example.com", password, is_staff=True
        )
        services.steward_grant_roles(workspace=workspace, user=steward, roles=WorkspaceRole.values)
        services.steward_grant_roles(
            workspace=workspace, user=analyst, roles=[WorkspaceRole.VIEW_PROFILES]
        )
        self.stdout.write(
            "Users: admin (superuser), steward (every role on the demo), analyst (view only); "
            f"password for all three: {password}"
        )
        return password

    def _source(self, workspace: Any, name: str, kind: str, origins: list[str]) -> Any:
        existing = selectors.source_list(workspace=workspace).filter(name=name).first()
        if existing:
            return existing
        source = services.source_create(
            workspace=workspace, name=name, kind=kind, allowed_origins=origins
        )
        self.stdout.write(f"Source {name!r} write key: {source.write_key}")
        return source

    def _token(self, workspace: Any) -> None:
        if selectors.api_token_exists(workspace=workspace, name="demo"):
            return
        issued = services.api_token_create(
            workspace=workspace, name="demo", permissions=WorkspaceRole.values
        )
        self.stdout.write(
            f"Management API token (shown once): {issued.secret}\n"
            "  try: curl -H 'Authorization: Bearer <token>' "
            "'http://127.0.0.1:8000/api/v1/profiles/?email=...'"
        )

    def _traffic(self, source: Any, people: int, events: int) -> None:
        if selectors.workspace_has_events(workspace=source.workspace):
            return
        start = timezone.now() - timedelta(days=30)
        stored = 0
        traffic = synthetic.store_traffic(
            people=people, events=events, start=start, with_sent_at=False
        )
        for batch in synthetic.batches(traffic, 100):
            meta = collect_services.RequestMeta(received_at=timezone.now(), ip=None)
            result = collect_services.collect_messages(
                source=source, payloads=batch, request_meta=meta, enforce_rate_limit=False
            )
            stored += result.accepted
        self.stdout.write(f"Loaded {stored} events of {people} shoppers into {source.name!r}")
