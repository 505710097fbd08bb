"""`manage.py expire_consent [--workspace SLUG] [--dry-run]`: the daily consent expiry by hand."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cdp.core.exceptions import ApplicationError
from consent import selectors, services
from profiles import selectors as profile_selectors


class Command(BaseCommand):
    help = (
        "Record as expired the consent grants older than their purpose's validity (of one "
        "workspace, or of all) and print how many each workspace had; destinations that hold "
        "those people are owed removals. With --dry-run, count them and change nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workspace", help="a workspace's slug (default: every workspace)")
        parser.add_argument("--dry-run", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["workspace"]:
            try:
                workspaces = [profile_selectors.workspace_get(slug=options["workspace"])]
            except ApplicationError as exc:
                raise CommandError(exc.message) from exc
        else:
            workspaces = list(profile_selectors.workspace_list())
        if options["dry_run"]:
            for workspace in workspaces:
                count = selectors.consent_grants_expired(workspace=workspace).count()
                self.stdout.write(f"{workspace.slug} (dry run): would expire {count}")
            return
        failed = []
        for result in services.consent_grants_expire_all(workspaces=workspaces):
            if result.error:
                failed.append(result.workspace)
                self.stdout.write(f"{result.workspace}: FAILED ({result.error})")
            else:
                self.stdout.write(f"{result.workspace}: expired {result.expired}")
        if failed:
            raise CommandError(f"consent expiry failed in: {', '.join(failed)}")
