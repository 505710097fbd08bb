from datetime import date
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cdp.core.exceptions import ApplicationError
from governance import reports
from governance.enums import ReportFormat, ReportKind
from profiles import selectors


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"Not a date (YYYY-MM-DD): {value!r}") from None


class Command(BaseCommand):
    help = (
        "Write a workspace's compliance report (request SLA, consent, records of processing, "
        "personal-data access, audit trail) as printable HTML or CSV."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workspace", required=True)
        parser.add_argument("--kind", required=True, choices=ReportKind.values)
        parser.add_argument("--format", default=ReportFormat.HTML, choices=ReportFormat.values)
        parser.add_argument("--since", type=_day, help="first day, UTC (default: 30 days back)")
        parser.add_argument("--until", type=_day, help="last day, UTC, included (default: now)")
        parser.add_argument("--output", help="file to write (default: standard output)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            workspace = selectors.workspace_get(slug=options["workspace"])
            report = reports.report_build(
                workspace=workspace,
                kind=options["kind"],
                since=options["since"],
                until=options["until"],
            )
            content, _type, filename = reports.report_render(report, fmt=options["format"])
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        if options["output"]:
            Path(options["output"]).write_text(content, encoding="utf-8")
            self.stderr.write(f"Wrote {options['output']} ({report.title}, {filename})")
        else:
            self.stdout.write(content, ending="")
