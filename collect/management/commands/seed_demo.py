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
from governance import services as governance_services
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
        self._retention(workspace)
        self._traffic(web, options["people"], options["events"])
        self._customers(web)
        self._crm_import(workspace)
        self._audiences(workspace)
        self._removals(workspace)
        self._matching(workspace)
        self._requests(workspace, web)
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

    def _retention(self, workspace: Any) -> None:
        """The default retention policies (raw events 13 months, full IP 7 days, inactive
        profiles 3 years) and two of the store's own, once."""
        created = governance_services.retention_defaults_ensure(workspace=workspace)
        if not created:
            return
        governance_services.retention_policy_create(
            workspace=workspace,
            name="Product views after personalisation is refused",
            kind="purpose",
            purpose_key="personalization",
            event_names=["Product Viewed"],
            period=30,
            unit="days",
            description="Product views feed recommendations only; a month after a shopper "
            "refuses or withdraws personalisation, their product views go.",
        )
        governance_services.retention_policy_create(
            workspace=workspace,
            name="Subscription plan",
            kind="traits",
            trait_keys=["plan"],
            period=24,
            unit="months",
            description="The plan serves offers to current subscribers; two years after it was "
            "last reported it is stale.",
        )
        self.stdout.write(
            "Retention policies: "
            + ", ".join(p.name for p in created)
            + ", and two of the store's own (run: manage.py apply_retention --dry-run)"
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

    def _customers(self, web: Any) -> None:
        """Named customers after the crowd: a household sharing a phone (a merge conflict) and
        the people of the removal and request stories below."""
        from collect.demo import demo_customers_seed

        for line in demo_customers_seed(source=web):
            self.stdout.write(line)

    def _crm_import(self, workspace: Any) -> None:
        """A CRM export uploaded as a steward would: its job, with two rows in the error file,
        is on the admin's Import jobs page."""
        from collect.imports.demo import demo_crm_import

        steward = get_user_model().objects.filter(username="steward").first()
        job = demo_crm_import(workspace=workspace, created_by=steward)
        if job is not None:
            self.stdout.write(
                f"Imported {job.file_name}: {job.rows_ok} rows stored or matched, "
                f"{job.rows_failed} in the error file ({job.status})"
            )

    def _matching(self, workspace: Any) -> None:
        """Near-duplicate customers from a CRM and a loyalty programme, and a matching run:
        the stewards' review queue has candidates."""
        from matching.demo import demo_seed

        for line in demo_seed(workspace=workspace):
            self.stdout.write(line)

    def _removals(self, workspace: Any) -> None:
        """A customer the newsletter received withdraws that consent: a removal is owed to it."""
        from activation.demo_removals import demo_removals_seed

        for line in demo_removals_seed(workspace=workspace):
            self.stdout.write(line)

    def _requests(self, workspace: Any, web: Any) -> None:
        """Data-subject requests in several states, last: an erasure takes its customer back
        from the destinations the syncs above sent them to."""
        from governance.demo import demo_seed

        users = get_user_model().objects
        # The demo's steward; on a database whose admin existed before (no steward was made),
        # a superuser handles them.
        steward = (
            users.filter(username="steward").first()
            or users.filter(is_superuser=True).order_by("pk").first()
        )
        if steward is None:
            self.stdout.write("Requests: skipped (no steward or superuser to handle them)")
            return
        for line in demo_seed(workspace=workspace, steward=steward, web=web):
            self.stdout.write(line)

    def _audiences(self, workspace: Any) -> None:
        """Computed traits, the lifecycle stages and a few audiences (the seed's example among
        them), refreshed last so that they see all the traffic above."""
        from activation.demo import demo_seed

        for line in demo_seed(workspace=workspace):
            self.stdout.write(line)
        # Then a CSV and a Meta destination, each synced once: syncs without a webhook.
        from activation.demo_destinations import demo_destinations_seed

        for line in demo_destinations_seed(workspace=workspace):
            self.stdout.write(line)
