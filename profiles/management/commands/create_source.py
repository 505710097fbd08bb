from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from cdp.core.exceptions import ApplicationError
from profiles import selectors, services
from profiles.enums import SourceKind


class Command(BaseCommand):
    help = (
        "Create a source in a workspace and print its write key (and, with "
        "--identity-verification, its identity-verification secret on the next line)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workspace", required=True, help="workspace slug")
        parser.add_argument("--name", required=True)
        parser.add_argument("--kind", choices=SourceKind.values, default=SourceKind.WEBSITE)
        parser.add_argument(
            "--origin",
            action="append",
            default=[],
            metavar="URL",
            help="repeatable; a browser origin allowed to send, e.g. https://shop.example.com",
        )
        parser.add_argument(
            "--rate-limit", type=int, default=None, help="messages per minute (default 6000)"
        )
        parser.add_argument(
            "--identity-verification",
            action="store_true",
            help="require a userHash with every consent API request naming a userId, and print "
            "the secret the site's server computes it with (shown this once)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["rate_limit"] is not None and options["rate_limit"] < 0:
            raise CommandError("--rate-limit must not be negative.")
        try:
            workspace = selectors.workspace_get(slug=options["workspace"])
            with transaction.atomic():
                source = services.source_create(
                    workspace=workspace,
                    name=options["name"],
                    kind=options["kind"],
                    allowed_origins=options["origin"],
                    rate_limit_per_minute=options["rate_limit"],
                )
                issued = (
                    services.source_identity_verification_enable(source=source)
                    if options["identity_verification"]
                    else None
                )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stderr.write(f"Created source {source.name!r} in workspace {workspace.slug}.")
        self.stdout.write(source.write_key)
        if issued is not None:
            self.stderr.write(
                "Identity verification is on. Next line: the secret for the site's server "
                "(userHash = hex HMAC-SHA256 of the userId under it); it is not shown again."
            )
            self.stdout.write(issued.secret)
