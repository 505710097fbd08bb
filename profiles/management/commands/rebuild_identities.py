from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cdp.core.exceptions import ApplicationError
from profiles import selectors, services


class Command(BaseCommand):
    help = (
        "Recompute identity clusters from the stored identifier links under the current "
        "rules; report what would merge or split. Without --dry-run, merges are carried out "
        "(through the merge ledger) and would-be splits are recorded as merge conflicts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workspace", required=True)
        parser.add_argument("--dry-run", action="store_true")
        parser.add_argument("--verbose-list", action="store_true", help="list profile ids")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            workspace = selectors.workspace_get(slug=options["workspace"])
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        report = services.identities_rebuild(workspace=workspace, apply=not options["dry_run"])
        merged = sum(len(absorbed) for _, absorbed in report.merges)
        self.stdout.write(
            f"{report.identities} identities, {report.links} links "
            f"({report.refused_links} refused by the rules, {report.blocked} identities blocked)"
        )
        self.stdout.write(f"{report.clusters} clusters over {report.profiles} profiles")
        verb = "merged" if report.applied else "would merge"
        self.stdout.write(f"{verb}: {merged} profiles into {len(report.merges)}")
        recorded = " (recorded as merge conflicts)" if report.applied else ""
        self.stdout.write(f"would split: {len(report.splits)} profiles{recorded}")
        if options["verbose_list"]:
            for survivor, absorbed in report.merges:
                self.stdout.write(f"  merge {', '.join(map(str, absorbed))} -> {survivor}")
            for profile_id, parts in report.splits:
                self.stdout.write(f"  split {profile_id} into {parts}")
