"""One reader for record files: JSON Lines, JSON arrays, gzip of either, Parquet, Arrow, saved datasets.

Every part of codeprefs that reads records from a file (export and dataset sources, solutions
files, decontamination benchmarks, the trainer's pairs) reads them here, so a format is parsed one
way everywhere and a bad record is named the same way everywhere.

Formats, by file name (:func:`record_format`):

* **JSON Lines** (``.jsonl``, ``.json``, ``.ndjson``): one object a line, blank lines skipped. A
  ``.json`` file whose text starts with ``[`` is one JSON array of records; only whole-file
  readers (:func:`file_records`) take it, a chunked read refuses it (it cannot be cut);
* **gzip** of those (``.jsonl.gz``, ``.json.gz``, ``.ndjson.gz``): read as a stream, never cut;
* **Parquet** (``.parquet``): streamed a row group at a time, and a range of rows reads only the
  row groups that hold it, stopping at its last row (:func:`iter_batches`), so cutting a file
  into chunks of a few records reads it once in all, not once per chunk;
* **Arrow IPC** (``.arrow``, stream or file format): memory-mapped;
* a folder written by ``datasets``' ``save_to_disk`` (:func:`saved_dataset_tables`): its
  tables, split by split.

Units of work: :func:`plan_chunks` cuts a file into :class:`FileChunk` descriptions of about
``chunk_rows`` rows from sizes and metadata only (bytes for JSON Lines, rows for Parquet, cut
inside a row group larger than a chunk, rows for Arrow), and :func:`located_records` reads one.
A JSON line belongs to the chunk its first byte falls in, so chunks never split or repeat a
record. Every record comes with its position (byte offset of its line, or its row number) and a
:class:`Where` that names it as ``<file>:<line>``.

Two kinds of failure, never a bare traceback:

* a **malformed record** (not UTF-8, not JSON, nested too deeply, not an object) becomes
  :class:`Malformed`, which names the file and line and keeps the parser's own words
  (``cause``), so a caller can word it its own way;
* a **corrupt file** (a truncated gzip stream, Parquet data pages that do not decode, a JSON array
  that does not parse) cannot be read on: :class:`RecordFileError` names the file and where
  reading stopped.

Measured in the 2-core sandbox, shared with other jobs (load average about 22), with
``benchmarks/bench_record_reader.py``: a 20,000-record Parquet file written in 1,000-row groups,
read in 5,000 chunks of 4 records, took 43.6 s when every chunk read the whole file and sliced
it (the old solutions reader) and 2.7 s reading only each chunk's row group (16x; the old cost
grows with the square of the file, the new one linearly). A file written as one row group gained
nothing then (39.2 s old, 48.7 s new in the same sandbox): its one group was the whole file. A
chunk now stops decoding at its last row, and the planner cuts such a group into several chunks.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.json as pajson
import pyarrow.parquet as pq

RecordFormat = Literal["jsonl", "jsonl.gz", "parquet", "arrow"]
MalformedKind = Literal["", "not_utf8", "not_json", "too_deep", "not_object"]

_SUFFIXES: tuple[tuple[tuple[str, ...], RecordFormat], ...] = (
    ((".jsonl.gz", ".json.gz", ".ndjson.gz"), "jsonl.gz"),
    ((".jsonl", ".json", ".ndjson"), "jsonl"),
    ((".parquet",), "parquet"),
    ((".arrow",), "arrow"),
)
# Files ``datasets``' save_to_disk writes next to the data: one of them marks such a folder.
SAVED_DATASET_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


# -- what a read yields -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Malformed:
    """A record that could not be parsed (not JSON, not UTF-8, too deep, not an object).

    ``error`` is the reader's wording; ``kind`` and ``cause`` (the parser's message, or the JSON
    type found) let a caller with its own established wording say it its way.
    """

    error: str
    where: str = ""  # "<file>:<line>" (JSON Lines) or "<file>:<row>" (Parquet, Arrow), 1-based
    kind: MalformedKind = ""
    cause: str = ""

    def describe(self) -> str:
        """``<file>:<line>: <error>``, as rejects show it."""
        return f"{self.where}: {self.error}" if self.where else self.error


class RecordFileError(ValueError):
    """A record file that cannot be read on (truncated, corrupt); the message names it.

    ``cause`` is the underlying error's text, for callers that word the failure their own way.
    """

    def __init__(self, message: str, cause: str = "") -> None:
        super().__init__(message)
        self.cause = cause


class _Lines:
    """The line numbers of one run of lines: the first one's is counted only when first asked for.

    Counting the lines before a byte offset reads the file up to it; a chunked read asks only
    when a record's location is needed (a malformed record: rare), and then once per chunk.
    """

    __slots__ = ("label", "path", "head", "first")

    def __init__(self, label: str, path: str = "", head: int = 0, first: int | None = None) -> None:
        self.label = label
        self.path = path
        self.head = head  # the byte offset of the run's first line
        self.first = first  # its 1-based line number, once known

    def number(self, offset: int) -> int:
        if self.first is None:
            self.first = _lines_before(self.path, self.head) + 1
        return self.first + offset


class Where:
    """Where one record is: :meth:`line` (1-based line, or row) and ``where()``, ``<file>:<line>``.

    Callable, so the text is worked out only when something asks for it.
    """

    __slots__ = ("_lines", "_offset")

    def __init__(self, lines: _Lines, offset: int) -> None:
        self._lines = lines
        self._offset = offset

    def line(self) -> int:
        return self._lines.number(self._offset)

    def __call__(self) -> str:
        return f"{self._lines.label}:{self.line()}"


Located = tuple[int, Where, "dict[str, Any] | Malformed"]  # (position, where, record)


# -- formats and planning ---------------------------------------------------------------------------


def record_format(path: str) -> RecordFormat:
    """The format of ``path`` from its name; raises ``ValueError`` for any other file."""
    lowered = path.lower()
    for suffixes, found in _SUFFIXES:
        if lowered.endswith(suffixes):
            return found
    raise ValueError(f"{path}: unsupported file type (expected .jsonl, .json, .ndjson, "
                     ".jsonl.gz, .parquet or .arrow)")


@dataclass(frozen=True)
class FileChunk:
    """A part of one record file: bytes ``[start, stop)`` (JSON Lines) or rows ``[start, stop)``.

    A Parquet chunk names rows, not row groups, so a chunk may be a part of one large row group;
    its reader finds the groups that hold the rows from the file's footer (:func:`row_groups_for`).
    """

    path: str  # absolute, or a URL (whose reader reads its node's copy: codeprefs.core.inputs)
    label: str  # the file as the manifest names it
    format: RecordFormat
    start: int  # JSON Lines: first byte; Parquet and Arrow: first row
    stop: int  # exclusive
    first_row: int = 0  # Parquet and Arrow: the file row number of the chunk's first row (= start)

    def to_item(self) -> dict[str, Any]:
        return asdict(self)


UNIT_ROWS = 50_000  # the default rows of a unit of work (export and dataset sources' ``unit_rows``)
CHUNK_BYTES = 32 << 20  # the most bytes of a JSON Lines chunk, whatever its rows
_SAMPLE_BYTES = 1 << 20  # the head of a JSON Lines file read to estimate its bytes per line


def plan_chunks(path: str, label: str, chunk_bytes: int = CHUNK_BYTES,
                chunk_rows: int = UNIT_ROWS) -> list[FileChunk]:
    """Cut one file into chunks of about ``chunk_rows`` rows, from sizes and metadata only.

    * Parquet: whole row groups are gathered until a chunk has ``chunk_rows`` rows (as the file
      was written, so a chunk reads each of its groups once); a row group of more than
      ``chunk_rows`` rows is cut into equal parts, each read from that group alone. A file
      written as one big row group is therefore as many chunks as a file of small ones.
    * Arrow: ``chunk_rows`` rows a chunk.
    * JSON Lines: ``chunk_rows`` times the mean bytes of a line in the file's first MiB, and at
      most ``chunk_bytes`` bytes (no line is read twice: a line belongs to the chunk holding
      its first byte). gzip is one chunk (it cannot be cut).

    The chunks depend only on the file and the two sizes, so a rerun cuts the same chunks.
    Raises ``ValueError`` naming the file when it is unreadable or not the format its name says.
    """
    if chunk_rows < 1 or chunk_bytes < 1:
        raise ValueError(f"{label}: chunk sizes must be positive (rows {chunk_rows}, bytes {chunk_bytes})")
    kind = record_format(path)
    try:
        if kind == "jsonl":
            size = os.path.getsize(path)
            if starts_json_array(path):
                raise ValueError(f"{path}: a JSON array; codeprefs reads JSON Lines (one object a line)")
            step = min(chunk_bytes, _jsonl_bytes_for(path, chunk_rows, size) or chunk_bytes)
            return [FileChunk(path, label, kind, start, min(start + step, size))
                    for start in range(0, size, step)]
        if kind == "jsonl.gz":  # not seekable: one chunk
            return [FileChunk(path, label, kind, 0, os.path.getsize(path))]
        if kind == "parquet":
            metadata = pq.ParquetFile(path).metadata
            sizes = [metadata.row_group(group).num_rows for group in range(metadata.num_row_groups)]
            return [FileChunk(path, label, kind, start, stop, start)
                    for start, stop in parquet_row_ranges(sizes, chunk_rows)]
        rows = read_arrow(path).num_rows
        return [FileChunk(path, label, kind, start, min(start + chunk_rows, rows), start)
                for start in range(0, rows, chunk_rows)]
    except (OSError, pa.ArrowException) as error:
        raise ValueError(f"{label}: cannot read {kind} file: {error}") from None


def parquet_row_ranges(group_rows: list[int], chunk_rows: int) -> list[tuple[int, int]]:
    """Row ranges ``[start, stop)`` of about ``chunk_rows`` rows over row groups of ``group_rows``.

    Groups of at most ``chunk_rows`` rows are gathered whole until a range has ``chunk_rows``
    rows (a range may pass it by less than one group); a larger group ends the range before it
    and is cut into ``ceil(rows / chunk_rows)`` parts that differ by one row at most.
    """
    ranges: list[tuple[int, int]] = []
    start = row = 0  # the open range's first row, and the next group's first row
    for rows in group_rows:
        if rows > chunk_rows:
            if row > start:
                ranges.append((start, row))
            parts = -(-rows // chunk_rows)
            bounds = [row + rows * k // parts for k in range(parts + 1)]
            ranges += list(zip(bounds, bounds[1:]))
            row += rows
            start = row
            continue
        row += rows
        if row - start >= chunk_rows:
            ranges.append((start, row))
            start = row
    if row > start:
        ranges.append((start, row))
    return ranges


def _jsonl_bytes_for(path: str, rows: int, size: int) -> int | None:
    """About the bytes of ``rows`` lines of ``path``, from the mean line of its head (``None``
    when the head holds no whole line)."""
    with open(path, "rb") as handle:
        head = handle.read(min(size, _SAMPLE_BYTES))
    lines = head.count(b"\n") + (1 if len(head) == size and head and not head.endswith(b"\n") else 0)
    if lines == 0:
        return None
    return max(1, rows * len(head) // lines)


def starts_json_array(path: str | Path) -> bool:
    """Whether the text of ``path`` (gzip-compressed when its name ends ``.gz``) starts with ``[``."""
    opener = gzip.open if str(path).lower().endswith(".gz") else open
    with opener(path, "rb") as handle:
        while block := handle.read(4096):
            head = block.lstrip()
            if head:
                return head.startswith(b"[")
    return False


def jsonl_line_starts(path: str | Path) -> list[tuple[int, int]]:
    """(1-based line number, byte offset) of every non-blank line of a JSON Lines file."""
    starts = []
    offset = 0
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                starts.append((number, offset))
            offset += len(line)
    return starts


def count_records(path: str | Path, kind: RecordFormat | None = None) -> int:
    """How many records ``path`` holds: from the metadata for Parquet and Arrow, else by lines.

    ``kind``: the format, when the caller knows it (else from the name, :func:`record_format`).
    """
    kind = kind or record_format(str(path))
    if kind == "parquet":
        return pq.ParquetFile(path).metadata.num_rows
    if kind == "arrow":
        return read_arrow(str(path)).num_rows
    if _is_json_array(str(path)):
        return sum(1 for _ in file_records(path))
    opener = gzip.open if kind == "jsonl.gz" else open
    with opener(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def column_names(path: str | Path) -> list[str] | None:
    """The column names of a Parquet or Arrow file (``None`` for JSON: they vary per record)."""
    kind = record_format(str(path))
    if kind == "parquet":
        return pq.read_schema(path).names
    if kind == "arrow":
        return read_arrow(str(path)).column_names
    return None


# -- tables and batches -----------------------------------------------------------------------------


def read_arrow(path: str) -> pa.Table:
    """An Arrow IPC file (stream format, as ``datasets`` writes it, or file format), mapped."""
    source = pa.memory_map(path)
    try:
        return pa.ipc.open_stream(source).read_all()
    except pa.ArrowInvalid:
        source = pa.memory_map(path)
        return pa.ipc.open_file(source).read_all()


def read_table(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """The whole of ``path`` as one Arrow table (``columns``: only those, Parquet and Arrow).

    JSON Lines (gzip too) go through Arrow's JSON reader, which infers one type per column over
    the whole file and takes no JSON array. Raises what Arrow raises (``ArrowInvalid``,
    ``OSError``): callers name the file.
    """
    kind = record_format(str(path))
    if kind == "parquet":
        return pq.read_table(path, columns=columns)
    if kind == "arrow":
        table = read_arrow(str(path))
        return table.select(columns) if columns is not None else table
    return pajson.read_json(path)


def row_groups_for(metadata: pq.FileMetaData, start: int, stop: int) -> tuple[list[int], int]:
    """The row groups that hold rows ``[start, stop)``, and how many rows of the first precede ``start``."""
    groups: list[int] = []
    skip = 0
    first_row = 0
    for group in range(metadata.num_row_groups):
        rows = metadata.row_group(group).num_rows
        if first_row + rows > start and first_row < stop:
            if not groups:
                skip = start - first_row
            groups.append(group)
        first_row += rows
        if first_row >= stop:
            break
    return groups, skip


def iter_batches(path: str | Path, start: int = 0, limit: int | None = None,
                 columns: list[str] | None = None, label: str | None = None,
                 batch_rows: int = 8192) -> Iterator[pa.RecordBatch]:
    """Rows ``start`` to ``start + limit`` of a Parquet file, in batches that never span two row groups.

    Only the row groups holding those rows are read (:func:`row_groups_for`), each streamed in
    batches of at most ``batch_rows`` rows and left as soon as the last wanted row is read: a
    part of one large group neither holds the whole group in memory nor decodes the rows after
    it. Raises :class:`RecordFileError` naming the file (``label``, else its path) when a group
    does not decode.
    """
    name = label or str(path)
    try:
        parquet = pq.ParquetFile(path)
        stop = parquet.metadata.num_rows if limit is None else min(start + limit,
                                                                   parquet.metadata.num_rows)
        groups, skip = row_groups_for(parquet.metadata, start, stop)
        wanted = stop - start
        for group in groups if wanted > 0 else []:
            size = parquet.metadata.row_group(group).num_rows
            for batch in parquet.iter_batches(batch_size=max(1, min(batch_rows, size)), row_groups=[group],
                                              columns=columns, use_threads=False):
                if skip >= batch.num_rows:
                    skip -= batch.num_rows
                    continue
                batch = batch.slice(skip, wanted)
                skip = 0
                wanted -= batch.num_rows
                yield batch
                if wanted <= 0:
                    return
    except (OSError, pa.ArrowException) as error:
        raise RecordFileError(f"{name}: unreadable Parquet file (rows {start + 1} and on): {error}",
                              str(error)) from None


def read_rows(path: str | Path, start: int = 0, limit: int | None = None,
              label: str | None = None) -> list[dict[str, Any]]:
    """Rows ``start`` to ``start + limit`` of a Parquet file as dicts, read before any is returned."""
    rows: list[dict[str, Any]] = []
    for batch in iter_batches(path, start, limit, label=label):
        rows.extend(batch.to_pylist())
    return rows


# -- records, chunk by chunk ------------------------------------------------------------------------


def read_records(chunk: FileChunk) -> Iterator[tuple[int, dict[str, Any] | Malformed]]:
    """Every record of ``chunk`` with its position: a dict, or :class:`Malformed`.

    Raises :class:`RecordFileError` naming the file when it cannot be read on.
    """
    for position, _, record in located_records(chunk):
        yield position, record


def located_records(chunk: FileChunk) -> Iterator[Located]:
    """As :func:`read_records`, with each record's :class:`Where` (1-based line, or row)."""
    if chunk.format == "jsonl":
        yield from jsonl_records(chunk.path, chunk.label, chunk.start, chunk.stop)
    elif chunk.format == "jsonl.gz":
        yield from _gzip_records(chunk.path, chunk.label)
    else:
        yield from _table_records(chunk)


def jsonl_records(path: str, label: str, start: int = 0, stop: int | None = None, *,
                  first_line: int | None = None, limit: int | None = None) -> Iterator[Located]:
    """The records of the JSON lines whose first byte lies in ``[start, stop)`` (at most ``limit``).

    ``first_line``: the line number of the first line at or after ``start``, when the caller knows
    it; otherwise it is counted on the first :class:`Where` asked for.
    """
    try:
        with open(path, "rb") as handle:
            stop = os.fstat(handle.fileno()).st_size if stop is None else stop
            position = start
            if position > 0:  # skip the line that started before ``start``
                handle.seek(position - 1)
                position += len(handle.readline()) - 1
            lines = _Lines(label, path, position, first_line)
            offset = 0  # lines read before the current one
            taken = 0
            while position < stop and (limit is None or taken < limit):
                line = handle.readline()
                if not line:
                    break
                if line.strip():
                    where = Where(lines, offset)
                    yield position, where, parse_line(line, where)
                    taken += 1
                position += len(line)
                offset += 1
    except OSError as error:
        raise RecordFileError(f"{label}: cannot read: {error.strerror or error}",
                              str(error.strerror or error)) from None


def _gzip_records(path: str, label: str) -> Iterator[Located]:
    lines = _Lines(label, first=1)
    number = 0  # lines read so far
    try:
        with gzip.open(path, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    where = Where(lines, number - 1)
                    yield number - 1, where, parse_line(line, where)
    except (EOFError, OSError, zlib.error) as error:  # BadGzipFile is an OSError
        raise RecordFileError(f"{label}: truncated or corrupt gzip file (after line {number}): "
                              f"{error}", str(error)) from None


def _table_records(chunk: FileChunk) -> Iterator[Located]:
    lines = _Lines(chunk.label, first=chunk.first_row + 1)
    if chunk.format == "parquet":
        offset = 0
        for batch in iter_batches(chunk.path, chunk.start, chunk.stop - chunk.start, label=chunk.label):
            for record in batch.to_pylist():
                yield chunk.first_row + offset, Where(lines, offset), record
                offset += 1
        return
    try:
        records = read_arrow(chunk.path).slice(chunk.start, chunk.stop - chunk.start).to_pylist()
    except (OSError, pa.ArrowException) as error:
        raise RecordFileError(f"{chunk.label}: unreadable Arrow file (rows {chunk.start + 1} and on): "
                              f"{error}", str(error)) from None
    for offset, record in enumerate(records):
        yield chunk.start + offset, Where(lines, offset), record


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


def parse_line(line: bytes, where: Where | str = "") -> dict[str, Any] | Malformed:
    """One JSON line as a dict, or :class:`Malformed` (located by ``where`` when it is)."""
    try:
        record = json.loads(line)
    except UnicodeDecodeError as error:
        return _malformed("not UTF-8", where, "not_utf8", str(error))
    except json.JSONDecodeError as error:
        return _malformed(f"not JSON: {error.msg}", where, "not_json", str(error))
    except ValueError as error:  # e.g. an integer beyond Python's limit on digits
        return _malformed(f"not JSON: {error}", where, "not_json", str(error))
    except RecursionError:
        return _malformed("nested too deeply", where, "too_deep", "nested too deeply")
    return _object(record, where)


def _object(record: Any, where: Where | str) -> dict[str, Any] | Malformed:
    if not isinstance(record, dict):
        name = type(record).__name__
        return _malformed(f"a JSON {name}, not an object", where, "not_object", name)
    return record


def _malformed(error: str, where: Where | str, kind: MalformedKind, cause: str) -> Malformed:
    return Malformed(error, where if isinstance(where, str) else where(), kind, cause)


# -- records, whole files ---------------------------------------------------------------------------


def file_records(path: str | Path, label: str | None = None) -> Iterator[Located]:
    """Every record of one file, whatever its format: a JSON array (``.json``, ``.json.gz``
    starting with ``[``) too. Raises ``OSError`` when the file cannot be opened, and
    :class:`RecordFileError` when it cannot be read on."""
    path = str(path)
    name = label or path
    kind = record_format(path)
    if _is_json_array(path):
        yield from _array_records(path, name)
    elif kind == "jsonl":
        with open(path, "rb"):  # a file that cannot be opened raises OSError here, not RecordFileError
            pass
        yield from jsonl_records(path, name)
    elif kind == "jsonl.gz":
        yield from _gzip_records(path, name)
    else:
        for chunk in plan_chunks(path, name):
            yield from located_records(chunk)


def _is_json_array(path: str) -> bool:
    """Whether ``path`` is one JSON array of records: named ``.json`` (or ``.json.gz``), text
    starting with ``[``. A ``.jsonl`` file is JSON Lines whatever its first line."""
    return path.lower().endswith((".json", ".json.gz")) and starts_json_array(path)


def _array_records(path: str, label: str) -> Iterator[Located]:
    opener = gzip.open if path.lower().endswith(".gz") else open
    with opener(path, "rb") as handle:
        data = handle.read()
    try:
        records = json.loads(data)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError are ValueErrors
        cause = "nested too deeply" if isinstance(error, RecursionError) else str(error)
        raise RecordFileError(f"{label}: not a valid JSON array: {cause}", cause) from None
    lines = _Lines(label, first=1)  # an array's records are numbered, not its lines
    for offset, record in enumerate(records):
        where = Where(lines, offset)
        yield offset, where, _object(record, where)


# -- saved datasets ---------------------------------------------------------------------------------


def is_saved_dataset(folder: str | Path) -> bool:
    """Whether ``folder`` was written by ``datasets``' ``save_to_disk`` (it holds one of its markers)."""
    return any((Path(folder) / marker).exists() for marker in SAVED_DATASET_MARKERS)


def saved_dataset_tables(folder: str | Path) -> dict[str | None, pa.Table]:
    """The tables of a ``save_to_disk`` folder: ``{split: table}`` for a ``DatasetDict`` (in its
    order), ``{None: table}`` for a single ``Dataset``; memory-mapped, as ``datasets`` maps them.

    Raises what ``datasets.load_from_disk`` raises (``FileNotFoundError``, ``ValueError``, ...):
    callers name the folder.
    """
    import datasets

    loaded = datasets.load_from_disk(str(folder))
    splits = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [(None, loaded)]
    return {name: split.with_format("arrow")[:] for name, split in splits}
