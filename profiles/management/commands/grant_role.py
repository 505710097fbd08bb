from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cdp.core.exceptions import ApplicationError
from profiles import selectors, services
from profiles.enums import WorkspaceRole


class Command(BaseCommand):
    help = "Give a steward (a user) roles on a workspace."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workspace", required=True)
        parser.add_argument("--user", required=True, help="username")
        parser.add_argument(
            "--role",
            action="append",
            required=True,
            metavar="ROLE",
            help=f"repeatable; one of {', '.join(WorkspaceRole.values)}",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        try:
            user = user_model.objects.get(username=options["user"])
        except user_model.DoesNotExist:
            raise CommandError("No such user.") from None
        try:
            workspace = selectors.workspace_get(slug=options["workspace"])
            services.steward_grant_roles(workspace=workspace, user=user, roles=options["role"])
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Granted {', '.join(options['role'])} on {workspace.slug}")
