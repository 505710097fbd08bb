"""manage.py import_profiles FILE --workspace SLUG --source NAME [options]

Imports a CSV or JSON Lines file (optionally gzipped) of profiles: each valid row becomes an
identify message through the collection pipeline (identity resolution, merges, encryption).
Rows that fail are listed in the job's error file (sealed, downloadable from the admin, or
written with --errors). Running it again on the same file changes nothing. See README.md,
"Bulk import", for every flag."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from cdp.core.exceptions import ApplicationError
from collect.enums import ImportFormat, ImportKind, ImportStatus
from collect.imports import services
from collect.imports.mapping import mapping_parse
from collect.imports.runner import DEFAULT_BATCH_SIZE, ImportCounts
from profiles import selectors as profile_selectors


class Command(BaseCommand):
    help = (
        "Import profiles from a CSV or JSON Lines file (gzip accepted) through the identity "
        "pipeline. Re-importing the same file changes nothing."
    )
    kind = ImportKind.PROFILES

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="path of the .csv or .jsonl file (optionally .gz)")
        parser.add_argument("--workspace", required=True, help="workspace slug")
        parser.add_argument(
            "--source",
            required=True,
            help="source name; a source of kind import is created if the workspace has none "
            "of that name",
        )
        parser.add_argument(
            "--format",
            choices=ImportFormat.values,
            help="csv or jsonl (default: from the file's extension)",
        )
        parser.add_argument(
            "--map",
            action="append",
            default=[],
            metavar="COLUMN=TARGET",
            help="repeatable; TARGET is "
            + (
                "trait:NAME[:TYPE] or identifier:TYPE"
                if self.kind == ImportKind.PROFILES
                else "property:NAME[:TYPE] or identifier:TYPE"
            )
            + " (TYPE of a value: string, integer, number, boolean, date, datetime)",
        )
        parser.add_argument("--id-column", help="the column holding each row's id (required)")
        parser.add_argument(
            "--id-type", help="the identifier type of --id-column, e.g. crm_id, user_id, email"
        )
        if self.kind == ImportKind.EVENTS:
            parser.add_argument("--event-column", help="the column holding the event name")
            parser.add_argument("--event-name", help="one event name for every row")
        parser.add_argument(
            "--timestamp-column",
            help="ISO 8601 time of each row"
            + (
                " (required)"
                if self.kind == ImportKind.EVENTS
                else " (e.g. the CRM's updated-at; default: the import's time)"
            ),
        )
        parser.add_argument(
            "--message-id-column",
            help="a unique id per row (order or transaction number): the row's messageId is "
            "derived from it instead of from the row's content",
        )
        parser.add_argument(
            "--phone-region",
            help="region for phone numbers written without +country code, e.g. GB",
        )
        parser.add_argument("--delimiter", default=",", help="CSV delimiter (default ,)")
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
        parser.add_argument(
            "--errors",
            metavar="PATH",
            help="also write the error file here (personal data masked, as in the admin)",
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        try:
            workspace = profile_selectors.workspace_get(slug=options["workspace"])
            mapping = mapping_parse(
                kind=self.kind,
                maps=options["map"],
                id_column=options["id_column"],
                id_type=options["id_type"],
                event_column=options.get("event_column"),
                event_name=options.get("event_name"),
                timestamp_column=options["timestamp_column"],
                message_id_column=options["message_id_column"],
                phone_region=options["phone_region"],
                delimiter=_delimiter(options["delimiter"]),
            )
            source, created = services.import_source_get_or_create(
                workspace=workspace, name=options["source"]
            )
            if created:
                self.stdout.write(f"Created source {source.name!r} (kind import).")
            job = services.import_job_create(
                workspace=workspace,
                source=source,
                mapping=mapping,
                file_name=path.name,
                file_format=options["format"],
                size_bytes=os.path.getsize(path),
            )
        except ApplicationError as exc:
            raise CommandError(f"{exc.message} [{exc.code}]") from None
        self.stdout.write(f"Import {job.pk}: {path.name} into {workspace.slug} / {source.name}")
        bar = tqdm(
            total=job.size_bytes,
            unit="B",
            unit_scale=True,
            disable=options["no_progress"],
            file=self.stderr._out,
            desc=f"import {self.kind}",
        )

        def progress(counts: ImportCounts) -> None:
            bar.update(counts.bytes_read - bar.n)
            bar.set_postfix(rows=counts.rows_total, ok=counts.rows_ok, failed=counts.rows_failed)

        try:
            job = services.import_job_run_file(
                job=job, path=path, on_progress=progress, batch_size=options["batch_size"]
            )
        finally:
            bar.close()
        self._report(job, options["errors"])

    def _report(self, job: Any, errors_path: str | None) -> None:
        self.stdout.write(
            f"rows: {job.rows_total} read, {job.rows_ok} valid ({job.rows_stored} stored, "
            f"{job.rows_unchanged} already there, {job.rows_dropped} of erased people), "
            f"{job.rows_failed} failed; profiles created {job.profiles_created}, merges "
            f"{job.merges}, merge conflicts {job.conflicts}"
        )
        if job.error_counts:
            shown = ", ".join(f"{code} {n}" for code, n in sorted(job.error_counts.items()))
            self.stdout.write(f"errors by code: {shown}")
        if job.rows_failed:
            if errors_path:
                data = services.import_errors_read(job=job, actor=None)
                Path(errors_path).write_bytes(data)
                self.stdout.write(f"Error file written to {errors_path}")
            else:
                self.stdout.write(
                    f"Error file: the import's page in the admin (/admin/collect/importjob/"
                    f"{job.pk}/change/), or run again with --errors PATH."
                )
            if job.errors_truncated:
                self.stdout.write("The error file lists the first errors only.")
        if job.status == ImportStatus.FAILED:
            raise CommandError(f"{job.failure_message} [{job.failure_code}]")
        self.stdout.write(self.style.SUCCESS("Import done."))


def _delimiter(value: str) -> str:
    return "\t" if value in ("\\t", "tab", "TAB") else value
