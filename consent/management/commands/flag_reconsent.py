"""`manage.py flag_reconsent --workspace SLUG --notice KEY [--notice-version N]`: flag for
re-consent the grants an earlier version of a notice covered (what publishing a version does),
again."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cdp.core.exceptions import ApplicationError
from consent import selectors, services
from profiles import selectors as profile_selectors


class Command(BaseCommand):
    help = (
        "Flag for re-consent the current grants of the purposes a notice version covers that "
        "were given under an earlier version (default: the notice's latest version). "
        "Publishing a version does this; run it to complete a publish whose flagging was "
        "interrupted. Grants already flagged are left as they are."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workspace", required=True, help="workspace slug")
        parser.add_argument("--notice", required=True, help="the notice's key, e.g. banner")
        parser.add_argument("--notice-version", type=int, help="the version (default: the latest)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            workspace = profile_selectors.workspace_get(slug=options["workspace"])
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        if options["notice_version"] is None:
            version = selectors.notice_version_current(
                workspace=workspace, notice_key=options["notice"]
            )
        else:
            version = selectors.notice_version_get(
                workspace=workspace, version=options["notice_version"], notice_key=options["notice"]
            )
        if version is None:
            raise CommandError("No such notice version in this workspace.")
        flagged = services.consent_states_reconsent_flag(version=version)
        self.stdout.write(
            f"{version.notice.key} v{version.version}: {flagged} grant(s) flagged for re-consent"
        )
