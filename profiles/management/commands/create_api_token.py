from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cdp.core.exceptions import ApplicationError
from profiles import selectors, services
from profiles.enums import WorkspaceRole


class Command(BaseCommand):
    help = "Issue a management-API token for a workspace and print it (once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workspace", required=True, help="workspace slug")
        parser.add_argument("--name", default="cli")
        parser.add_argument(
            "--permission",
            action="append",
            default=[],
            metavar="ROLE",
            help=f"repeatable; one of {', '.join(WorkspaceRole.values)}",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            workspace = selectors.workspace_get(slug=options["workspace"])
            issued = services.api_token_create(
                workspace=workspace, name=options["name"], permissions=options["permission"]
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stderr.write("Store this token now; it is not shown again.")
        self.stdout.write(issued.secret)
