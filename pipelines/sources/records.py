"""Record files (JSON Lines, Parquet, Arrow) cut into chunks that Ray tasks read independently.

The driver only plans: it looks at file sizes and Parquet/Arrow metadata and returns
:class:`FileChunk` descriptions; the tasks open the files and parse the records. A JSON line
belongs to the chunk its first byte falls in, so chunks never split or repeat a record. Each
record comes with its position (the byte offset of its line, or its row number in the file),
which names it in row ids, and its line number (or row), which names it in rejects.

Two kinds of failure, never a bare traceback:

* a **malformed record** (not UTF-8, not JSON, nested too deeply, not an object) becomes
  :class:`Malformed`, which names the file and line; the source counts it as ``malformed_row``;
* a **corrupt file** (a truncated gzip stream, Parquet data pages that do not decode) cannot be
  read on: :class:`RecordFileError` names the file and where reading stopped, and stops the build.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from codeprefs.core.drops import LIST, DropReason, drop

MALFORMED_ROW = LIST.reason("malformed_row")
RecordFormat = Literal["jsonl", "jsonl.gz", "parquet", "arrow"]

_SUFFIXES: tuple[tuple[tuple[str, ...], RecordFormat], ...] = (
    ((".jsonl.gz", ".json.gz", ".ndjson.gz"), "jsonl.gz"),
    ((".jsonl", ".json", ".ndjson"), "jsonl"),
    ((".parquet",), "parquet"),
    ((".arrow",), "arrow"),
)


@dataclass(frozen=True)
class FileChunk:
    """A part of one record file: bytes ``[start, stop)`` (JSON Lines) or rows ``[start, stop)``."""

    path: str  # absolute
    label: str  # the file as the manifest names it
    format: RecordFormat
    start: int  # JSON Lines: first byte; Parquet: first row group; Arrow: first row
    stop: int  # exclusive
    first_row: int = 0  # Parquet: the file row number of the chunk's first row

    def to_item(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Malformed:
    """A record that could not be parsed (not JSON, not UTF-8, too deep, not an object)."""

    error: str
    where: str = ""  # "<file>:<line>" (JSON Lines) or "<file>:<row>" (Parquet, Arrow), 1-based

    def describe(self) -> str:
        """``<file>:<line>: <error>``, as rejects show it."""
        return f"{self.where}: {self.error}" if self.where else self.error


class RecordFileError(ValueError):
    """A record file that cannot be read on (truncated, corrupt); the message names it."""


def record_format(path: str) -> RecordFormat:
    """The format of ``path`` from its name; raises ``ValueError`` for any other file."""
    lowered = path.lower()
    for suffixes, found in _SUFFIXES:
        if lowered.endswith(suffixes):
            return found
    raise ValueError(f"{path}: unsupported file type (expected .jsonl, .json, .ndjson, "
                     ".jsonl.gz, .parquet or .arrow)")


def plan_chunks(path: str, label: str, chunk_bytes: int = 32 << 20,
                chunk_rows: int = 50_000) -> list[FileChunk]:
    """Cut one file into chunks of about ``chunk_bytes`` bytes or ``chunk_rows`` rows.

    Raises ``ValueError`` naming the file when it is unreadable or not the format its name says.
    """
    kind = record_format(path)
    try:
        if kind == "jsonl":
            size = os.path.getsize(path)
            _refuse_json_array(path)
            return [FileChunk(path, label, kind, start, min(start + chunk_bytes, size))
                    for start in range(0, size, chunk_bytes)]
        if kind == "jsonl.gz":  # not seekable: one chunk
            return [FileChunk(path, label, kind, 0, os.path.getsize(path))]
        if kind == "parquet":
            metadata = pq.ParquetFile(path).metadata
            chunks, group, first_row = [], 0, 0
            while group < metadata.num_row_groups:
                stop, rows = group, 0
                while stop < metadata.num_row_groups and (rows == 0 or rows < chunk_rows):
                    rows += metadata.row_group(stop).num_rows
                    stop += 1
                chunks.append(FileChunk(path, label, kind, group, stop, first_row))
                group, first_row = stop, first_row + rows
            return chunks
        rows = read_arrow(path).num_rows
        return [FileChunk(path, label, kind, start, min(start + chunk_rows, rows), start)
                for start in range(0, rows, chunk_rows)]
    except (OSError, pa.ArrowException) as error:
        raise ValueError(f"{label}: cannot read {kind} file: {error}") from None


def _refuse_json_array(path: str) -> None:
    with open(path, "rb") as handle:
        head = handle.read(4096).lstrip()
    if head.startswith(b"["):
        raise ValueError(f"{path}: a JSON array; codeprefs reads JSON Lines (one object a line)")


def read_arrow(path: str) -> pa.Table:
    """An Arrow IPC file (stream format, as ``datasets`` writes it, or file format), mapped."""
    source = pa.memory_map(path)
    try:
        return pa.ipc.open_stream(source).read_all()
    except pa.ArrowInvalid:
        source = pa.memory_map(path)
        return pa.ipc.open_file(source).read_all()


Where = Callable[[], str]  # "<file>:<line>" of a record, worked out only when asked for


def read_records(chunk: FileChunk) -> Iterator[tuple[int, dict[str, Any] | Malformed]]:
    """Every record of ``chunk`` with its position: a dict, or :class:`Malformed`.

    Raises :class:`RecordFileError` naming the file when it cannot be read on.
    """
    for position, _, record in located_records(chunk):
        yield position, record


def located_records(chunk: FileChunk) -> Iterator[tuple[int, Where, dict[str, Any] | Malformed]]:
    """As :func:`read_records`, with each record's ``<file>:<line>`` (1-based line, or row).

    A JSON Lines chunk starts at a byte offset, so the line number of its first line is counted
    only when a record's location is asked for (a malformed record: rare), once per chunk.
    """
    if chunk.format == "jsonl":
        yield from _jsonl_records(chunk)
    elif chunk.format == "jsonl.gz":
        yield from _gzip_records(chunk)
    else:
        yield from _table_records(chunk)


def _gzip_records(chunk: FileChunk) -> Iterator[tuple[int, Where, dict[str, Any] | Malformed]]:
    number = 0  # lines read so far
    try:
        with gzip.open(chunk.path, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    where = f"{chunk.label}:{number}"
                    yield number - 1, (lambda where=where: where), _parse_line(line, where)
    except (EOFError, OSError, zlib.error) as error:  # BadGzipFile is an OSError
        raise RecordFileError(f"{chunk.label}: truncated or corrupt gzip file (after line {number}): "
                              f"{error}") from None


def _table_records(chunk: FileChunk) -> Iterator[tuple[int, Where, dict[str, Any] | Malformed]]:
    first = chunk.first_row if chunk.format == "parquet" else chunk.start
    try:
        if chunk.format == "parquet":
            table = pq.ParquetFile(chunk.path).read_row_groups(list(range(chunk.start, chunk.stop)))
        else:
            table = read_arrow(chunk.path).slice(chunk.start, chunk.stop - chunk.start)
        records = table.to_pylist()
    except (OSError, pa.ArrowException) as error:
        kind = "Parquet" if chunk.format == "parquet" else "Arrow"
        raise RecordFileError(f"{chunk.label}: unreadable {kind} file (rows {first + 1} and on): "
                              f"{error}") from None
    for offset, record in enumerate(records):
        row = first + offset
        yield row, (lambda row=row: f"{chunk.label}:{row + 1}"), record


class _LineNumbers:
    """The line numbers of a JSON Lines chunk: its first line's is counted on first use."""

    def __init__(self, chunk: FileChunk, head: int) -> None:
        self.chunk = chunk
        self.head = head  # the byte offset of the chunk's first line
        self.first: int | None = None

    def where(self, lines: int) -> str:
        """``<file>:<line>`` of the line ``lines`` lines after the chunk's first."""
        if self.first is None:
            self.first = _lines_before(self.chunk.path, self.head) + 1
        return f"{self.chunk.label}:{self.first + lines}"


def _jsonl_records(chunk: FileChunk) -> Iterator[tuple[int, Where, dict[str, Any] | Malformed]]:
    try:
        with open(chunk.path, "rb") as handle:
            position = chunk.start
            if position > 0:  # skip the line that started in the previous chunk
                handle.seek(position - 1)
                position += len(handle.readline()) - 1
            numbers = _LineNumbers(chunk, position)
            lines = 0  # lines of the chunk before the current one
            while position < chunk.stop:
                line = handle.readline()
                if not line:
                    break
                if line.strip():
                    record = _parse_line(line)
                    if isinstance(record, Malformed):
                        record = replace(record, where=numbers.where(lines))
                    yield position, (lambda lines=lines: numbers.where(lines)), record
                position += len(line)
                lines += 1
    except OSError as error:
        raise RecordFileError(f"{chunk.label}: cannot read: {error.strerror or error}") from None


def _lines_before(path: str, offset: int) -> int:
    """The number of line ends in the first ``offset`` bytes of ``path``."""
    count = 0
    with open(path, "rb") as handle:
        while offset > 0:
            block = handle.read(min(offset, 1 << 20))
            if not block:
                break
            count += block.count(b"\n")
            offset -= len(block)
    return count


def _parse_line(line: bytes, where: str = "") -> dict[str, Any] | Malformed:
    try:
        record = json.loads(line)
    except UnicodeDecodeError:
        return Malformed("not UTF-8", where)
    except json.JSONDecodeError as error:
        return Malformed(f"not JSON: {error.msg}", where)
    except ValueError as error:  # e.g. an integer beyond Python's limit on digits
        return Malformed(f"not JSON: {error}", where)
    except RecursionError:
        return Malformed("nested too deeply", where)
    if not isinstance(record, dict):
        return Malformed(f"a JSON {type(record).__name__}, not an object", where)
    return record


def finish_row(row: dict[str, Any], record: dict[str, Any] | Malformed,
               fill: Callable[[dict[str, Any], dict[str, Any]], DropReason | Malformed | None],
               where: Where | None = None) -> dict[str, Any]:
    """Fill ``row`` from ``record`` with ``fill``; a malformed record, a field of the wrong type
    (``fill`` returns :class:`Malformed`) or a reason ``fill`` returns (a registered reason of
    drop stage ``list``) marks the row dropped. A malformed row is counted as ``malformed_row``,
    and its ``message`` says ``<file>:<line>: <what is wrong>`` (``where`` locates a record that
    parsed but is malformed)."""
    if not isinstance(record, Malformed):
        try:
            reason = fill(row, record)
        except RecursionError:  # a value nested too deeply to turn into text
            reason = Malformed("a field nested too deeply")
        if not isinstance(reason, Malformed):
            if reason:
                drop(row, reason)
            return row
        record = reason
    if not record.where and where is not None:
        record = replace(record, where=where())
    row["message"] = record.describe()
    drop(row, MALFORMED_ROW)
    return row
