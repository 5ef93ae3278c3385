"""Record files (JSON Lines, Parquet, Arrow) cut into chunks that Ray tasks read independently.

The driver only plans: it looks at file sizes and Parquet/Arrow metadata and returns
:class:`FileChunk` descriptions; the tasks open the files and parse the records. A JSON line
belongs to the chunk its first byte falls in, so chunks never split or repeat a record. Each
record comes with its position (the byte offset of its line, or its row number in the file),
which names it in row ids and error messages.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

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
    """A record that could not be parsed (not JSON, not UTF-8, not an object)."""

    error: str


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


def read_records(chunk: FileChunk) -> Iterator[tuple[int, dict[str, Any] | Malformed]]:
    """Every record of ``chunk`` with its position: a dict, or :class:`Malformed`."""
    if chunk.format == "jsonl":
        yield from _jsonl_records(chunk)
    elif chunk.format == "jsonl.gz":
        with gzip.open(chunk.path, "rb") as handle:
            for number, line in enumerate(handle):
                if line.strip():
                    yield number, _parse_line(line)
    elif chunk.format == "parquet":
        table = pq.ParquetFile(chunk.path).read_row_groups(list(range(chunk.start, chunk.stop)))
        for offset, record in enumerate(table.to_pylist()):
            yield chunk.first_row + offset, record
    else:
        table = read_arrow(chunk.path).slice(chunk.start, chunk.stop - chunk.start)
        for offset, record in enumerate(table.to_pylist()):
            yield chunk.start + offset, record


def _jsonl_records(chunk: FileChunk) -> Iterator[tuple[int, dict[str, Any] | Malformed]]:
    with open(chunk.path, "rb") as handle:
        position = chunk.start
        if position > 0:  # skip the line that started in the previous chunk
            handle.seek(position - 1)
            position += len(handle.readline()) - 1
        while position < chunk.stop:
            line = handle.readline()
            if not line:
                break
            if line.strip():
                yield position, _parse_line(line)
            position += len(line)


def _parse_line(line: bytes) -> dict[str, Any] | Malformed:
    try:
        record = json.loads(line)
    except UnicodeDecodeError:
        return Malformed("not UTF-8")
    except json.JSONDecodeError as error:
        return Malformed(f"not JSON: {error.msg}")
    if not isinstance(record, dict):
        return Malformed(f"a JSON {type(record).__name__}, not an object")
    return record


def finish_row(row: dict[str, Any], record: dict[str, Any] | Malformed,
               fill: Callable[[dict[str, Any], dict[str, Any]], str | None], stage: str = "list") -> dict[str, Any]:
    """Fill ``row`` from ``record`` with ``fill``; a malformed record or a reason ``fill`` returns
    marks the row dropped at ``stage`` (the record's parse error goes into ``message``)."""
    from pipelines.rows import drop

    if isinstance(record, Malformed):
        row["message"] = record.error
        drop(row, stage, "malformed_row")
        return row
    reason = fill(row, record)
    if reason:
        drop(row, stage, reason)
    return row
