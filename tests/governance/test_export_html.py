"""index.html of an export: every event listed and every value escaped, also when the events
table is escaped as one text; data.json keeping integers beyond 64 bits exactly; the garbage
collector paused only while an export is built."""

from __future__ import annotations

import gc
import html
import io
import json
import zipfile
from typing import Any

import pytest

from governance import export
from governance.models import DataSubjectRequest
from profiles import services as profile_services
from tests.governance.request_helpers import SUBJECT_EMAIL_NORMALIZED, in_progress
from tests.profiles.ingest_helpers import msg

HOSTILE_NAME = "<script>alert('name')</script>"
HOSTILE_PROPERTY = '<img src=x onerror="alert(1)"> & </td></tr><tr><td>'
BIG = 2**70  # beyond what orjson reads or writes
EVENTS = 30


@pytest.fixture
def access(workspace: Any) -> DataSubjectRequest:
    """A subject with an email identity and EVENTS events, one named and described hostilely,
    one with an integer beyond 64 bits."""
    source = profile_services.source_create(workspace=workspace, name="Web")
    profile_services.ingest_messages(
        source=source,
        messages=[
            msg("identify", user_id="subject-1", traits={"email": SUBJECT_EMAIL_NORMALIZED}),
            msg(user_id="subject-1", name=HOSTILE_NAME, properties={"note": HOSTILE_PROPERTY}),
            msg(user_id="subject-1", name="Big Number", properties={"big": BIG}),
            *[
                msg(user_id="subject-1", name="Product Viewed", properties={"n": n})
                for n in range(EVENTS - 2)
            ],
        ],
    )
    dsr: DataSubjectRequest = in_progress(workspace, request_type="access")
    assert dsr.profile is not None
    return dsr


def _files(dsr: DataSubjectRequest) -> dict[str, str]:
    archive = export.export_build(request=dsr)
    with zipfile.ZipFile(io.BytesIO(export.export_open(archive=archive))) as zipped:
        return {name: zipped.read(name).decode() for name in zipped.namelist()}


def _events_table(page: str) -> str:
    start = page.index("<caption>events (")
    return page[start : page.index("</table>", start)]


def test_hostile_event_names_and_properties_are_escaped(access: DataSubjectRequest) -> None:
    # when
    page = _files(access)["index.html"]

    # then: nothing of the sentinels reaches the page as markup...
    assert "<script>alert" not in page
    assert "<img src=x" not in page
    assert "</td></tr><tr><td>" not in page
    # ...they are there, escaped as Django's escape writes them
    assert "&lt;script&gt;alert(&#x27;name&#x27;)&lt;/script&gt;" in page
    # (the property inside its event's JSON, quotes escaped for JSON first)
    assert (
        "&lt;img src=x onerror=\\&quot;alert(1)\\&quot;&gt; &amp; "
        "&lt;/td&gt;&lt;/tr&gt;&lt;tr&gt;&lt;td&gt;" in page
    )


def test_every_event_is_one_row_of_the_events_table(access: DataSubjectRequest) -> None:
    # when
    files = _files(access)

    # then
    events = json.loads(files["data.json"])["stores"]["profiles.events"]["events"]
    table = _events_table(files["index.html"])
    assert len(events) == EVENTS + 1  # and the identify call
    assert f"<caption>events ({EVENTS + 1})</caption>" in table
    assert table.count("<tr><td>") == EVENTS + 1
    assert table.count("</td></tr>") == EVENTS + 1
    for event in events:
        assert f"<td>{html.escape(event['message_id'])}</td>" in table


def test_an_integer_beyond_64_bits_is_kept_exactly(access: DataSubjectRequest) -> None:
    # when
    files = _files(access)

    # then
    events = json.loads(files["data.json"])["stores"]["profiles.events"]["events"]
    (big,) = [e for e in events if e["name"] == "Big Number"]
    assert big["properties"]["big"] == BIG
    assert f"{{&quot;big&quot;:{BIG}}}" in _events_table(files["index.html"])


def _escaped_cell_by_cell(rows: list[list[str]]) -> str:
    return "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )


@pytest.mark.parametrize(
    "rows",
    [
        [["a", "<b>"], ["", "x & 'y' \"z\""]],
        [["one"]],
        # the characters the body is joined around, in values: escaped cell by cell
        [["a\x00b", "c"], ["d", "e"]],
        [["a", "b\x01"], ["<", ">"]],
        [["\x00", "\x01"]],
        # a row without cells (a record without keys among records without keys)
        [[], []],
    ],
)
def test_table_body_is_the_cells_escaped_one_by_one(rows: list[list[str]]) -> None:
    # when
    body = export._table_body(rows)

    # then
    assert body == _escaped_cell_by_cell(rows)


def test_the_collector_is_paused_while_building_and_restored_after() -> None:
    # given
    assert gc.isenabled()

    # when / then
    with export._collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_the_collector_stays_off_when_it_was_off() -> None:
    # given
    gc.disable()
    try:
        # when
        with export._collector_paused():
            pass
        # then
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_collector_is_restored_when_the_build_fails() -> None:
    # when
    with pytest.raises(RuntimeError), export._collector_paused():
        raise RuntimeError("the build failed")

    # then
    assert gc.isenabled()


@pytest.mark.parametrize(
    "values",
    [
        [{"b": 1, "a": [1, 2.5, None, True]}, {"é": "ü"}, [], {}, 3, 2.5, False],
        # the separator inside a value: between list elements, in a string, as a key
        [{"a": [1, "\x00", 2]}, {"b": 2}],
        [{"a": ',"\x00",'}, ["\x00"], {"\x00": 1}],
        # an integer beyond 64 bits: orjson refuses the column
        [{"big": BIG}, {"small": 1}],
        # strings and nothing: as they are
        ["a", None, {"a": 1}, "<b>"],
        ["only", "strings"],
        [{"one": 1}],
        [],
    ],
)
def test_texts_are_each_values_text(values: list[Any]) -> None:
    # when / then
    assert export._texts(list(values)) == [export._text(v) for v in values]
