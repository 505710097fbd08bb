"""The demo's CRM export: a dozen customers of the demo store, linked to the shoppers' user ids
(so they resolve into the profiles the synthetic traffic made), two of them with mistakes the
error file lists. Fictional data on example.com."""

from __future__ import annotations

import csv
import io
from typing import Any

from collect.enums import ImportKind
from collect.imports import services
from collect.imports.mapping import mapping_parse
from collect.models import ImportJob

FILE_NAME = "demo-crm-export.csv"
TIERS = ("bronze", "silver", "gold", "platinum")


def demo_crm_csv(rows: int = 12) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["crm_id", "shop_user_id", "email", "loyalty_tier", "lifetime_value", "birthday"]
    )
    for n in range(1, rows + 1):
        writer.writerow(
            [
                f"CRM-{1000 + n}",
                f"cust-{n:07d}",
                f"crm.customer.{n}@example.com",
                TIERS[n % len(TIERS)],
                f"{n * 37.5:.2f}",
                f"19{60 + n}-0{1 + n % 9}-1{n % 10}",
            ]
        )
    # Two rows a steward has to fix: a broken email and a value that is not a number.
    writer.writerow(["CRM-2001", "", "crm.customer.at.example.com", "gold", "120.00", ""])
    writer.writerow(["CRM-2002", "", "crm.customer.2002@example.com", "silver", "n/a", ""])
    return buffer.getvalue().encode()


def demo_crm_import(*, workspace: Any, created_by: Any = None) -> ImportJob | None:
    """Upload the demo CRM export as a steward would (sealed, run by the task); None when the
    workspace has it already."""
    if ImportJob.objects.filter(workspace=workspace, file_name=FILE_NAME).exists():
        return None
    source, _created = services.import_source_get_or_create(workspace=workspace, name="CRM export")
    mapping = mapping_parse(
        kind=ImportKind.PROFILES,
        maps=[
            "shop_user_id=identifier:user_id",
            "email=identifier:email",
            "loyalty_tier=trait:loyalty_tier",
            "lifetime_value=trait:lifetime_value:number",
            "birthday=trait:birthday:date",
        ],
        id_column="crm_id",
        id_type="crm_id",
    )
    data = demo_crm_csv()
    job = services.import_job_create(
        workspace=workspace,
        source=source,
        mapping=mapping,
        file_name=FILE_NAME,
        created_by=created_by,
        upload=[data],
    )
    job.refresh_from_db()
    return job
