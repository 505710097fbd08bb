"""Reading an import file as a stream of rows, in constant memory: gzip recognised by its
magic bytes, UTF-8 text (a byte-order mark is skipped), CSV with a header row or JSON Lines
(one object a line). Bytes read are counted on the raw (possibly compressed) stream, which is
what progress is measured against."""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import orjson

from cdp.core.exceptions import InvalidInput
from collect.enums import ImportFormat

GZIP_MAGIC = b"\x1f\x8b"
# Only names that say exactly what is inside: a .json file is often one array, a .tsv needs a
# delimiter; those are imported with an explicit format (and --delimiter).
EXTENSIONS = {
    ".csv": ImportFormat.CSV,
    ".jsonl": ImportFormat.JSONL,
    ".ndjson": ImportFormat.JSONL,
}
# A row longer than this is not read into memory whole (the collection API's limit per
# message is far lower, see collect.validation.max_event_bytes).
MAX_LINE_CHARS = 1024 * 1024


class ImportFileError(InvalidInput):
    """The file cannot be read on (messages name lines, never values)."""

    code = "invalid_file"
    default_message = "The file could not be read."


def detect_format(file_name: str, explicit: str | None = None) -> str:
    """The format asked for, else the one the extension names (`.csv`, `.jsonl`, `.ndjson`,
    each optionally `.gz`)."""
    if explicit:
        if explicit not in ImportFormat.values:
            raise ImportFileError(
                f"Unknown format; choose from {', '.join(ImportFormat.values)}.",
                code="invalid_format",
            )
        return explicit
    name = file_name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for extension, found in EXTENSIONS.items():
        if name.endswith(extension):
            return str(found)
    raise ImportFileError(
        "Cannot tell the format from the file name; give it (csv or jsonl).",
        code="unknown_format",
    )


class CountingReader(io.RawIOBase):
    """A raw stream that counts the bytes read through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        if not data:
            return 0
        size = len(data)
        buffer[:size] = data
        self.count += size
        return size


def open_text(raw: Any) -> tuple[IO[str], bool]:
    """UTF-8 text of `raw` (a binary stream), decompressed when it starts with the gzip magic
    bytes."""
    buffered = io.BufferedReader(raw, buffer_size=256 * 1024)
    compressed = buffered.peek(2)[:2] == GZIP_MAGIC
    stream: IO[bytes] = buffered
    if compressed:
        stream = gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[assignment]
    # newline="" lets the csv module see quoted line breaks; utf-8-sig drops a BOM.
    return io.TextIOWrapper(stream, encoding="utf-8-sig", newline=""), compressed


@dataclass
class RawRow:
    number: int  # 1-based among the data rows (the header is not counted)
    line: int  # the line of the file the row starts on
    values: dict[str, Any] | None
    error: tuple[str, str] | None = None  # (code, message) when the row cannot be read


def _reading(rows: Iterator[RawRow]) -> Iterator[RawRow]:
    """Turn decoding failures into ImportFileError (the rest of the file cannot be trusted)."""
    line = 0
    try:
        for row in rows:
            line = row.line
            yield row
    except UnicodeDecodeError:
        raise _not_utf8(line) from None
    except (gzip.BadGzipFile, EOFError, zlib.error):
        raise _damaged(line) from None


def _not_utf8(line: int) -> ImportFileError:
    return ImportFileError(
        f"The file is not UTF-8 text (after line {line}); save it as UTF-8 and import it again.",
        code="invalid_encoding",
    )


def _damaged(line: int) -> ImportFileError:
    return ImportFileError(
        f"The compressed file is damaged or truncated (after line {line}).",
        code="invalid_gzip",
    )


def csv_header(text: IO[str], delimiter: str) -> tuple[list[str], Any]:
    """The header row (the first non-blank record) and the csv reader positioned after it."""
    reader = csv.reader(text, delimiter=delimiter)
    try:
        for record in reader:
            if record and any(cell.strip() for cell in record):
                return [cell.strip() for cell in record], reader
    except csv.Error:
        raise ImportFileError("The header row is not valid CSV.", code="invalid_csv") from None
    except UnicodeDecodeError:
        raise _not_utf8(0) from None
    except (gzip.BadGzipFile, EOFError, zlib.error):
        raise _damaged(0) from None
    raise ImportFileError("The file is empty: a CSV import needs a header row.", code="empty_file")


def csv_rows(reader: Any, header: list[str]) -> Iterator[RawRow]:
    """The data rows after the header, as dicts keyed by the header's column names."""
    return _reading(_csv_rows(reader, header))


def _csv_rows(reader: Any, header: list[str]) -> Iterator[RawRow]:
    number = 0
    previous_line = reader.line_num
    width = len(header)
    while True:
        start = previous_line + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            number += 1
            previous_line = reader.line_num
            reason = "a field is too long" if "field larger" in str(exc) else "it is not valid CSV"
            yield RawRow(number, start, None, ("invalid_row", f"The row cannot be read: {reason}."))
            continue
        previous_line = reader.line_num
        if not record or not any(cell.strip() for cell in record):
            continue  # blank line
        number += 1
        if len(record) > width:
            yield RawRow(
                number,
                start,
                None,
                (
                    "invalid_row",
                    f"The row has {len(record)} fields, the header {width}: check the "
                    "delimiter and the quoting.",
                ),
            )
            continue
        # A short row (trailing empty fields left out by some exports) reads as empty cells.
        yield RawRow(number, start, dict(zip(header, record, strict=False)))


def jsonl_rows(text: IO[str]) -> Iterator[RawRow]:
    """One JSON object a line; blank lines are skipped."""
    return _reading(_jsonl_rows(text))


def _jsonl_rows(text: IO[str]) -> Iterator[RawRow]:
    number = 0
    line_number = 0
    while True:
        line = text.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        line_number += 1
        if len(line) > MAX_LINE_CHARS and not line.endswith("\n"):
            while True:  # skip the rest of the oversized line without holding it
                rest = text.readline(MAX_LINE_CHARS)
                if not rest or rest.endswith("\n"):
                    break
            number += 1
            yield RawRow(
                number, line_number, None, ("row_too_large", "The line is longer than 1 MiB.")
            )
            continue
        if not line.strip():
            continue
        number += 1
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            yield RawRow(number, line_number, None, ("invalid_json", "The line is not JSON."))
            continue
        if not isinstance(value, dict):
            yield RawRow(
                number, line_number, None, ("invalid_row", "The line is not a JSON object.")
            )
            continue
        yield RawRow(number, line_number, value)
