import csv
import re
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cdp.core.exceptions import ApplicationError
from cdp.core.spreadsheet import spreadsheet_safe
from matching import services
from profiles import selectors as profile_selectors


class Command(BaseCommand):
    help = (
        "Find profiles of a workspace that are probably the same person (Fellegi-Sunter), "
        "store them as candidates for stewards and optionally write them to a CSV file."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workspace", required=True, help="workspace slug")
        parser.add_argument(
            "--threshold",
            type=float,
            help="lowest match probability proposed (default: the workspace's review threshold)",
        )
        parser.add_argument(
            "--output", help="write the proposed pairs to this CSV file (- for stdout)"
        )
        parser.add_argument(
            "--id-type",
            default="user_id",
            help="identifier type whose values name the profiles in the CSV, e.g. crm_id "
            "(default: user_id)",
        )
        parser.add_argument(
            "--reason",
            help="why the identifiers are exported (required with --output: the CSV holds them "
            "decrypted; the reason is kept in the audit trail)",
        )
        parser.add_argument(
            "--full",
            action="store_true",
            help="every profile and re-estimated parameters (default: incremental, only "
            "profiles changed since the last run against the rest)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # the same spelling rule as identifier types at ingestion: lower case, [a-z0-9_]
        id_type = re.sub(r"[^a-z0-9_]+", "_", (options["id_type"] or "").strip().lower()).strip("_")
        if not id_type:
            raise CommandError("--id-type must name an identifier type, e.g. crm_id")
        if options["output"] and not (options["reason"] or "").strip():
            raise CommandError(
                "--reason is required with --output: the CSV holds decrypted identifiers"
            )
        started = time.perf_counter()
        try:
            workspace = profile_selectors.workspace_get(slug=options["workspace"])
            result = services.match_run(
                workspace=workspace, full=options["full"], threshold=options["threshold"]
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        run = result.run
        # With the pairs on stdout (--output -), the summary goes to stderr: the CSV stays one.
        summary = self.stderr if options["output"] == "-" else self.stdout
        summary.write(
            f"{run.kind.capitalize()} run {run.pk}: {run.profiles_considered} profiles "
            f"({run.profiles_changed} new or changed), {run.candidate_pairs} candidate pairs, "
            f"{run.proposed} proposed at p >= {run.threshold:g}, {run.auto_merged} merged "
            f"automatically, {time.perf_counter() - started:.1f} s"
        )
        if options["output"]:
            self._write(options["output"], result, id_type, options["reason"])

    def _write(self, path: str, result: services.MatchRunResult, id_type: str, reason: str) -> None:
        proposals = result.proposals
        external = services.match_external_ids(
            run=result.run,
            profile_ids=[
                p for proposal in proposals for p in (proposal.profile_a, proposal.profile_b)
            ],
            id_type=id_type,
            actor=None,
            reason=reason,
        )
        header = [
            "profile_a", "profile_b", f"{id_type}_a", f"{id_type}_b", "probability",
            "match_weight", "status",
        ]  # fmt: skip
        handle: Any = self.stdout if path == "-" else open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        try:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            for proposal in proposals:
                writer.writerow(
                    [
                        proposal.profile_a,
                        proposal.profile_b,
                        spreadsheet_safe(";".join(external.get(proposal.profile_a, ()))),
                        spreadsheet_safe(";".join(external.get(proposal.profile_b, ()))),
                        f"{proposal.probability:.6f}",
                        f"{proposal.match_weight:.3f}",
                        proposal.status,
                    ]
                )
        finally:
            if handle is not self.stdout:
                handle.close()
        if path != "-":
            self.stdout.write(f"Wrote {len(proposals)} pairs to {path}")
