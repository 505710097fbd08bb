import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cdp.core.exceptions import ApplicationError
from consent import services
from profiles import selectors as profile_selectors

DEMO_URL = "http://127.0.0.1:8000"


class Command(BaseCommand):
    help = (
        "Print a signed link (valid 30 days) to the preference centre of one profile, "
        "to send to that person."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workspace", required=True, help="workspace slug")
        parser.add_argument("--profile", required=True, help="profile id")
        parser.add_argument(
            "--base-url",
            default=os.environ.get("CDP_PUBLIC_URL") or DEMO_URL,
            help="where the CDP is reached (default: $CDP_PUBLIC_URL, else the demo server)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            workspace = profile_selectors.workspace_get(slug=options["workspace"])
            # a merged-away id answers with the profile it lives on in now
            profile = profile_selectors.profile_get(
                workspace=workspace, profile_id=options["profile"]
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            services.preference_link_create(
                workspace=workspace, profile_id=profile.pk, base_url=options["base_url"]
            )
        )
