"""manage.py match_profiles: the run, its summary and the CSV of proposed pairs."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from matching.models import MatchCandidate, MatchRun
from tests.matching.helpers import add_people, add_person, crm_source


@pytest.fixture
def duplicates(workspace: Any) -> Any:
    source = crm_source(workspace)
    people = add_people(source)
    add_person(
        source, crm_id="crm-dup-1", first_name="Maggie", last_name="Hollowey",
        birthday="1970-03-14", postcode="94107", city="San Francisco", address="12 Oak St",
    )  # fmt: skip
    return people


def test_the_command_writes_both_profiles_their_external_ids_and_the_probability(
    workspace: Any, duplicates: Any, tmp_path: Path
) -> None:
    # given
    output = tmp_path / "pairs.csv"
    out = io.StringIO()

    # when
    call_command(
        "match_profiles", "--workspace", "acme", "--output", str(output), "--id-type", "crm_id",
        "--full", "--reason", "CRM clean-up", stdout=out,
    )  # fmt: skip

    # then
    rows = list(csv.DictReader(output.open()))
    candidate = MatchCandidate.objects.get()
    assert len(rows) == 1
    row = rows[0]
    assert (row["profile_a"], row["profile_b"]) == (
        str(candidate.profile_a_id),
        str(candidate.profile_b_id),
    )
    assert "crm-dup-1" in (row["crm_id_a"], row["crm_id_b"])
    assert all(value.startswith("crm-") for value in (row["crm_id_a"], row["crm_id_b"]))
    assert float(row["probability"]) == pytest.approx(candidate.probability, abs=1e-6)
    assert row["status"] == "proposed"
    assert "Full run" in out.getvalue()
    assert "1 proposed" in out.getvalue()
    assert f"Wrote 1 pairs to {output}" in out.getvalue()


def test_the_command_threshold_overrides_the_review_threshold(
    workspace: Any, duplicates: Any
) -> None:
    # given
    out, err = io.StringIO(), io.StringIO()

    # when
    call_command("match_profiles", "--workspace", "acme", "--threshold", "0.25", "--output", "-",
                 "--reason", "CRM clean-up", stdout=out, stderr=err)  # fmt: skip

    # then: stdout is the CSV alone (user ids by default, none here); the summary is on stderr
    run = MatchRun.objects.get()
    assert run.threshold == 0.25
    lines = out.getvalue().splitlines()
    assert lines[0] == "profile_a,profile_b,user_id_a,user_id_b,probability,match_weight,status"
    assert len(lines[1:]) == run.proposed == 1
    assert lines[1].split(",")[2:4] == ["", ""]
    assert "1 proposed at p >= 0.25" in err.getvalue()


def test_an_external_id_a_spreadsheet_would_run_is_quoted(
    workspace: Any, duplicates: Any, tmp_path: Path
) -> None:
    # given: one side's CRM id starts like a formula
    add_person(
        crm_source(workspace), crm_id="=HYPERLINK(1)", first_name="Maggie", last_name="Hollowey",
        birthday="1970-03-14", postcode="94107", city="San Francisco", address="12 Oak St",
    )  # fmt: skip
    output = tmp_path / "pairs.csv"

    # when
    call_command("match_profiles", "--workspace", "acme", "--output", str(output),
                 "--id-type", "crm_id", "--full", "--reason", "CRM clean-up",
                 stdout=io.StringIO())  # fmt: skip

    # then: no cell starts with "=", the id is there behind an apostrophe
    cells = [cell for row in csv.reader(output.open()) for cell in row]
    assert not any(cell.startswith("=") for cell in cells)
    assert any("'=HYPERLINK(1)" in cell for cell in cells)


def test_an_unknown_workspace_is_a_command_error(db: Any) -> None:
    with pytest.raises(CommandError, match="No such workspace"):
        call_command("match_profiles", "--workspace", "nope")
    assert not MatchRun.objects.exists()


def test_a_bad_threshold_is_a_command_error(workspace: Any) -> None:
    with pytest.raises(CommandError, match="probability"):
        call_command("match_profiles", "--workspace", "acme", "--threshold", "0")
    assert not MatchRun.objects.exists()


def test_the_export_of_external_ids_is_audited_on_the_run(
    workspace: Any, duplicates: Any, tmp_path: Path
) -> None:
    # given
    from auditlog import get_logentry_model

    entries = get_logentry_model().objects

    # when
    call_command("match_profiles", "--workspace", "acme", "--output", str(tmp_path / "p.csv"),
                 "--id-type", "crm_id", "--reason", "  ticket 7: merge in the CRM ",
                 stdout=io.StringIO())  # fmt: skip

    # then
    run = MatchRun.objects.get()
    access = entries.filter(object_pk=str(run.pk), action=entries.model.Action.ACCESS)
    assert sorted(e.additional_data["reason"] for e in access) == [
        "probabilistic matching run",
        "ticket 7: merge in the CRM",
    ]
    export = access.get(additional_data__export="match_profiles")
    assert export.additional_data["profiles"] == 2


@pytest.mark.parametrize("reason", [None, "   "])
def test_an_export_without_a_reason_is_refused_before_anything_runs(
    workspace: Any, duplicates: Any, tmp_path: Path, reason: str | None
) -> None:
    # given
    output = tmp_path / "p.csv"
    extra = [] if reason is None else ["--reason", reason]
    # when / then: refused before the run; no file, no decryption
    with pytest.raises(CommandError, match="--reason is required with --output"):
        call_command("match_profiles", "--workspace", "acme", "--output", str(output),
                     "--id-type", "email", *extra)  # fmt: skip
    assert not output.exists()
    assert not MatchRun.objects.exists()


def test_the_service_refuses_an_export_without_a_reason(workspace: Any, duplicates: Any) -> None:
    from cdp.core.exceptions import InvalidInput
    from matching import services

    result = services.match_run(workspace=workspace)
    with pytest.raises(InvalidInput) as caught:
        services.match_external_ids(
            run=result.run, profile_ids=[], id_type="email", actor=None, reason=" "
        )
    assert caught.value.code == "reason_required"
