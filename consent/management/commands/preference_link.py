from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cdp.core.exceptions import ApplicationError
from consent import services
from profiles import selectors as profile_selectors


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
            # the setting, not the environment variable itself: CDP_PUBLIC_URL_FILE works too
            default=settings.CDP_PUBLIC_URL,
            help="where the CDP is reached (default: the CDP_PUBLIC_URL setting)",
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
