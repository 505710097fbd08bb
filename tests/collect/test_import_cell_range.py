"""A cell whose value cannot be stored (a number past 64 bits, a date-time out of range) is a
row error, not the end of the import."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from collect.enums import ImportStatus
from collect.imports import services as import_services
from profiles import services
from profiles.enums import SourceKind
from tests.collect.import_helpers import run_import, write_csv, write_jsonl
from tests.collect.test_import import traits_of


@pytest.fixture
def source(workspace: Any) -> Any:
    return services.source_create(workspace=workspace, name="CRM", kind=SourceKind.IMPORT)


@pytest.mark.parametrize(
    ("value_type", "cell"),
    [
        ("integer", "99999999999999999999"),
        ("integer", "-99999999999999999999"),
        ("integer", "9" * 5000),
        ("number", "9" * 5000),
    ],
)
def test_a_number_too_large_is_a_row_error_and_the_other_rows_are_stored(
    workspace: Any, source: Any, tmp_path: Path, value_type: str, cell: str
) -> None:
    path = write_csv(
        tmp_path / "crm.csv",
        ["customer_no,age", f"C-001,{cell}", "C-002,41"],
    )

    job = run_import(
        workspace=workspace,
        source=source,
        path=path,
        maps=[f"age=trait:age:{value_type}"],
        id_column="customer_no",
        id_type="crm_id",
    )

    assert job.status == ImportStatus.DONE
    assert (job.rows_total, job.rows_ok, job.rows_failed, job.rows_stored) == (2, 1, 1, 1)
    data = import_services.import_errors_read(job=job, actor=None).decode()
    [row] = list(csv.DictReader(io.StringIO(data)))
    assert (row["column"], row["code"]) == ("age", "invalid_type")
    assert cell not in data


def test_a_number_column_keeps_a_whole_number_past_64_bits_as_a_float(
    workspace: Any, source: Any, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "crm.csv", ["customer_no,score", "C-001,99999999999999999999"])

    job = run_import(
        workspace=workspace,
        source=source,
        path=path,
        maps=["score=trait:score:number"],
        id_column="customer_no",
        id_type="crm_id",
    )

    assert job.status == ImportStatus.DONE
    assert (job.rows_ok, job.rows_stored) == (1, 1)
    assert traits_of(workspace, "C-001")["score"] == 1e20


def test_a_jsonl_integer_past_64_bits_is_a_row_error(
    workspace: Any, source: Any, tmp_path: Path
) -> None:
    path = write_jsonl(
        tmp_path / "crm.jsonl",
        [
            '{"customer_no": "C-001", "age": 100000000000000000000}',
            {"customer_no": "C-002", "age": 3},
        ],
    )

    job = run_import(
        workspace=workspace,
        source=source,
        path=path,
        maps=["age=trait:age:integer"],
        id_column="customer_no",
        id_type="crm_id",
    )

    assert job.status == ImportStatus.DONE
    assert (job.rows_ok, job.rows_failed, job.rows_stored) == (1, 1, 1)
    assert job.error_counts == {"invalid_type": 1}


@pytest.mark.parametrize("cell", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00"])
def test_a_date_time_out_of_range_is_a_row_error(
    workspace: Any, source: Any, tmp_path: Path, cell: str
) -> None:
    path = write_csv(
        tmp_path / "crm.csv",
        ["customer_no,signup,seen", f"C-001,{cell},{cell}", "C-002,2024-01-05,2024-01-05"],
    )

    job = run_import(
        workspace=workspace,
        source=source,
        path=path,
        maps=["signup=trait:signup_at:datetime"],
        id_column="customer_no",
        id_type="crm_id",
        timestamp_column="seen",
    )

    assert job.status == ImportStatus.DONE
    assert (job.rows_ok, job.rows_failed, job.rows_stored) == (1, 1, 1)
    assert job.error_counts == {"invalid_timestamp": 1, "invalid_type": 1}
