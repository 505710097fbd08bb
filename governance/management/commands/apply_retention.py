from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cdp.core.exceptions import ApplicationError
from governance import retention
from profiles import selectors


class Command(BaseCommand):
    help = (
        "Apply the retention policies (of one workspace, or of all) and purge expired exports; "
        "print what each policy removed. Each policy's run is audited with its counts. With "
        "--dry-run, print what would be removed and change nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workspace", help="a workspace's slug (default: every workspace)")
        parser.add_argument("--dry-run", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run = options["dry_run"]
        if options["workspace"]:
            try:
                workspace = selectors.workspace_get(slug=options["workspace"])
            except ApplicationError as exc:
                raise CommandError(exc.message) from exc
            results = [retention.retention_apply(workspace=workspace, dry_run=dry_run)]
        else:
            results = retention.retention_apply_all(dry_run=dry_run)
        failed = []
        for result in results:
            self.stdout.write(f"{result.workspace}{' (dry run)' if dry_run else ''}")
            if result.seeded:
                self.stdout.write(f"  default policies created: {', '.join(result.seeded)}")
            verb = "would delete" if dry_run else "deleted"
            self.stdout.write(f"  expired exports: {verb} {result.exports}")
            for run in result.runs:
                counts = ", ".join(f"{k}={v}" for k, v in sorted(run.counts.items()))
                line = f"  {run.name} [{run.kind}, before {run.cutoff:%Y-%m-%d %H:%M} UTC]: "
                if run.error:
                    failed.append(f"{result.workspace}: {run.name}")
                    self.stdout.write(line + f"FAILED ({run.error})")
                else:
                    self.stdout.write(line + (counts or "nothing"))
            if not result.runs:
                self.stdout.write("  no enabled policy")
        if failed:
            raise CommandError(f"{len(failed)} policy run(s) failed: {'; '.join(failed)}")
